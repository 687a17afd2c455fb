#!/usr/bin/env bash
# One script for the README's two set-up commands:
#   scripts/setup.sh demo   install everything a fresh Debian 12 / Raspberry Pi OS machine needs, start the demo
#   scripts/setup.sh test   install the test needs too, then run the whole test suite
# Safe to run again: installs are skipped when already present.
set -euo pipefail

mode="${1:-}"
case "$mode" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Runtime: PC/SC daemon and headers (pyscard builds from source on Linux), CJK fonts,
# the GL/EGL/KMS libraries Kivy's bundled SDL loads at run time, a compiler for pyscard/evdev.
apt_runtime=(
  pcscd libccid libpcsclite-dev gcc python3-dev python3-venv linux-libc-dev
  fonts-ipaexfont-gothic fonts-noto-cjk
  libgl1 libglx-mesa0 libegl1 libegl-mesa0 libgbm1 libgl1-mesa-dri libglapi-mesa libdrm2
  libxkbcommon0 libmtdev1
)
# Tests only: the virtual reader for pcscd (never on a production kiosk: see README),
# OpenSC as an independent JPKI cross-check, systemd-analyze for the unit files, zbar to decode
# the counter's on-screen barcode from a screenshot, shellcheck for the shell scripts,
# promtool (package prometheus) for central IT's alert rules and scrape example.
apt_test=(vsmartcard-vpcd opensc opensc-pkcs11 systemd zbar-tools shellcheck prometheus)

packages=("${apt_runtime[@]}")
[ "$mode" = test ] && packages+=("${apt_test[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip --quiet)
"${pip[@]}" install --upgrade pip

# Build the wheel users install (the .po catalogues are compiled into it) and install it
# non-editable, with every third-party package pinned and hash-checked by the lock file.
build_and_install() {   # build_and_install LOCKFILE
  rm -rf build dist testing/build ./*.egg-info testing/*.egg-info
  "${pip[@]}" install --require-hashes -r "$1"
  "${pip[@]}" wheel --no-deps --wheel-dir dist .
  "${pip[@]}" install --no-deps --force-reinstall dist/library_kiosk-*.whl
}

if [ "$mode" = test ]; then
  build_and_install requirements/test.lock
  # The peers the tests and benches share (virtual card, SIP2/REST servers, fixtures).
  "${pip[@]}" install --no-deps --force-reinstall ./testing
  rm -rf testing/build testing/*.egg-info
  .venv/bin/python -m pip check
  export CI="${CI:-}"
  # The installed wheel is under test: nothing from the checkout may shadow it on sys.path.
  export PYTHONSAFEPATH=1
  exec .venv/bin/python -m pytest
else
  build_and_install requirements/kiosk.lock
  exec .venv/bin/kiosk demo
fi
