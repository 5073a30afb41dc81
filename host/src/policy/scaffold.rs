//! `clonekeeper policy new NAME --lang rust|python|js`: writes a policy project that builds on
//! this machine and passes its own sample fixture.
//!
//! Every project holds the contract (`wit/policy.wit`, copied from this binary so it matches
//! the host), the source of a `prioritizer` (stars first, forks last, `fork_penalty`
//! configurable), `NAME.toml`, `NAME.fixtures.json`, `build.sh` (the toolchain recipes of
//! docs/policies.md, installing what is missing), `test.sh`, a README, and the authoring guide
//! of this very binary (`GUIDE.md`, docs/policies.md as it shipped), so the project's pointer to
//! the docs works offline and matches the contract it was written for.

use std::path::{Path, PathBuf};

use super::bindings::WIT_TEXT;

/// The authoring guide (docs/policies.md) of this build.
const GUIDE: &str = include_str!("../../../docs/policies.md");

/// The languages a scaffold can be written in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// Writes the project into `dir` (which must not exist or be empty). Returns the files
/// written, relative to `dir`.
pub fn write(name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let valid = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !valid {
        return Err(format!(
            "{name:?}: a policy name is lower-case letters, digits and dashes, starting with a letter"
        ));
    }
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(format!("{}: exists and is not empty", dir.display()));
    }
    let snake = name.replace('-', "_");
    let fill = |text: &str| text.replace("{{name}}", name).replace("{{snake}}", &snake);
    let mut files: Vec<(String, String)> = vec![
        ("wit/policy.wit".to_string(), WIT_TEXT.to_string()),
        ("GUIDE.md".to_string(), GUIDE.to_string()),
        (format!("{name}.toml"), fill(CONFIG)),
        (format!("{name}.fixtures.json"), fill(FIXTURE)),
        ("test.sh".to_string(), fill(TEST_SH)),
        (".gitignore".to_string(), "*.wasm\ntarget/\n.venv/\nnode_modules/\n__pycache__/\n".to_string()),
    ];
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".to_string(), fill(RUST_CARGO)));
            files.push(("src/lib.rs".to_string(), fill(RUST_LIB)));
            files.push(("build.sh".to_string(), fill(RUST_BUILD)));
            files.push(("README.md".to_string(), fill(&README.replace("{{lang_notes}}", RUST_NOTES))));
        }
        Lang::Python => {
            files.push(("app.py".to_string(), fill(PYTHON_APP)));
            files.push(("build.sh".to_string(), fill(PYTHON_BUILD)));
            files.push(("README.md".to_string(), fill(&README.replace("{{lang_notes}}", PYTHON_NOTES))));
        }
        Lang::Js => {
            files.push((format!("{name}.js"), fill(JS_APP)));
            files.push(("package.json".to_string(), fill(JS_PACKAGE)));
            files.push(("build.sh".to_string(), fill(JS_BUILD)));
            files.push(("README.md".to_string(), fill(&README.replace("{{lang_notes}}", JS_NOTES))));
        }
    }
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        if relative.ends_with(".sh") {
            make_executable(&path)?;
        }
        written.push(PathBuf::from(relative));
    }
    Ok(written)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<(), String> {
    Ok(())
}

const CONFIG: &str = r#"# Configuration of the `{{name}}` policy: put it beside {{name}}.wasm in the policy folder.
# clonekeeper passes this text to the module's `init` before every call.

# Subtracted from the score of forks; 1000 puts them after every repository with fewer stars.
fork_penalty = 1000
"#;

const FIXTURE: &str = r#"{
  "now": "2024-05-01T00:00:00Z",
  "cases": [
    {
      "name": "stars first, forks last",
      "interface": "prioritize",
      "repos": [
        { "name": "github.com/acme/small", "stars": 3 },
        { "name": "github.com/acme/popular", "stars": 4200 },
        { "name": "github.com/someone/popular-fork", "stars": 900, "fork": true },
        { "name": "gitlab.com/acme/unknown" }
      ],
      "expect": {
        "order": [
          "github.com/acme/popular",
          "github.com/acme/small",
          "gitlab.com/acme/unknown",
          "github.com/someone/popular-fork"
        ],
        "not_now": []
      }
    },
    {
      "name": "the sample config is accepted",
      "interface": "init",
      "config": "fork_penalty = 5\n",
      "expect": { "ok": true }
    },
    {
      "name": "a negative penalty is refused",
      "interface": "init",
      "config": "fork_penalty = -1\n",
      "expect": { "error": "fork_penalty" }
    }
  ]
}
"#;

