#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a while: the gitserver answer decoders, name normalisation
# and routing, and the config parser. Installs cargo-fuzz (from crates.io) if it is missing;
# needs a nightly toolchain (rustup toolchain install nightly).
#
#   scripts/fuzz.sh            # each target for 10 s
#   scripts/fuzz.sh 60         # each target for 60 s
#   scripts/fuzz.sh 60 config  # only the named targets
#
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the script; replay it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`. Corpora grow in fuzz/corpus/
# (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-10}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(gitserver_answers repo_name config)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

# One build for all targets; -s none: these are safe-Rust targets looking for panics, and the
# address sanitizer would only slow them down.
cargo +nightly fuzz build -s none

for target in "${targets[@]}"; do
  printf '\n== fuzz %s (%ss)\n' "$target" "$seconds"
  mkdir -p "fuzz/corpus/$target"
  cargo +nightly fuzz run -s none "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1
done
