#!/usr/bin/env bash
# The whole test suite: prepares what the tests need (Postgres, git, promtool), then runs formatting,
# lints, and every test, unit and end-to-end. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "Tools"
need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v pg_isready >/dev/null || need_apt+=(postgresql-client)
# promtool checks the metrics output and the alert rules (Debian's prometheus package).
command -v promtool >/dev/null || need_apt+=(prometheus)
# Headless Chromium renders the replay report for the test that checks what an operator sees.
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
git --version
promtool --version | head -n 1
# DuckDB (from PyPI) runs the README's query on a snapshot file in the replay test.
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore duckdb
python3 -c 'import duckdb; print("duckdb", duckdb.__version__)'

log "Postgres"
export CLONEKEEPER_TEST_PG="${CLONEKEEPER_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

log "Format"
cargo fmt --all -- --check

log "Lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "Example policies"
# Installs the guest toolchains if missing and builds policies/* into target/policies/*.wasm.
scripts/build-policies.sh --test

log "Tests"
cargo test --workspace --locked