const TEST_SH: &str = r#"#!/usr/bin/env bash
# Runs the fixtures against the built module, exactly as the sidecar would load it.
set -euo pipefail
cd "$(dirname "$0")"
CLONEKEEPER=${CLONEKEEPER:-clonekeeper}
command -v "$CLONEKEEPER" >/dev/null || { echo "test.sh: set CLONEKEEPER to the clonekeeper binary" >&2; exit 2; }
"$CLONEKEEPER" policy check {{name}}.wasm
"$CLONEKEEPER" policy test {{name}}.wasm {{name}}.fixtures.json
"#;

const README: &str = r#"# {{name}}

A clonekeeper policy: it answers `rank` (world `prioritizer`):
stars first, forks last. Change the code to make it yours; the contract is `wit/policy.wit`
(a copy of the host's; do not edit it).

```sh
./build.sh     # -> {{name}}.wasm (installs the toolchain on first use)
./test.sh      # clonekeeper policy check + policy test {{name}}.fixtures.json
clonekeeper policy eval {{name}}.wasm --repos repos.json   # try it on your own repos
```

`test.sh` finds `clonekeeper` on `PATH`, or set `CLONEKEEPER=/path/to/clonekeeper`.

Deploy: copy `{{name}}.wasm`, `{{name}}.toml` and `{{name}}.fixtures.json` into the sidecar's
policy folder (`[policy] dir`). The sidecar loads it without a restart, runs the fixtures
first, and keeps the previous module if anything fails; `clonekeeper status` shows it.

{{lang_notes}}
[GUIDE.md](GUIDE.md) is the policy authoring guide of the clonekeeper that wrote this project
(its docs/policies.md): the contract, the limits, the folder rules and the fixture format.
"#;

const RUST_NOTES: &str = r#"## Rust

`build.sh` builds for `wasm32-unknown-unknown` with rustup's target when it is installed, and
otherwise with Debian's `rustc-web` (which can build the standard library for wasm), then
turns the core module into a component with `clonekeeper policy componentize`.
"#;

const PYTHON_NOTES: &str = r#"## Python

`build.sh` installs componentize-py (pinned) into `.venv/` and builds with `--stub-wasi`:
a policy may import nothing but `clonekeeper:policy/log`. Components are ~18 MB; the sidecar
caches their compiled code on disk.
"#;

const JS_NOTES: &str = r#"## JavaScript

`build.sh` installs jco (pinned in package.json) and builds with the QuickJS backend and
WASI stubbed out: a policy may import nothing but `clonekeeper:policy/log`.
"#;

const RUST_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2021"
publish = false

# Built for wasm on its own, not part of any workspace.
[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc", "bitflags"] }

[profile.release]
# Speed over size: prioritize runs over every due repository on every tick, while the code is
# compiled once and cached.
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const RUST_LIB: &str = r#"//! {{name}}: a clonekeeper policy (world `prioritizer`).
//!
//! Scores each repository by its stars (unknown: 0); forks lose `fork_penalty` (default
//! 1000, from {{name}}.toml). Higher scores clone first; the host breaks ties by repo id.
//!
//! `init` runs before every call in a fresh instance, so keep it cheap; nothing survives
//! from one call to the next. `rank` gets its repositories column by column, and only
//! the columns `columns` names: add a column there before reading it.

use std::sync::atomic::{AtomicU64, Ordering};

use clonekeeper::policy::log::{log, Level};
use clonekeeper::policy::types::{Column, RepoBatch, RepoFlags, RepoView, Timestamp};
use exports::clonekeeper::policy::{explain, lifecycle, rank};
use rank::Ranking;

wit_bindgen::generate!({ path: "wit", world: "prioritizer" });

/// `fork_penalty`, as the bits of an f64 (1000.0 until configured).
static FORK_PENALTY: AtomicU64 = AtomicU64::new(0x408F_4000_0000_0000);

struct Policy;

impl lifecycle::Guest for Policy {
    fn init(config: String) -> Result<(), String> {
        let mut fork_penalty = 1000.0;
        for (idx, line) in config.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("{{name}}.toml line {}: expected `key = value`", idx + 1));
            };
            match key.trim() {
                "fork_penalty" => {
                    fork_penalty = value
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .ok_or_else(|| format!("fork_penalty: must be a number of at least 0, got {}", value.trim()))?;
                }
                other => return Err(format!("{{name}}.toml: unknown key {other}")),
            }
        }
        FORK_PENALTY.store(fork_penalty.to_bits(), Ordering::Relaxed);
        log(Level::Debug, "{{name}} configured", &[("fork_penalty".into(), fork_penalty.to_string())]);
        Ok(())
    }
}

