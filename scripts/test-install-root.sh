#!/usr/bin/env bash
# The installer, tested: a fresh Debian 12 root, scripts/install-pi.sh run in it with the built
# wheel and requirements/kiosk.lock, the installed unit checked by systemd-analyze, the unit's own
# ExecStart run as its user to the idle frame (SDL offscreen), and `kiosk doctor` with no blocker.
# Then signed releases, as a kiosk takes them: an upgrade installed by the unit's release guard and
# kept once READY, a release that crashes at start rolled back after 3 starts, replays refused.
#
#   sudo scripts/test-install-root.sh [--wheel dist/library_kiosk-X.whl] [--keep]
#
# .ci/run runs it after the README's test command. Needs root (debootstrap, chroot, mounts, a
# network namespace), apt and PyPI. --keep leaves the root in place to look at (it is removed
# otherwise, on success and failure alike).
#
# Cache (KIOSK_CI_CACHE, default /var/cache/kiosk-ci): the debootstrapped base root as a tarball,
# apt's .debs and pip's downloads. Each is used when present and none is needed: without them
# the run is slower, not different (apt and pip still check every package's hash).
#
# The hardware the doctor checks, in a root without any: pcscd really runs in the root, serving
# a virtual reader (vsmartcard-vpcd's driver unpacked under /run, never installed, in a private
# network namespace so its port is reachable from nowhere), so pyscard as built by the installer
# talks to the root's own pcscd; the doctor reports the reader as virtual (a warning). The display
# is declared headless with SDL_VIDEODRIVER=offscreen, which the doctor reports as a warning: a
# root has no /dev/dri. The catalogue is the local one (CI reaches no ILS).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE=bookworm
MIRROR="${KIOSK_CI_MIRROR:-http://deb.debian.org/debian}"
CACHE="${KIOSK_CI_CACHE:-/var/cache/kiosk-ci}"
ARCH="$(dpkg --print-architecture)"
BASE_TAR=""
CACHE_TMP=0
ROOT=""
PCSCD_PID=""
HTTP_PID=""
KEEP=0
WHEEL=""
MOUNTED=()
TIMES=()
T_START=$(date +%s)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }
warn() { printf '\033[33mwarning: %s\033[0m\n' "$*" >&2; }

# step NAME FUNCTION: runs it, records how long it took.
step() {
  local name="$1" t0
  shift
  log "$name"
  t0=$(date +%s)
  "$@"
  TIMES+=("$(printf '%4ds  %s' "$(($(date +%s) - t0))" "$name")")
}

