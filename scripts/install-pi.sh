#!/usr/bin/env bash
# Install the library kiosk on a Raspberry Pi running Raspberry Pi OS Bookworm (Lite or desktop).
#
#   sudo scripts/install-pi.sh            console + KMSDRM (kiosk.service)
#   sudo scripts/install-pi.sh --cage     inside the cage compositor (kiosk-cage.service)
#   sudo scripts/install-pi.sh --wheel dist/library_kiosk-X.whl   install that built wheel
#
# What it does: apt packages; a system user `kiosk` with only video render input gpio dialout;
# the kiosk wheel (built from this checkout unless --wheel names one) installed once into the
# venv /opt/kiosk/releases/<version>/venv (/opt/kiosk/current points at it), every other
# Python package pinned and hash-checked by requirements/kiosk.lock; the release guard; /etc/kiosk/kiosk.toml (never overwritten); the systemd unit, journald
# limits, the scanner udev rule and the Kivy touch config; boot to console with no screen
# blanking, no login prompt on tty1 and no other VTs to switch to. Safe to run again. It ends
# with `kiosk doctor` and exits non-zero, saying what to fix, while the doctor finds a blocker.
#
# --files-only --root DIR puts only the files under DIR (no apt, users, venv or systemctl):
# what the tests check, and a way to review the result before touching a Pi.
#
# In a chroot or a container that was not booted (no running systemd: an image being prepared,
# the CI's Debian root) it installs the same, enables the units for the next boot without
# starting or reloading anything, and checks the app and its configuration instead of running
# the doctor, which needs the booted Pi's reader, screen and clock. It says so as it goes.
set -eEuo pipefail
# Whatever fails without a message of its own still stops the install with one (a `return N`
# comes after its own message).
on_error() {
  local rc="$1" line="$2" cmd="$3"
  case "$cmd" in return*) return 0 ;; esac
  printf '\033[31merror: install-pi.sh stopped (exit %s) at line %s: %s\033[0m\n' "$rc" "$line" "$cmd" >&2
}
trap 'on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/kiosk
USER_NAME=kiosk
GROUPS_NEEDED=(video render input gpio dialout)

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc swig linux-libc-dev
  pcscd libccid libpcsclite-dev
  fonts-ipaexfont-gothic fonts-noto-cjk
  libgl1 libegl1 libgles2 libgbm1 libdrm2 libgl1-mesa-dri libxkbcommon0
  libusb-1.0-0 systemd-timesyncd
)
APT_CAGE=(cage xwayland)

DOC_DIR=/usr/share/doc/library-kiosk

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }
warn() { printf '\033[33mwarning: %s\033[0m\n' "$*" >&2; }

# The Kivy config for the chosen launch path: one reader per touch device (see config/kivy-touch.ini).
kivy_config() {
  local variant="$1"
  if [ "$variant" = cage ]; then
    sed -e 's/^mouse =.*$/mouse = mouse/' -e 's/^%(name)s =.*$/%(name)s =/'
  else
    cat
  fi
}

# Kernel command line: no console blanking, no blinking cursor or logo under the kiosk.
cmdline_edit() {
  local file="$1" opt
  [ -f "$file" ] || { warn "$file not found: set consoleblank=0 on the kernel command line yourself"; return 0; }
  for opt in consoleblank=0 vt.global_cursor_default=0 logo.nologo; do
    grep -qw -- "$opt" "$file" || sed -i "1 s/\$/ $opt/" "$file"
  done
}

install_file() {   # install_file SRC DEST MODE
  install -D -m "$3" "$1" "$2"
}

install_files() {
  local root="$1" variant="$2" owner="$3"
  install_file "$HERE/systemd/kiosk.service" "$root/etc/systemd/system/kiosk.service" 0644
  install_file "$HERE/systemd/kiosk-cage.service" "$root/etc/systemd/system/kiosk-cage.service" 0644
  install_file "$HERE/systemd/kiosk-power-request" "$root/usr/local/libexec/kiosk-power-request" 0755
  # Counter terminals with the USB keyboard hand-over: installed, enabled only by IT (README, "Counter").
  install_file "$HERE/scripts/hid-gadget.sh" "$root/usr/local/libexec/kiosk-hid-gadget" 0755
  install_file "$HERE/systemd/kiosk-hid-gadget.service" "$root/etc/systemd/system/kiosk-hid-gadget.service" 0644
  install_file "$HERE/systemd/journald-kiosk.conf" "$root/etc/systemd/journald.conf.d/kiosk.conf" 0644
  install_file "$HERE/systemd/99-kiosk-scanner.rules" "$root/etc/udev/rules.d/99-kiosk-scanner.rules" 0644
  mkdir -p "$root/etc/systemd/logind.conf.d"
  printf '# No spare VTs on a kiosk: nothing to Ctrl+Alt+Fn to.\n[Login]\nNAutoVTs=0\nReserveVT=0\n' \
    > "$root/etc/systemd/logind.conf.d/kiosk.conf"

  mkdir -p "$root/etc/kiosk"
  chmod 0750 "$root/etc/kiosk"
  if [ ! -e "$root/etc/kiosk/kiosk.toml" ]; then
    install -m 0640 "$HERE/config/kiosk.example.toml" "$root/etc/kiosk/kiosk.toml"
    warn "new /etc/kiosk/kiosk.toml from the example: edit it, then: kiosk config check /etc/kiosk/kiosk.toml"
  fi
  [ -e "$root/etc/kiosk/environment" ] || printf '%s\n' \
    '# Extra environment for the kiosk service, e.g. on a Pi 5 with a DSI panel:' \
    '# SDL_KMSDRM_DEVICE_INDEX=1' > "$root/etc/kiosk/environment"

  mkdir -p "$root/var/lib/kiosk/kivy"
  chmod 0700 "$root/var/lib/kiosk"
  kivy_config "$variant" < "$HERE/config/kivy-touch.ini" > "$root/var/lib/kiosk/kivy/config.ini"

  if [ -n "$owner" ]; then
    chown root:"$owner" "$root/etc/kiosk" "$root/etc/kiosk/kiosk.toml"
    chown -R "$owner:$owner" "$root/var/lib/kiosk"
  fi
  local boot="$root/boot/firmware/cmdline.txt"
  [ -f "$boot" ] || boot="$root/boot/cmdline.txt"
  cmdline_edit "$boot"
}

