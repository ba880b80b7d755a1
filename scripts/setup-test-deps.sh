#!/usr/bin/env bash
# Installs the Debian packages the test suite needs. Idempotent: on a
# machine that has them all it changes nothing (CI always refreshes the
# package lists first, as a fresh machine needs).
set -euo pipefail

# iproute2 + util-linux: `unshare -n` and `ip link` for the loopback-only
# network namespace the tests run in; pkg-config/gcc: -sys crates.
packages=(iproute2 util-linux gcc pkg-config ca-certificates curl)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ] || [ "${CI:-}" = "true" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