impl rank::Guest for Policy {
    fn columns() -> Vec<Column> {
        vec![Column::Stars, Column::Flags]
    }

    /// One score per repository, in batch order; `not_now` lists the positions of any to
    /// leave for a later tick (this one holds none back).
    fn rank(_now: Timestamp, repos: RepoBatch) -> Ranking {
        let fork_penalty = f64::from_bits(FORK_PENALTY.load(Ordering::Relaxed));
        let scores = repos
            .stars
            .iter()
            .zip(&repos.flags)
            .map(|(&stars, &flags)| {
                let stars = f64::from(stars);
                if flags.contains(RepoFlags::FORK) { stars - fork_penalty } else { stars }
            })
            .collect();
        Ranking { scores, not_now: Vec::new() }
    }
}

/// What `clonekeeper explain` shows beside the score: say why, in one sentence.
impl explain::Guest for Policy {
    fn explain_priority(_now: Timestamp, repo: RepoView) -> String {
        let fork_penalty = f64::from_bits(FORK_PENALTY.load(Ordering::Relaxed));
        let stars = f64::from(repo.stars.unwrap_or(0));
        if repo.fork {
            format!("score {}: {} stars, minus {fork_penalty} for a fork", stars - fork_penalty, stars)
        } else {
            format!("score {stars}: {stars} stars")
        }
    }
}

export!(Policy);
"#;

const RUST_BUILD: &str = r#"#!/usr/bin/env bash
# Builds {{name}}.wasm: a core module for wasm32-unknown-unknown, then a component.
set -euo pipefail
cd "$(dirname "$0")"
CLONEKEEPER=${CLONEKEEPER:-clonekeeper}
RUST_DEB_VERSION=${RUST_DEB_VERSION:-1.96.0+dfsg1-1~deb12u2}

if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  cargo build --release --target wasm32-unknown-unknown
else
  # rustup cannot add targets here: Debian's rustc-web builds the standard library itself.
  if [ ! -x /usr/bin/rustc ] || ! /usr/bin/rustc --version | grep -q '1\.9[6-9]\|1\.[1-9][0-9][0-9]' || ! command -v wasm-ld-22 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "rustc-web=$RUST_DEB_VERSION" "cargo-web=$RUST_DEB_VERSION" "rust-web-src=$RUST_DEB_VERSION" lld-22
  fi
  RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
    cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
fi
"$CLONEKEEPER" policy componentize target/wasm32-unknown-unknown/release/{{snake}}.wasm -o {{name}}.wasm
echo "built {{name}}.wasm ($(stat -c %s {{name}}.wasm) bytes)"
"#;

const PYTHON_APP: &str = r#""""{{name}}: a clonekeeper policy (world `prioritizer`).

Scores each repository by its stars (unknown: 0); forks lose `fork_penalty` (default 1000,
from {{name}}.toml). Higher scores clone first; the host breaks ties by repo id.

