#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, then the third-party
# WebRTC clients under tests/clients (playwright-core from npm, aiortc from
# PyPI in tests/clients/.venv). Idempotent: on a machine that has them all it
# changes nothing and touches no network (CI always refreshes the package
# lists first, as a fresh machine needs).
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2 + util-linux: `unshare -n` and `ip link` for the loopback-only
# network namespace the tests run in; pkg-config/gcc: -sys crates;
# chromium: the headless browser tests/clients/chromium_whip.mjs drives
# (Debian's build, never a Playwright browser download).
# ffmpeg: the restreamer the live tests run (and their media source and
# RTMP reader); nginx + libnginx-mod-rtmp: the RTMP server they push to,
# started by each test in the foreground on a private port.
# GStreamer 1.22 + python3-gi: webrtcbin (plugins-bad, with its DTLS/SRTP
# elements and openh264), libnice (gstreamer1.0-nice), x264enc (ugly),
# avdec_h264 (libav) and the GstWebRTC/GstSdp typelibs, for
# tests/clients/gst_whip.py run by Debian's /usr/bin/python3.
packages=(iproute2 util-linux gcc pkg-config ca-certificates curl chromium
  ffmpeg nginx-light libnginx-mod-rtmp
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gir1.2-gst-plugins-bad-1.0)

# Node.js + npm for playwright-core: the machine ships Node 20 and npm;
# only a machine without them gets Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

# Python for the aiortc client: the python3 on PATH if it can make a venv,
# else Debian's with python3-venv (ensurepip).
python=python3
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  python=/usr/bin/python3
  packages+=(python3 python3-venv)
fi

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

clients=tests/clients

# playwright-core: `npm ci` when node_modules is missing or was installed
# from another package-lock.json (content hash, so a checkout that only
# touches mtimes costs nothing). playwright-core 1.65 wants Node >= 20.
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node $(node --version) is older than playwright-core wants (>= 20)" >&2
fi
lock_hash="$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)"
npm_stamp="$clients/node_modules/.vestibule-lock.sha256"
if [ ! -d "$clients/node_modules" ] || [ "$(cat "$npm_stamp" 2>/dev/null)" != "$lock_hash" ]; then
  (cd "$clients" && npm ci --no-audit --no-fund)
  echo "$lock_hash" >"$npm_stamp"
fi

# aiortc: a venv in tests/clients/.venv, (re)installed when the stamp (hash
# of requirements.txt + interpreter version) differs. A venv whose
# interpreter no longer runs is made anew.
venv="$clients/.venv"
req_hash="$( (sha256sum "$clients/requirements.txt" | cut -d' ' -f1; "$python" --version) | sha256sum | cut -d' ' -f1)"
pip_stamp="$venv/.vestibule-requirements.sha256"
if [ "$(cat "$pip_stamp" 2>/dev/null)" != "$req_hash" ]; then
  if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    -r "$clients/requirements.txt"
  echo "$req_hash" >"$pip_stamp"
fi