install_packages() {
  local variant="$1" pkgs=("${APT_PACKAGES[@]}")
  [ "$variant" = cage ] && pkgs+=("${APT_CAGE[@]}")
  apt-cache show liblgpio-dev >/dev/null 2>&1 && pkgs+=(liblgpio-dev)
  log "apt packages"
  apt-get update || die "apt-get update failed: check the network and /etc/apt/sources.list*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" \
    || die "apt could not install the packages the kiosk needs (above)"
  if dpkg-query -W -f='${Status}' vsmartcard-vpcd 2>/dev/null | grep -q "install ok installed"; then
    warn "vsmartcard-vpcd is installed: it accepts virtual cards from the network. On a kiosk: apt purge vsmartcard-vpcd"
  fi
}

create_user() {
  local g
  log "user $USER_NAME"
  for g in "${GROUPS_NEEDED[@]}"; do
    getent group "$g" >/dev/null || groupadd --system "$g" || die "could not create group $g"
  done
  if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/kiosk --no-create-home --shell /usr/sbin/nologin \
      --comment "Library kiosk" "$USER_NAME" || die "could not create user $USER_NAME"
  fi
  usermod -aG "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "$USER_NAME" || die "could not add $USER_NAME to its groups"
}

# The wheel to install: the one named with --wheel, else one built from this checkout.
build_wheel() {
  local out
  out="$(mktemp -d)"
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet --upgrade pip >&2
  "$out/venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$out" "$HERE" >&2 || die "could not build the kiosk wheel"
  rm -rf "$HERE/build" "$HERE"/*.egg-info
  ls "$out"/library_kiosk-*.whl
}

# One copy of the app per release: the wheel in its own venv under $PREFIX/releases/<version>, and
# $PREFIX/current pointing at the one that runs (the units start $PREFIX/current/venv/bin/kiosk). The
# lock pins and hash-checks every other package (lgpio for the Pi's GPIO comes with it on ARM).
# Signed releases from central IT are installed beside it by the release guard (kiosk/release/).
install_app() {
  local wheel="$1" lock="$HERE/requirements/kiosk.lock" version rel guard_py
  [ -f "$wheel" ] || die "no wheel at $wheel"
  [ -f "$lock" ] || die "no lock file at $lock"
  version="$(basename "$wheel" | cut -d- -f2)"
  [[ "$version" =~ ^[0-9]+(\.[0-9]+){1,3}$ ]] || die "$(basename "$wheel"): release versions are dotted numbers (1.4.2)"
  rel="$PREFIX/releases/$version"
  log "app: $(basename "$wheel") in $rel/venv"
  mkdir -p "$PREFIX/releases"
  [ -x "$rel/venv/bin/python" ] || python3 -m venv "$rel/venv" || die "could not create $rel/venv"
  "$rel/venv/bin/python" -m pip install --quiet --upgrade pip || die "pip could not be upgraded in $rel/venv"
  "$rel/venv/bin/python" -m pip install --quiet --require-hashes -r "$lock" \
    || die "the locked packages ($lock) did not install"
  "$rel/venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$wheel" || die "$wheel did not install"
  "$rel/venv/bin/python" -m pip check || die "the installed packages do not fit together"
  # current -> releases/<version>, atomically (a new link renamed over the old one).
  ln -sfn "releases/$version" "$PREFIX/.current.new" || die "could not make a link to releases/$version"
  mv -T "$PREFIX/.current.new" "$PREFIX/current" || die "could not point $PREFIX/current at releases/$version"
  if [ -d "$PREFIX/.venv" ]; then
    rm -rf "$PREFIX/.venv"
    warn "removed the old single venv $PREFIX/.venv (the kiosk now runs from $PREFIX/current)"
  fi
  # The guard runs with the system python3 before every start: a release cannot break it.
  guard_py="$("$rel/venv/bin/python" -c 'import kiosk.release.guard as g; print(g.__file__)')" \
    || die "the installed kiosk has no release guard"
  install -D -m 0755 "$guard_py" /usr/local/libexec/kiosk-release-guard
  install -d -m 0755 /var/lib/kiosk-release
  /usr/bin/python3 -I /usr/local/libexec/kiosk-release-guard --adopt "$version" \
    || die "the release guard could not record release $version"
  install -D -m 0644 "$HERE/README.md" "$DOC_DIR/README.md"
  ln -sfn "$PREFIX/current/venv/bin/kiosk" /usr/local/bin/kiosk
  chown -R root:root "$PREFIX"
  chmod -R go-w "$PREFIX"
}

# systemd is running (sd_booted): not in a chroot or a container that was not booted, such as an
# image being prepared or the CI's Debian root. There, units are enabled for the next boot only.
systemd_running() {
  [ -d /run/systemd/system ]
}

# The last word: the doctor, as the kiosk user. A blocker fails the install, with what to fix.
final_doctor() {
  log "kiosk doctor"
  if ! runuser -u "$USER_NAME" -- "$PREFIX/current/venv/bin/kiosk" doctor; then
    printf '\033[31merror: kiosk doctor found a blocker (FAIL above). Fix it, then run: kiosk doctor\033[0m\n' >&2
    return 1
  fi
}

# Not booted: the doctor would only see this root's lack of a reader, screen and clock. What can be
# proved here is proved: the app starts as the kiosk user and the site configuration is valid.
offline_check() {
  log "offline check (kiosk doctor needs the booted Pi)"
  runuser -u "$USER_NAME" -- "$PREFIX/current/venv/bin/kiosk" --version \
    || die "the installed kiosk does not start as user $USER_NAME"
  runuser -u "$USER_NAME" -- "$PREFIX/current/venv/bin/kiosk" config check /etc/kiosk/kiosk.toml \
    || die "/etc/kiosk/kiosk.toml is not valid (above)"
  warn "kiosk doctor not run: systemd is not running here. After the first boot run: kiosk doctor"
}

enable_services() {
  local variant="$1" unit=kiosk.service other=kiosk-cage.service
  [ "$variant" = cage ] && { unit=kiosk-cage.service; other=kiosk.service; }
  log "systemd: $unit"
  if systemd_running; then
    udevadm control --reload || die "udevadm could not reload the rules"
    udevadm trigger --subsystem-match=tty --subsystem-match=input
    systemctl daemon-reload || die "systemctl daemon-reload failed"
    systemctl restart systemd-journald || die "journald did not restart with the new limits"
    systemctl enable --now pcscd.socket || die "pcscd.socket could not be enabled and started"
    timedatectl set-ntp true || warn "could not switch NTP on: check the clock (kiosk doctor)"
  else
    # Nothing to reload or restart: udev, journald and logind read the new files at boot.
    warn "systemd is not running (chroot or container): units enabled for the next boot, nothing started or reloaded"
    systemctl enable pcscd.socket || die "pcscd.socket could not be enabled"
    systemctl enable systemd-timesyncd.service || die "systemd-timesyncd could not be enabled (NTP)"
  fi
  systemctl set-default multi-user.target || die "could not make multi-user.target the default"
  systemctl disable getty@tty1.service || true
  systemctl disable "$other" 2>/dev/null || true
  systemctl enable "$unit" || die "$unit could not be enabled"
}

main() {
  local variant=kmsdrm files_only=0 root="" wheel=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --cage) variant=cage ;;
      --files-only) files_only=1 ;;
      --root) root="$2"; shift ;;
      --wheel) wheel="$2"; shift ;;
      -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; return 0 ;;
      *) echo "unknown option: $1" >&2; return 2 ;;
    esac
    shift
  done
  if [ "$files_only" = 1 ]; then
    [ -n "$root" ] || { echo "--files-only needs --root DIR" >&2; return 2; }
    install_files "$root" "$variant" ""
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0 $*" >&2; return 1; }
  grep -q 'VERSION_CODENAME=bookworm' /etc/os-release || warn "made for Raspberry Pi OS Bookworm"
  grep -qa 'Raspberry Pi' /proc/device-tree/model 2>/dev/null || warn "not a Raspberry Pi: GPIO will be simulated"
  install_packages "$variant"
  create_user
  [ -n "$wheel" ] || wheel="$(build_wheel)"
  install_app "$wheel"
  install_files "" "$variant" "$USER_NAME"
  enable_services "$variant"
  if systemd_running; then
    final_doctor || return 1
    log "done: reboot; the kiosk starts on tty1"
  else
    offline_check
    log "done (not booted): the kiosk starts on tty1 at the first boot; then run: kiosk doctor"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