`init` runs before every call in a fresh instance, so keep it cheap; nothing survives from
one call to the next. `rank` gets its repositories column by column, and only the
columns `columns` names: add a column there before reading it.
"""

import tomllib

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.rank import Ranking
from wit_world.imports.types import Column, RepoBatch, RepoFlags, RepoView

fork_penalty = 1000.0


class Lifecycle(exports.Lifecycle):
    def init(self, config: str) -> None:
        global fork_penalty
        try:
            table = tomllib.loads(config)
        except tomllib.TOMLDecodeError as err:
            raise Err(f"{{name}}.toml: {err}")
        unknown = set(table) - {"fork_penalty"}
        if unknown:
            raise Err(f"{{name}}.toml: unknown keys {sorted(unknown)}")
        value = table.get("fork_penalty", 1000)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise Err(f"fork_penalty: must be a number of at least 0, got {value!r}")
        fork_penalty = float(value)


class Rank(exports.Rank):
    def columns(self) -> list:
        return [Column.STARS, Column.FLAGS]

    def rank(self, now: int, repos: RepoBatch) -> Ranking:
        """One score per repository, in batch order; `not_now` lists the positions of any to
        leave for a later tick (this one holds none back)."""
        scores = [
            float(stars) - (fork_penalty if RepoFlags.FORK in flags else 0.0)
            for stars, flags in zip(repos.stars, repos.flags)
        ]
        return Ranking(scores=scores, not_now=[])


class Explain(exports.Explain):
    """What `clonekeeper explain` shows beside the score: say why, in one sentence."""

    def explain_priority(self, now: int, repo: RepoView) -> str:
        stars = float(repo.stars or 0)
        if repo.fork:
            return f"score {stars - fork_penalty}: {stars:g} stars, minus {fork_penalty:g} for a fork"
        return f"score {stars}: {stars:g} stars"
"#;

const PYTHON_BUILD: &str = r#"#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py (installed into .venv on first use).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check componentize-py==0.25.1
fi
.venv/bin/componentize-py -d wit -w prioritizer componentize --stub-wasi app -o {{name}}.wasm
echo "built {{name}}.wasm ($(stat -c %s {{name}}.wasm) bytes)"
"#;

const JS_APP: &str = r#"// {{name}}: a clonekeeper policy (world `prioritizer`).
//
// Scores each repository by its stars (unknown: 0); forks lose `fork_penalty` (default 1000,
// from {{name}}.toml). Higher scores clone first; the host breaks ties by repo id.
//
// `init` runs before every call in a fresh instance, so keep it cheap; nothing survives from
// one call to the next. `rank` gets its repositories column by column, and only the
// columns `columns` names: add a column there before reading it.

let forkPenalty = 1000;

export const lifecycle = {
  init(config) {
    let penalty = 1000;
    const lines = config.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].split('#')[0].trim();
      if (line === '') continue;
      const eq = line.indexOf('=');
      if (eq < 0) throw `{{name}}.toml line ${i + 1}: expected \`key = value\``;
      const key = line.slice(0, eq).trim();
      const value = line.slice(eq + 1).trim();
      if (key !== 'fork_penalty') throw `{{name}}.toml: unknown key ${key}`;
      penalty = Number(value);
      if (value === '' || !Number.isFinite(penalty) || penalty < 0) {
        throw `fork_penalty: must be a number of at least 0, got ${value}`;
      }
    }
    forkPenalty = penalty;
  },
};

export const rank = {
  columns() {
    return ['stars', 'flags'];
  },

  // One score per repository, in batch order; notNow lists the positions of any to leave for
  // a later tick (this one holds none back).
  rank(now, repos) {
    const scores = new Float64Array(repos.len);
    for (let i = 0; i < repos.len; i++) {
      scores[i] = repos.stars[i] - (repos.flags[i].fork ? forkPenalty : 0);
    }
    return { scores, notNow: new Uint32Array(0) };
  },
};

// What `clonekeeper explain` shows beside the score: say why, in one sentence.
export const explain = {
  explainPriority(now, repo) {
    const stars = repo.stars ?? 0;
    if (repo.fork) return `score ${stars - forkPenalty}: ${stars} stars, minus ${forkPenalty} for a fork`;
    return `score ${stars}: ${stars} stars`;
  },
};
"#;

const JS_PACKAGE: &str = r#"{
  "name": "{{name}}",
  "private": true,
  "description": "A clonekeeper policy.",
  "devDependencies": {
    "@bytecodealliance/jco": "1.35.0"
  }
}
"#;

const JS_BUILD: &str = r#"#!/usr/bin/env bash
# Builds {{name}}.wasm with jco (QuickJS backend, WASI stubbed out).
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/jco ] || npm install --no-audit --no-fund --loglevel=error
node_modules/.bin/jco componentize "$PWD/{{name}}.js" --wit "$PWD/wit" --world-name prioritizer \
  --backend quickjs --backend-qjs-stub-wasi -o "$PWD/{{name}}.wasm" >/dev/null
echo "built {{name}}.wasm ($(stat -c %s {{name}}.wasm) bytes)"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scaffold_ships_the_guide_and_its_readme_points_there_not_to_a_placeholder() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = tempfile::tempdir().expect("tempdir");
            let project = dir.path().join("p");
            let files = write("my-policy", lang, &project).expect("the scaffold is written");
            assert!(files.iter().any(|f| f == Path::new("GUIDE.md")), "{lang:?}: {files:?}");
            let guide = std::fs::read_to_string(project.join("GUIDE.md")).expect("GUIDE.md");
            assert_eq!(guide, GUIDE);
            assert!(guide.contains("clonekeeper:policy@"), "the guide names the contract");
            let readme = std::fs::read_to_string(project.join("README.md")).expect("README.md");
            assert!(readme.contains("[GUIDE.md](GUIDE.md)"), "{lang:?}: {readme}");
            assert!(!readme.contains("https://github.com/)"), "{lang:?}: a placeholder link is left");
        }
    }
}
