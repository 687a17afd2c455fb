"""The release record shown by /health and `kiosk sync status`, and the READY marker."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from kiosk import __version__
from kiosk.release.guard import READY_MARKER, STATE_DIR, load_state


@dataclass(frozen=True)
class ReleaseStatus:
    running: str                    # this process's version
    known_good: str | None          # the release the guard falls back to
    trial: str | None               # a release not yet confirmed by READY
    last_rollback: dict | None      # {version, to, at, reason}
    last_install: dict | None       # {version, at, outcome, reason}

    def as_dict(self) -> dict:
        return asdict(self)


def release_status(state_dir: Path = STATE_DIR, running: str = __version__) -> ReleaseStatus:
    state = load_state(state_dir) if os.access(state_dir, os.R_OK) else None
    if state is None:
        return ReleaseStatus(running, None, None, None, None)
    return ReleaseStatus(running=running, known_good=state.known_good,
                         trial=state.trial.version if state.trial else None,
                         last_rollback=state.last_rollback, last_install=state.last_install)


def mark_ready(data_dir: Path, version: str = __version__) -> bool:
    """Written at READY: the guard keeps a release on trial once this names it. False when
    it cannot be written (a read-only data directory: the store reports that already)."""
    path = Path(data_dir) / READY_MARKER
    try:
        if path.read_text("ascii").strip() == version:
            return True
    except (OSError, UnicodeDecodeError):
        pass
    tmp = path.with_name(READY_MARKER + ".tmp")
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        return False
    return True
