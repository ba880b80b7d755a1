#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then
# checks formatting and lints, then runs every test. Integration tests run
# the real binary inside a fresh network namespace that has only loopback
# (`unshare -n`), so every ICE candidate is 127.0.0.1 and parallel runs
# never collide on ports.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Build everything first: the namespace has no network to fetch crates.
cargo test --workspace --no-run

if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec cargo test --workspace --offline'
else
  echo "test.sh: no network namespace (needs root); running on the host network" >&2
  exec cargo test --workspace
fi