in_root() {   # a command in the root, with a clean environment
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

mount_in_root() {   # mount_in_root TARGET mount-args...
  local target="$ROOT$1"
  shift
  mkdir -p "$target"
  mount "$@" "$target" || die "could not mount $target"
  MOUNTED+=("$target")
}

cleanup() {
  local rc=$? i t0=$SECONDS pid
  set +e
  for pid in "$PCSCD_PID" "$HTTP_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      wait "$pid" 2>/dev/null
    fi
  done
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" || umount -l "${MOUNTED[i]}" || warn "could not unmount ${MOUNTED[i]}"
  done
  if [ -n "$ROOT" ] && [ -d "$ROOT" ]; then
    if [ "$KEEP" = 1 ]; then
      warn "root kept at $ROOT (remove it with: rm -rf --one-file-system $ROOT)"
    elif findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
      warn "something is still mounted under $ROOT: not removing it"
    else
      rm -rf --one-file-system "$ROOT"
    fi
  fi
  [ "$CACHE_TMP" = 1 ] && rm -rf "$CACHE"
  printf '%4ds  clean-up (%d mounts undone, root removed)\n' $((SECONDS - t0)) ${#MOUNTED[@]}
  printf '%4ds  in all\n' "$(($(date +%s) - T_START))"
  if [ "$rc" -ne 0 ]; then
    [ ${#TIMES[@]} -eq 0 ] || printf '%s\n' "steps that passed:" "${TIMES[@]}" >&2
    printf '\033[31merror: the installer test failed (exit %s): see the step above\033[0m\n' "$rc" >&2
  fi
  exit "$rc"
}

host_tools() {
  local missing=() tool
  for tool in debootstrap:debootstrap chroot:coreutils unshare:util-linux findmnt:util-linux; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || die "could not install ${missing[*]} on this machine"
  fi
  if ! mkdir -p "$CACHE/debootstrap" "$CACHE/apt" "$CACHE/pip" 2>/dev/null || [ ! -w "$CACHE" ]; then
    CACHE="$(mktemp -d /var/tmp/kiosk-ci-cache.XXXXXX)"
    CACHE_TMP=1
    warn "cannot write the cache ${KIOSK_CI_CACHE:-/var/cache/kiosk-ci}: running without one"
    mkdir -p "$CACHE/debootstrap" "$CACHE/apt" "$CACHE/pip"
  fi
  BASE_TAR="$CACHE/debian-$SUITE-$ARCH-minbase.tar.gz"
}

base_root() {
  ROOT="$(mktemp -d /var/tmp/kiosk-root.XXXXXX)"
  chmod 0755 "$ROOT"
  # In memory when there is plenty: dpkg's many fsyncs and removing some 50,000 files cost half a
  # minute each on disk. The root needs about 1.5 GB. (--keep: on disk, to outlive the test.)
  local avail_kb
  avail_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
  if [ "$KEEP" = 0 ] && [ "${avail_kb:-0}" -gt $((8 * 1024 * 1024)) ]; then
    mount -t tmpfs -o size=3g,mode=0755 kiosk-root "$ROOT" || die "could not mount a tmpfs on $ROOT"
    MOUNTED+=("$ROOT")
    echo "root in memory (tmpfs): $ROOT"
  fi
  if [ -f "$BASE_TAR" ] && tar -C "$ROOT" -xzf "$BASE_TAR" 2>/dev/null && [ -x "$ROOT/usr/bin/apt-get" ]; then
    echo "base root from the cache: $BASE_TAR"
    return 0
  fi
  [ -f "$BASE_TAR" ] && warn "the cached base root $BASE_TAR is unusable: building a new one"
  find "$ROOT" -mindepth 1 -delete
  debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" "$SUITE" "$ROOT" "$MIRROR" \
    > "$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap $SUITE failed (log: $CACHE/debootstrap.log)"; }
  in_root apt-get clean
  [ "$CACHE_TMP" = 0 ] || return 0
  # Saved for next time under a temporary name first: a half-written tarball is never used.
  tar -C "$ROOT" -czf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR" \
    || { rm -f "$BASE_TAR.tmp"; warn "could not cache the base root (continuing)"; }
}

prepare_root() {
  # A fresh /dev with only the basic nodes: no /dev/dri, input or USB from the machine running the test.
  mount_in_root /proc -t proc proc
  mount_in_root /sys -t sysfs -o ro sysfs
  mount_in_root /dev -t tmpfs -o mode=0755,nosuid devtmpfs
  local node name major minor
  for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
    read -r name major minor <<<"$node"
    mknod -m 0666 "$ROOT/dev/$name" c "$major" "$minor"
  done
  mount_in_root /dev/pts -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts
  ln -s pts/ptmx "$ROOT/dev/ptmx"
  mount_in_root /dev/shm -t tmpfs -o mode=1777,nosuid,nodev shm
  # /run empty, as at boot: no /run/systemd/system, so the installer sees that systemd is not running.
  mount_in_root /run -t tmpfs -o mode=0755,nosuid,nodev run
  mount_in_root /tmp -t tmpfs -o mode=1777,nosuid,nodev tmp
  mount_in_root /var/cache/apt/archives --bind "$CACHE/apt"
  mount_in_root /root/.cache/pip --bind "$CACHE/pip"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # A machine behind a TLS-inspecting proxy trusts its CA locally: so must the root, or pip cannot
  # reach PyPI. ca-certificates (installed by the installer) adds these to the root's store.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    echo "this machine's local CAs carried into the root: $(cd /usr/local/share/ca-certificates && echo ./*.crt)"
  fi
  # The checkout as the installer expects it next to itself; the wheel beside it.
  mkdir -p "$ROOT/root/kiosk-src" "$ROOT/root/kiosk-wheel"
  tar -C "$HERE" --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$ROOT/root/kiosk-src" -xf -
  cp "$WHEEL" "$ROOT/root/kiosk-wheel/"
}

# Each line of output with the seconds since the step began: where the installer spends its time.
stamped() {
  local t0=$SECONDS line
  while IFS= read -r line; do printf '[%3ds] %s\n' $((SECONDS - t0)) "$line"; done
}

run_installer() {
  in_root bash /root/kiosk-src/scripts/install-pi.sh --wheel "/root/kiosk-wheel/$(basename "$WHEEL")" </dev/null 2>&1 \
    | stamped || die "scripts/install-pi.sh failed in the Debian root"
  [ -x "$ROOT/opt/kiosk/current/venv/bin/kiosk" ] || die "the installer succeeded but /opt/kiosk/current/venv/bin/kiosk is missing"
  [ -x "$ROOT/usr/local/libexec/kiosk-release-guard" ] || die "the installer did not install the release guard"
  echo "root: $(du -sh --one-file-system "$ROOT" 2>/dev/null | cut -f1) installed"
}

check_units() {
  local unit
  in_root systemd-analyze verify /etc/systemd/system/kiosk.service \
    || die "systemd-analyze verify: the installed kiosk.service has problems (above)"
  for unit in kiosk.service pcscd.socket; do
    [ "$(in_root systemctl is-enabled "$unit" 2>/dev/null)" = enabled ] || die "$unit is not enabled in the root"
  done
  [ "$(in_root systemctl is-enabled kiosk-cage.service 2>/dev/null)" != enabled ] \
    || die "kiosk-cage.service is enabled too: only one kiosk unit may be"
  [ "$(in_root systemctl get-default)" = multi-user.target ] || die "the default target is not multi-user.target"
  echo "kiosk.service verified; kiosk.service and pcscd.socket enabled; default multi-user.target"
}

# pcscd as the unit would start it, plus a virtual reader for the test only.
start_pcscd() {
  local debs="/run/kiosk-ci" driver deb
  mkdir -p "$ROOT$debs/deb" "$ROOT/run/pcscd"
  # Downloaded, not installed: the kiosk's doctor must not find vpcd where a kiosk would have it.
  in_root chown _apt "$debs/deb"
  in_root sh -c "cd $debs/deb && apt-get download -q vsmartcard-vpcd" \
    || die "could not download vsmartcard-vpcd in the root"
  deb="$(ls "$ROOT$debs"/deb/vsmartcard-vpcd_*.deb)"
  in_root dpkg-deb -x "${deb#"$ROOT"}" "$debs/vpcd" || die "could not unpack vsmartcard-vpcd"
  driver="$(cd "$ROOT" && find ".$debs/vpcd" -name 'libifdvpcd.so*' -type f | head -n1)"
  [ -n "$driver" ] || die "no libifdvpcd.so in vsmartcard-vpcd"
  printf 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x8C7B\nLIBPATH %s\nCHANNELID 0x8C7B\n' \
    "${driver#.}" > "$ROOT$debs/reader.conf"
  # Its own network namespace: vpcd listens on 0.0.0.0:35963, reachable there from nothing.
  unshare --net chroot "$ROOT" /usr/sbin/pcscd --foreground --config "$debs/reader.conf" \
    > "$ROOT$debs/pcscd.log" 2>&1 &
  PCSCD_PID=$!
  local i
  for i in $(seq 1 100); do
    [ -S "$ROOT/run/pcscd/pcscd.comm" ] && break
    kill -0 "$PCSCD_PID" 2>/dev/null || { cat "$ROOT$debs/pcscd.log" >&2; die "pcscd exited at start-up in the root"; }
    sleep 0.1
  done
  [ -S "$ROOT/run/pcscd/pcscd.comm" ] || { cat "$ROOT$debs/pcscd.log" >&2; die "pcscd made no socket in 10 s"; }
  echo "pcscd running in the root (pid $PCSCD_PID) with a virtual reader"
}

# What this root has: the pcsc reader above, no ILS (the local catalogue), no GPIO, no printer.
site_config() {
  cat > "$ROOT/etc/kiosk/kiosk.toml" <<'EOF'
# The CI root's site file (scripts/test-install-root.sh): its choices match what the root has.
[kiosk]
id = "ci-root-01"
group = "ci"

[card]
backend = "pcsc"

[catalogue]
backend = "local"

[hardware]
leds = "none"
scanner = "wedge"
printer = "none"
EOF
  in_root runuser -u kiosk -- /opt/kiosk/current/venv/bin/kiosk config check /etc/kiosk/kiosk.toml \
    || die "the CI site configuration is not valid"
}

# The installed unit's ExecStartPre (root) and ExecStart (its User=, its Environment=), read from the
# unit file itself into START_PRE and START_CMD.
START_PRE=()
START_CMD=()
read_unit() {
  local unit="$ROOT/etc/systemd/system/kiosk.service" exec_start pre user line envs=() word
  exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
  pre="$(sed -n 's/^ExecStartPre=//p' "$unit")"
  user="$(sed -n 's/^User=//p' "$unit")"
  [ -n "$exec_start" ] && [ "$(printf '%s\n' "$exec_start" | wc -l)" = 1 ] || die "kiosk.service needs exactly one ExecStart="
  case "$exec_start" in [-+@:!]*) die "ExecStart with a prefix is not handled here: $exec_start" ;; esac
  [ "$(printf '%s\n' "$pre" | wc -l)" = 1 ] && [ "${pre#+}" != "$pre" ] \
    || die "kiosk.service needs one ExecStartPre=+ (the release guard, as root)"
  [ -n "$user" ] || die "kiosk.service has no User="
  while IFS= read -r line; do
    case "$line" in *[\"\'\\]*) die "quoted Environment= is not handled here: $line" ;; esac
    for word in $line; do envs+=("$word"); done
  done < <(sed -n 's/^Environment=//p' "$unit")
  if [ -f "$ROOT/etc/kiosk/environment" ]; then
    while IFS= read -r line; do
      case "$line" in ''|'#'*) ;; *) envs+=("$line") ;; esac
    done < "$ROOT/etc/kiosk/environment"
  fi
  envs+=(SDL_VIDEODRIVER=offscreen)   # the one change: no screen here
  # shellcheck disable=SC2206  # split into words as systemd does (no quotes, checked above)
  START_PRE=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin "${envs[@]}" ${pre#+})
  # shellcheck disable=SC2206
  START_CMD=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin
    runuser -u "$user" -- /usr/bin/env -i "HOME=/var/lib/kiosk" "USER=$user" "LOGNAME=$user"
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin LANG=C.UTF-8 "${envs[@]}" $exec_start --exit-when-ready)
  echo "as $user: $exec_start --exit-when-ready (SDL_VIDEODRIVER=offscreen); before it, as root: ${pre#+}"
}

# The app as the unit starts it, to its idle frame (no guard yet: the first start after the installer).
run_exec_start() {
  read_unit
  local t0 rc=0
  t0=$(date +%s%N)
  timeout 120 chroot "$ROOT" "${START_CMD[@]}" </dev/null > "$ROOT/run/kiosk-ci/run.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || ! grep -q 'kiosk.ready_exit' "$ROOT/run/kiosk-ci/run.log"; then
    tail -n 40 "$ROOT/run/kiosk-ci/run.log" >&2
    [ "$rc" = 124 ] && die "the installed kiosk did not reach its idle frame in 120 s"
    die "the installed kiosk did not reach its idle frame (exit $rc)"
  fi
  echo "idle frame drawn, backends connected: exit 0 in $((($(date +%s%N) - t0) / 1000000)) ms"
}

run_doctor() {
  in_root runuser -u kiosk -- /usr/bin/env SDL_VIDEODRIVER=offscreen /opt/kiosk/current/venv/bin/kiosk doctor \
    || die "kiosk doctor found a blocker in the installed root (FAIL above)"
}

# -- signed releases: an upgrade, a broken release rolled back, replays refused -------------------

# Wheels of newer versions made from the one under test: the same files, the version changed in
# the dist-info and in kiosk/__init__.py (RECORD rewritten); --broken: `kiosk run` raises at start.
make_wheel() {   # make_wheel SRC OUTDIR NEWVERSION [--broken]
  python3 - "$@" <<'PY'
import base64, hashlib, re, sys, zipfile
src, outdir, new = sys.argv[1:4]
broken = "--broken" in sys.argv[4:]
name = src.rsplit("/", 1)[-1]
old = name.split("-")[1]
dest = f"{outdir}/{name.replace('-' + old + '-', '-' + new + '-', 1)}"
rows, record = [], None
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        path = info.filename.replace(f"library_kiosk-{old}.dist-info/", f"library_kiosk-{new}.dist-info/")
        if path.endswith(".dist-info/RECORD"):
            record = path
            continue
        data = zin.read(info)
        if path.endswith(".dist-info/METADATA"):
            data = re.sub(rb"(?m)^Version: .*$", b"Version: " + new.encode(), data, count=1)
        elif path == "kiosk/__init__.py":
            data = data.replace(f'__version__ = "{old}"'.encode(), f'__version__ = "{new}"'.encode())
        elif path == "kiosk/cli/main.py" and broken:
            data = data.replace(b"def cmd_run(args: argparse.Namespace) -> int:\n",
                                b"def cmd_run(args: argparse.Namespace) -> int:\n"
                                b"    raise RuntimeError('a deliberately broken release (CI)')\n", 1)
        zout.writestr(path, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}")
    rows.append(f"{record},,")
    zout.writestr(record, "\n".join(rows) + "\n")
print(dest)
PY
}

REL_V0="" REL_V1="" REL_V2="" REL_PORT=""

releases_built() {
  local major minor patch tags w
  REL_V0="$(basename "$WHEEL" | cut -d- -f2)"
  tags="$(basename "$WHEEL" | cut -d- -f3-)"
  IFS=. read -r major minor patch <<<"$REL_V0"
  REL_V1="$major.$minor.$((patch + 1))" REL_V2="$major.$minor.$((patch + 2))"
  mkdir -p "$ROOT/srv/kiosk-releases" "$ROOT/root/release-wheels"
  cp "$WHEEL" "$ROOT/root/release-wheels/"
  make_wheel "$WHEEL" "$ROOT/root/release-wheels" "$REL_V1" >/dev/null || die "could not make the $REL_V1 wheel"
  make_wheel "$WHEEL" "$ROOT/root/release-wheels" "$REL_V2" --broken >/dev/null \
    || die "could not make the broken $REL_V2 wheel"
  # Central IT's side, with the installed kiosk command: a release key, three signed releases.
  in_root /opt/kiosk/current/venv/bin/kiosk keys new --out /root/central-it --name release >/dev/null \
    || die "kiosk keys new failed"
  install -m 0644 "$ROOT/root/central-it/release.pub" "$ROOT/etc/kiosk/release.pub"
  for w in "$REL_V0" "$REL_V1" "$REL_V2"; do
    in_root /opt/kiosk/current/venv/bin/kiosk release build --key /root/central-it/release.key \
      --wheel "/root/release-wheels/library_kiosk-$w-$tags" \
      --lock /root/kiosk-src/requirements/kiosk.lock --out "/srv/kiosk-releases/$w" >/dev/null \
      || die "kiosk release build $w failed"
  done
  REL_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  chroot "$ROOT" /usr/bin/python3 -m http.server --bind 127.0.0.1 --directory /srv/kiosk-releases "$REL_PORT" \
    > "$ROOT/run/kiosk-ci/http.log" 2>&1 &
  HTTP_PID=$!
  cat >> "$ROOT/etc/kiosk/kiosk.toml" <<EOF

[management]
release_keys = ["/etc/kiosk/release.pub"]
release_url = "http://127.0.0.1:$REL_PORT/$REL_V1/manifest.json"
EOF
  in_root runuser -u kiosk -- /opt/kiosk/current/venv/bin/kiosk config check /etc/kiosk/kiosk.toml \
    || die "the site configuration with release keys is not valid"
  echo "releases $REL_V0 (installed), $REL_V1, $REL_V2 (crashes at start) signed, served on 127.0.0.1:$REL_PORT"
}

fetch_release() {   # fetch_release VERSION: what the kiosk's poller does, as the kiosk user
  in_root runuser -u kiosk -- /opt/kiosk/current/venv/bin/kiosk release fetch \
    --url "http://127.0.0.1:$REL_PORT/$1/manifest.json" 2>&1
}

# One start as systemd makes it: the guard as root, then the app as its user. Sets START_RC.
START_RC=0
unit_start() {
  START_RC=0
  : > "$ROOT/run/kiosk-ci/guard.log"
  chroot "$ROOT" "${START_PRE[@]}" </dev/null > "$ROOT/run/kiosk-ci/guard.log" 2>&1 \
    || die "the release guard failed (it must always exit 0)"
  sed 's/^/    /' "$ROOT/run/kiosk-ci/guard.log"
  timeout 120 chroot "$ROOT" "${START_CMD[@]}" </dev/null > "$ROOT/run/kiosk-ci/run.log" 2>&1 || START_RC=$?
  if [ "$START_RC" = 0 ] && ! grep -q 'kiosk.ready_exit' "$ROOT/run/kiosk-ci/run.log"; then START_RC=99; fi
  echo "    app from $(readlink "$ROOT/opt/kiosk/current"): exit $START_RC"
}

running_is() {
  [ "$(readlink "$ROOT/opt/kiosk/current")" = "releases/$1" ] \
    || die "current is $(readlink "$ROOT/opt/kiosk/current"), not releases/$1"
  [ "$(in_root /opt/kiosk/current/venv/bin/kiosk --version)" = "kiosk $1" ] || die "the kiosk in current is not $1"
}

release_upgrade() {
  local out
  out="$(fetch_release "$REL_V1")" || die "fetching $REL_V1 failed: $out"
  echo "$out"
  unit_start
  grep -q "release $REL_V1 installed" "$ROOT/run/kiosk-ci/guard.log" || die "the guard did not install $REL_V1"
  [ "$START_RC" = 0 ] || { tail -n 30 "$ROOT/run/kiosk-ci/run.log" >&2; die "$REL_V1 did not reach its idle frame"; }
  running_is "$REL_V1"
  unit_start
  grep -q "release $REL_V1 reached READY: kept" "$ROOT/run/kiosk-ci/guard.log" || die "the guard did not keep $REL_V1"
  echo "upgraded to $REL_V1; kept after READY"
}

release_rollback() {
  local out n
  out="$(fetch_release "$REL_V2")" || die "fetching $REL_V2 failed: $out"
  echo "$out"
  for n in 1 2 3; do
    unit_start
    [ "$START_RC" != 0 ] || die "the broken release $REL_V2 reached its idle frame (start $n)"
    running_is "$REL_V2"
  done
  unit_start
  grep -q "release $REL_V2 rolled back to $REL_V1" "$ROOT/run/kiosk-ci/guard.log" \
    || die "the guard did not roll $REL_V2 back"
  [ "$START_RC" = 0 ] || die "$REL_V1 did not reach its idle frame after the rollback"
  running_is "$REL_V1"
  out="$(in_root runuser -u kiosk -- /opt/kiosk/current/venv/bin/kiosk release status --json)"
  echo "$out"
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); r = d["last_rollback"]
assert d["running"] == sys.argv[3] and r["version"] == sys.argv[2] and r["to"] == sys.argv[3], d' \
    "$out" "$REL_V2" "$REL_V1" || die "kiosk release status does not show the rollback"
  echo "the broken $REL_V2 failed 3 starts and was rolled back to $REL_V1 at the 4th"
}

release_replays() {
  local v want out
  for v in "$REL_V1:replayed" "$REL_V2:rolled_back" "$REL_V0:older_version"; do
    want="${v#*:}" v="${v%%:*}"
    if out="$(fetch_release "$v")"; then die "release $v was taken again: $out"; fi
    printf '%s\n' "$out" | grep -q "$want" || die "release $v refused for the wrong reason: $out"
    echo "release $v refused: $want"
  done
  [ -z "$(ls -A "$ROOT/var/lib/kiosk/release-staged" 2>/dev/null)" ] || die "a refused release was staged"
  # Staged behind the app's back (as the kiosk user could): the guard's own checks refuse it.
  cp -r "$ROOT/srv/kiosk-releases/$REL_V2" "$ROOT/var/lib/kiosk/release-staged/$REL_V2"
  unit_start
  grep -q "staged release $REL_V2 not installed: refused: rolled_back" "$ROOT/run/kiosk-ci/guard.log" \
    || die "the guard did not refuse a replayed $REL_V2"
  running_is "$REL_V1"
  echo "a replay staged by hand was refused by the guard; $REL_V1 still runs"
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --wheel) WHEEL="$2"; shift ;;
      --keep) KEEP=1 ;;
      -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}"; return 0 ;;
      *) echo "unknown option: $1" >&2; return 2 ;;
    esac
    shift
  done
  [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
  if [ -z "$WHEEL" ]; then
    local found=("$HERE"/dist/library_kiosk-*.whl)
    [ ${#found[@]} = 1 ] && [ -f "${found[0]}" ] \
      || die "no single wheel in dist/: build it first (scripts/setup.sh test), or name it with --wheel"
    WHEEL="${found[0]}"
  fi
  [ -f "$WHEEL" ] || die "no wheel at $WHEEL"
  WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  step "host tools (debootstrap)" host_tools
  step "Debian $SUITE root ($ARCH, minbase)" base_root
  step "root prepared: /proc /sys /dev /run, the checkout and $(basename "$WHEEL")" prepare_root
  step "scripts/install-pi.sh in the root" run_installer
  step "systemd-analyze verify and enablement" check_units
  step "pcscd in the root with a virtual reader" start_pcscd
  step "site configuration for the root" site_config
  step "the unit's ExecStart to its idle frame" run_exec_start
  step "kiosk doctor" run_doctor
  step "signed releases built and served (kiosk release build)" releases_built
  step "release upgrade: fetched, installed by the guard, READY, kept" release_upgrade
  step "broken release: 3 failed starts, rolled back" release_rollback
  step "replays and downgrades refused" release_replays
  log "installer test passed"
  printf '%s\n' "${TIMES[@]}"
}

main "$@"
