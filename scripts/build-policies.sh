#!/usr/bin/env bash
# Builds the example policies in policies/ into target/policies/NAME.wasm (Wasm components),
# installing the toolchains that are missing first. Idempotent; a second run only rebuilds
# what changed. Prints the time of every step.
#
#   scripts/build-policies.sh          # install what is missing, build, check every component
#   scripts/build-policies.sh --test   # then run each example's fixtures through
#                                      # `clonekeeper policy test` (builds the host CLI), and
#                                      # build and test a `clonekeeper policy new` project per
#                                      # language
#
# Toolchains (policies/README.md says more):
#   Rust:       rustup's wasm32-unknown-unknown target when installed; otherwise Debian's
#               rustc-web (pinned below) with -Zbuild-std. Core modules become components
#               with policies/tools/componentize (the wit-component crate).
#   Python:     componentize-py (pinned in policies/tools/python/requirements.txt), in a venv
#               under .cache/policies/venv.
#   JavaScript: jco (pinned in policies/tools/js/package-lock.json), QuickJS backend.
#
# Installs run as root (apt-get, pip, npm). Environment:
#   RUST_DEB_VERSION   the rustc-web/cargo-web/rust-web-src version to install
#   POLICIES           space-separated subset of the examples to build (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

RUST_DEB_VERSION=${RUST_DEB_VERSION:-1.96.0+dfsg1-1~deb12u2}
LLD=lld-22
out=target/policies
cache=.cache/policies
componentize_tool=policies/tools/componentize/target/debug/componentize

# name  language  world (Rust guests name theirs in generate!)  entry
EXAMPLES=(
  "default          rust    prioritizer-retrier  -"
  "popular-first    rust    prioritizer          -"
  "code-host-limits python  limiter              app"
  "org-tiers        js      prioritizer          org-tiers.js"
)

run_tests=false
for arg in "$@"; do
  case $arg in
    --test) run_tests=true ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done

now_ms() { echo $(($(date +%s%N) / 1000000)); }
seconds_since() { local ms=$(($(now_ms) - $1)); printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }
script_start=$(now_ms)
step_start=
step() { step_start=$(now_ms); printf '\n== %s\n' "$*"; }
done_step() { printf -- '-- %s: %s\n' "$1" "$(seconds_since "$step_start")"; }
die() { echo "build-policies: $*" >&2; exit 1; }

