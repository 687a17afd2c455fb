"""The release guard: run as root before every start of the kiosk (ExecStartPre=+).

It is the one place that switches /opt/kiosk/current, and it is standard-library
Python on purpose: scripts/install-pi.sh copies this file to
/usr/local/libexec/kiosk-release-guard, where it runs with the system python3, so a
release that cannot even import cannot break the thing that rolls it back.

Each start:
  1. A release on trial (installed, not yet READY): confirmed if the app wrote the
     READY marker for it; rolled back to the previous release once it has been started
     `max_starts` times without reaching READY, or its deadline has passed. A version
     rolled back is remembered and never installed again by itself.
  2. No trial: a release the app staged (verified, downloaded) is handed to the
     installer of the last release that reached READY (`python -m kiosk.release.install`,
     which verifies everything again as root), then `current` is switched atomically
     (a new symlink renamed over the old one) and the new release goes on trial.
The guard always exits 0: whatever happens here, the kiosk starts with a release
that is on disk.

The state (ReleaseState, JSON, root-owned, readable by the kiosk user) keeps the
high-water mark that refuses downgrades and replays, across reboots and rollbacks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

PREFIX = Path("/opt/kiosk")
STATE_DIR = Path("/var/lib/kiosk-release")     # root's: the kiosk user only reads it
DATA_DIR = Path("/var/lib/kiosk")               # the kiosk user's: READY marker and staged releases
READY_MARKER = "release-ready"
STAGED_DIR = "release-staged"
MAX_STARTS = 3
DEADLINE_S = 900.0
INSTALL_TIMEOUT_S = 240          # under the unit's TimeoutStartSec (300)
VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){1,3}$")


def parse_version(text: str) -> tuple[int, ...]:
    """'1.2.3' -> (1, 2, 3). Releases use plain dotted numbers only, so that 'newer' has
    one meaning on every kiosk; ValueError otherwise."""
    if not isinstance(text, str) or not VERSION_RE.match(text):
        raise ValueError(f"release version {str(text)[:40]!r} is not dotted numbers such as 1.4.2")
    return tuple(int(p) for p in text.split("."))


@dataclass
class Trial:
    version: str
    previous: str | None
    starts: int
    since: str
    deadline: str


@dataclass
class ReleaseState:
    """What the guard knows, and what /health and `kiosk sync status` show."""
    known_good: str | None = None       # the last release that reached READY: the rollback target
    high_water: str | None = None       # the highest version ever installed: nothing at or below it again
    trial: Trial | None = None
    rolled_back: list[str] = field(default_factory=list)
    last_rollback: dict | None = None   # {version, to, at, reason}
    last_install: dict | None = None    # {version, at, outcome, reason}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> ReleaseState:
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        trial = doc.get("trial")
        return cls(known_good=doc.get("known_good"), high_water=doc.get("high_water"),
                   trial=Trial(**trial) if isinstance(trial, dict) else None,
                   rolled_back=[str(v) for v in doc.get("rolled_back") or []],
                   last_rollback=doc.get("last_rollback"), last_install=doc.get("last_install"))

    def refuses(self, version: str, running: str | None = None) -> tuple[str, str] | None:
        """(code, reason) when `version` may not be installed: a version rolled back here, a
        replay of one installed (or `running`), a downgrade; None when it may."""
        if version in self.rolled_back:
            return "rolled_back", f"version {version} was rolled back on this kiosk; it is not installed again"
        if version in (running, self.known_good, self.high_water):
            return "replayed", f"version {version} is already installed"
        marks = [parse_version(v) for v in (self.high_water, running) if v is not None]
        if marks and parse_version(version) < max(marks):
            return "older_version", f"version {version} is older than one installed here; downgrade refused"
        return None


def load_state(state_dir: Path) -> ReleaseState:
    """The stored state; an empty one when there is none. A damaged file is kept aside and
    replaced by an empty state (the high-water mark is then rebuilt from the releases on
    disk by the guard), so it can never stop a start."""
    path = state_dir / "state.json"
    try:
        return ReleaseState.from_json(json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        return ReleaseState()
    except (OSError, ValueError, TypeError):
        try:
            os.replace(path, path.with_suffix(".damaged"))
        except OSError:
            pass
        return ReleaseState()


def save_state(state_dir: Path, state: ReleaseState) -> None:
    """Temp file, fsync, rename, directory fsync: a power cut leaves the old or the new state."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".state.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state.to_json(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, state_dir / "state.json")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(state_dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_release(prefix: Path) -> str | None:
    """The version `current` points at (releases/<version>), or None."""
    try:
        target = os.readlink(prefix / "current")
    except OSError:
        return None
    return Path(target).name


def switch_current(prefix: Path, version: str) -> None:
    """current -> releases/<version>, atomically: a new symlink renamed over the old one."""
    tmp = prefix / ".current.new"
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(f"releases/{version}", tmp)
    os.replace(tmp, prefix / "current")
    _fsync_dir(prefix)


def read_ready(data_dir: Path) -> str | None:
    """The version the app last wrote at READY (kiosk/release/status.py mark_ready)."""
    try:
        text = (data_dir / READY_MARKER).read_text("ascii", errors="replace").strip()
    except OSError:
        return None
    return text[:40] or None


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _installed(prefix: Path) -> list[str]:
    out = []
    for p in (prefix / "releases").glob("*"):
        try:
            parse_version(p.name)
        except ValueError:
            continue
        if (p / "venv" / "bin" / "python").exists():
            out.append(p.name)
    return sorted(out, key=parse_version)


Installer = Callable[[Path, str], "tuple[str | None, str]"]   # (staged dir, known good) -> (version, reason)


def run_installer(prefix: Path, state_dir: Path, config: str) -> Installer:
    """The installer of the last release that reached READY, as a child process."""
    def install(staged: Path, known_good: str) -> tuple[str | None, str]:
        python = prefix / "releases" / known_good / "venv" / "bin" / "python"
        cmd = [str(python), "-I", "-m", "kiosk.release.install", "--staged", str(staged), "--prefix", str(prefix),
               "--state-dir", str(state_dir), "--config", config]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"installer did not run: {type(e).__name__}"
        sys.stderr.write(done.stderr[-4000:])
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().splitlines()[-1], ""
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return None, last[:300]
    return install


def guard(prefix: Path, state_dir: Path, data_dir: Path, install: Installer, now: datetime,
          max_starts: int = MAX_STARTS, deadline_s: float = DEADLINE_S) -> list[str]:
    """One start's decisions; returns what was done, one line each (also printed)."""
    done: list[str] = []
    state = load_state(state_dir)
    current = current_release(prefix)
    installed = _installed(prefix)
    if state.known_good is None and current in installed:
        state.known_good = current                  # first start after the installer
    if installed:
        top = installed[-1]
        if state.high_water is None or parse_version(top) > parse_version(state.high_water):
            state.high_water = top
    ready = read_ready(data_dir)

    trial = state.trial
    if trial is not None:
        if ready == trial.version:
            state.known_good, state.trial = trial.version, None
            done.append(f"release {trial.version} reached READY: kept")
        elif trial.starts >= max_starts or now >= datetime.fromisoformat(trial.deadline):
            why = (f"not READY after {trial.starts} starts" if trial.starts >= max_starts
                   else f"not READY by {trial.deadline}")
            back = trial.previous if trial.previous in installed else state.known_good
            if back is not None and back != trial.version:
                switch_current(prefix, back)
                shutil.rmtree(prefix / "releases" / trial.version, ignore_errors=True)
            state.rolled_back.append(trial.version)
            state.last_rollback = {"version": trial.version, "to": back, "at": _iso(now), "reason": why}
            state.trial = None
            done.append(f"release {trial.version} rolled back to {back}: {why}")
        else:
            trial.starts += 1
            done.append(f"release {trial.version} on trial: start {trial.starts} of {max_starts}")
    elif current not in installed and state.known_good in installed:
        switch_current(prefix, state.known_good)    # a missing or broken link: back to a good one
        done.append(f"current pointed at nothing usable: back to {state.known_good}")

    staged_root = data_dir / STAGED_DIR
    if state.trial is None and state.known_good is not None and staged_root.is_dir():
        for staged in sorted(p for p in staged_root.iterdir() if not p.name.startswith(".")):
            version, reason = install(staged, state.known_good)
            shutil.rmtree(staged, ignore_errors=True)
            if version is None:
                state.last_install = {"version": staged.name[:40], "at": _iso(now), "outcome": "refused",
                                      "reason": reason}
                done.append(f"staged release {staged.name[:40]} not installed: {reason}")
                continue
            switch_current(prefix, version)
            state.high_water = version
            state.trial = Trial(version=version, previous=state.known_good, starts=1, since=_iso(now),
                                deadline=_iso(now + timedelta(seconds=deadline_s)))
            state.last_install = {"version": version, "at": _iso(now), "outcome": "installed", "reason": ""}
            done.append(f"release {version} installed and switched to: on trial")
            break
    _prune(prefix, state)
    save_state(state_dir, state)
    return done


def adopt(state_dir: Path, version: str) -> None:
    """The installer's record: a person chose `version`, so it is the known-good release,
    any trial ends, and the high-water mark is at least `version`."""
    state = load_state(state_dir)
    state.known_good, state.trial = version, None
    if state.high_water is None or parse_version(version) > parse_version(state.high_water):
        state.high_water = version
    state.rolled_back = [v for v in state.rolled_back if v != version]
    save_state(state_dir, state)


def _prune(prefix: Path, state: ReleaseState) -> None:
    """Keep the running release, the one to fall back to and the trial; remove the rest."""
    keep = {current_release(prefix), state.known_good}
    if state.trial is not None:
        keep |= {state.trial.version, state.trial.previous}
    for version in _installed(prefix)[:-1]:
        if version not in keep:
            shutil.rmtree(prefix / "releases" / version, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="kiosk-release-guard", description=__doc__.splitlines()[0])
    p.add_argument("--prefix", default=str(PREFIX))
    p.add_argument("--state-dir", default=str(STATE_DIR))
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--config", default="/etc/kiosk/kiosk.toml")
    p.add_argument("--max-starts", type=int, default=MAX_STARTS)
    p.add_argument("--deadline", type=float, default=DEADLINE_S, help="seconds a new release has to reach READY")
    p.add_argument("--adopt", metavar="VERSION", help="a person installed VERSION (scripts/install-pi.sh): "
                                                      "it is the release to keep and fall back to")
    args = p.parse_args(argv)
    prefix, state_dir = Path(args.prefix), Path(args.state_dir)
    if args.adopt:
        adopt(state_dir, args.adopt)
        print(f"kiosk-release-guard: release {args.adopt} installed by hand: kept")
        return 0
    try:
        lines = guard(prefix, state_dir, Path(args.data_dir), run_installer(prefix, state_dir, args.config),
                      datetime.now(timezone.utc), args.max_starts, args.deadline)
    except Exception as e:              # noqa: BLE001 - never stop the kiosk from starting
        print(f"kiosk-release-guard: {type(e).__name__}: {e}", file=sys.stderr)
        return 0
    for line in lines:
        print(f"kiosk-release-guard: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