apt_updated=false
apt_install() {
  if ! $apt_updated; then
    apt-get update -qq
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# Installed version of a Debian package, empty when not installed.
deb_version() { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }
# Whether OUT exists and is newer than every file under the given paths.
up_to_date() {
  local target=$1
  shift
  [ -f "$target" ] && [ -z "$(find "$@" -newer "$target" -type f -print -quit 2>/dev/null)" ]
}

wanted() {
  [ -z "${POLICIES:-}" ] && return 0
  [[ " $POLICIES " == *" $1 "* ]]
}
need_lang() {
  local line
  for line in "${EXAMPLES[@]}"; do
    read -r name lang _ <<<"$line"
    [ "$lang" = "$1" ] && wanted "$name" && return 0
  done
  return 1
}

mkdir -p "$out" "$cache"

# ---- Rust: a toolchain for wasm32-unknown-unknown ----
rust_env=()
rust_build_flags=()
if need_lang rust; then
  step "Rust guest toolchain"
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "rustup's wasm32-unknown-unknown target"
  else
    # Debian's rustc-web ships the library sources, so cargo can build std for the target.
    missing=()
    for pkg in rustc-web cargo-web rust-web-src; do
      [ "$(deb_version "$pkg")" = "$RUST_DEB_VERSION" ] || missing+=("$pkg")
    done
    [ -n "$(deb_version "$LLD")" ] || missing+=("$LLD")
    if [ ${#missing[@]} -gt 0 ]; then
      apt-get update -qq
      apt_updated=true
      if ! apt-cache madison rustc-web | grep -qF "| $RUST_DEB_VERSION |"; then
        available=$(apt-cache policy rustc-web | sed -n 's/^ *Candidate: //p')
        [ -n "$available" ] && [ "$available" != "(none)" ] || die "Debian has no rustc-web package"
        echo "WARNING: rustc-web $RUST_DEB_VERSION is no longer available; using $available" >&2
        RUST_DEB_VERSION=$available
      fi
      echo "apt-get install ${missing[*]} ($RUST_DEB_VERSION)"
      apt_install "rustc-web=$RUST_DEB_VERSION" "cargo-web=$RUST_DEB_VERSION" \
        "rust-web-src=$RUST_DEB_VERSION" "$LLD"
    fi
    # rustup's cargo drives Debian's compiler (rustup's rustc would shadow it on PATH).
    rust_env=(RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="wasm-ld-${LLD#lld-}")
    rust_build_flags=(-Zbuild-std=std,panic_abort)
    echo "Debian $(/usr/bin/rustc --version) with -Zbuild-std, linker wasm-ld-${LLD#lld-}"
  fi
  done_step "Rust guest toolchain"
fi

# ---- The componentize tool (host toolchain): core module -> component, and checks ----
step "componentize tool"
cargo build -q --locked --manifest-path policies/tools/componentize/Cargo.toml --target-dir policies/tools/componentize/target
done_step "componentize tool"

# ---- Python: componentize-py in a venv ----
if need_lang python; then
  step "Python toolchain (componentize-py)"
  venv=$cache/venv
  want=$(sed -n 's/^componentize-py==//p' policies/tools/python/requirements.txt)
  if [ "$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q --disable-pip-version-check -r policies/tools/python/requirements.txt
  fi
  "$venv/bin/componentize-py" --version
  done_step "Python toolchain"
fi

# ---- JavaScript: jco from the lock file ----
if need_lang js; then
  step "JavaScript toolchain (jco)"
  js=policies/tools/js
  command -v npm >/dev/null || apt_install nodejs npm
  if ! up_to_date "$js/node_modules/.package-lock.json" "$js/package-lock.json"; then
    npm ci --prefix "$js" --no-audit --no-fund --loglevel=error
  fi
  echo "jco $("$js/node_modules/.bin/jco" --version)"
  done_step "JavaScript toolchain"
fi

# ---- The examples ----
sizes=()
for line in "${EXAMPLES[@]}"; do
  read -r name lang world entry <<<"$line"
  wanted "$name" || continue
  dir=policies/$name
  wasm=$out/$name.wasm
  step "$name ($lang, world $world)"
  case $lang in
    rust)
      crate=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1)
      env "${rust_env[@]}" cargo build -q --release --locked --manifest-path "$dir/Cargo.toml" \
        --target wasm32-unknown-unknown --target-dir policies/target "${rust_build_flags[@]}"
      core=policies/target/wasm32-unknown-unknown/release/${crate//-/_}.wasm
      up_to_date "$wasm" "$core" "$componentize_tool" || "$componentize_tool" new "$core" -o "$wasm"
      ;;
    python)
      if ! up_to_date "$wasm" "$dir"/*.py wit "$cache/venv/bin/componentize-py" scripts/build-policies.sh; then
        "$cache/venv/bin/componentize-py" -q -d wit -w "$world" componentize --stub-wasi -p "$dir" "$entry" -o "$wasm"
      fi
      ;;
    js)
      if ! up_to_date "$wasm" "$dir/$entry" wit policies/tools/js/package-lock.json scripts/build-policies.sh; then
        # jco resolves relative paths against the source's folder: pass absolute ones. No WASI
        # (stubbed out); no async builtins (not needed, and the sync build is smaller).
        policies/tools/js/node_modules/.bin/jco componentize "$root/$dir/$entry" --wit "$root/wit" \
          --world-name "$world" --backend quickjs --backend-qjs-stub-wasi --backend-qjs-disable-async \
          -o "$root/$wasm" >/dev/null
      fi
      ;;
  esac
  # Imports nothing but clonekeeper:policy/log (no WASI), exports a policy interface.
  "$componentize_tool" check "$wasm"
  sizes+=("$(printf '%-18s %10s bytes' "$name.wasm" "$(stat -c %s "$wasm")")")
  done_step "$name"
done

printf '\n== Built into %s\n' "$out"
printf '%s\n' "${sizes[@]}"

if $run_tests; then
  step "Fixtures (clonekeeper policy test)"
  for line in "${EXAMPLES[@]}"; do
    read -r name _ <<<"$line"
    wanted "$name" || continue
    cargo run -q --locked -p clonekeeper -- policy test "$out/$name.wasm" policies/"$name"/fixtures/*.json
  done
  done_step "Fixtures"

  # What `clonekeeper policy new` writes must build here and pass its own sample fixture,
  # through the project's own build.sh and test.sh, as an author would run them.
  step "Scaffolds (clonekeeper policy new --lang rust|python|js)"
  cargo build -q --locked -p clonekeeper --bin clonekeeper
  scaffolds=target/scaffolds
  rm -rf "$scaffolds"
  for lang in rust python js; do
    target/debug/clonekeeper policy new "sample-$lang" --lang "$lang" --dir "$scaffolds/sample-$lang" >/dev/null
    (cd "$scaffolds/sample-$lang" && export CLONEKEEPER="$root/target/debug/clonekeeper" && ./build.sh && ./test.sh)
  done
  done_step "Scaffolds"
fi

printf -- '-- build-policies total: %s\n' "$(seconds_since "$script_start")"
