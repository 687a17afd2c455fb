"""The kiosk's side of a release: check the polled manifest, download, stage.

The polling channel is the configuration's (kiosk/sync/config_poll.py ConfigPoller,
wired by the shell): it fetches management.release_url and hands the body to
`ReleaseFetcher.apply`. The manifest is checked first (release keys, target,
expiry, no replay, no downgrade, no version rolled back here), then each file is
downloaded from beside it with a size cap and its SHA-256 checked, into
<data_dir>/release-staged/<version>/ (a temporary directory renamed into place).
The running app cannot write /opt/kiosk: the root guard installs the staged release
at the next start, verifying it all again. The shell restarts at an idle moment.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin

import requests

from kiosk import __version__
from kiosk.config.signed import load_public_keys
from kiosk.logs import log_event
from kiosk.release.guard import STAGED_DIR, STATE_DIR, load_state
from kiosk.release.manifest import (HASH_MISMATCH, MANIFEST, Manifest, ReleaseRefused, check_files,
                                    verify_manifest)

log = logging.getLogger("kiosk.release")


@dataclass(frozen=True)
class FetchOutcome:
    applied: bool
    code: str = ""
    reason: str = ""
    version: str | None = None


def release_url(config: dict) -> str:
    k = config["kiosk"]
    return config["management"]["release_url"].replace("{kiosk}", k["id"]).replace("{group}", k["group"])


class ReleaseFetcher:
    """apply(body, source, host) for ConfigPoller: the polled body is the manifest."""

    def __init__(self, config: dict, *, state_dir: Path = STATE_DIR, session: requests.Session | None = None,
                 running: str = __version__, on_staged: Callable[[str], None] = lambda v: None,
                 clock: Callable[[], datetime] = lambda: datetime.now().astimezone()) -> None:
        self.url = release_url(config)
        self._keys = load_public_keys(config["management"]["release_keys"])
        self._kiosk, self._group = config["kiosk"]["id"], config["kiosk"]["group"]
        self._verify: str | bool = config["management"]["poll_ca"] or True
        self.staging = Path(config["kiosk"]["data_dir"]).expanduser() / STAGED_DIR
        self._state_dir = state_dir
        self._session = session or requests.Session()
        self._running = running
        self._on_staged = on_staged
        self._clock = clock
        self.last: FetchOutcome | None = None

    def apply(self, body: bytes, source: str = "poll", host: str = "") -> FetchOutcome:
        try:
            manifest = verify_manifest(body, self._keys, self._kiosk, self._group, load_state(self._state_dir),
                                       self._running, self._clock())
            if (self.staging / manifest.version / MANIFEST).exists():
                outcome = FetchOutcome(True, version=manifest.version)      # staged already: restart pending
            else:
                self._stage(manifest)
                outcome = FetchOutcome(True, version=manifest.version)
                log_event(log, "release.staged", version=manifest.version, source=source)
        except ReleaseRefused as e:
            outcome = FetchOutcome(False, e.code, e.reason)
            quiet = e.code == "replayed"        # the release this kiosk runs, still published
            log_event(log, "release.refused", level=logging.INFO if quiet else logging.WARNING, code=e.code,
                      reason=e.reason)
        except (requests.RequestException, OSError) as e:
            outcome = FetchOutcome(False, "unreachable", f"{type(e).__name__}: {str(e)[:200]}")
            log_event(log, "release.download_failed", level=logging.WARNING, error=type(e).__name__)
        self.last = outcome
        if outcome.applied and outcome.version:
            self._on_staged(outcome.version)
        return outcome

    def _stage(self, manifest: Manifest) -> None:
        self.staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = Path(tempfile.mkdtemp(dir=self.staging, prefix=".part-"))
        try:
            for f in manifest.files:
                self._download(urljoin(self.url, f.name), work / f.name, f.size, f.sha256)
            check_files(manifest, work)
            (work / MANIFEST).write_bytes(manifest.raw)
            for p in work.iterdir():
                os.chmod(p, 0o644)
            os.chmod(work, 0o755)
            os.replace(work, self.staging / manifest.version)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, url: str, dest: Path, size: int, sha256: str) -> None:
        h, got = hashlib.sha256(), 0
        with self._session.get(url, stream=True, verify=self._verify, timeout=(5.0, 60.0)) as r, \
                open(dest, "wb") as out:
            r.raise_for_status()
            for chunk in r.iter_content(1 << 16):
                got += len(chunk)
                if got > size:
                    raise ReleaseRefused(HASH_MISMATCH, f"{dest.name}: larger than the signed {size} bytes")
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if got != size or h.hexdigest() != sha256:
            raise ReleaseRefused(HASH_MISMATCH, f"{dest.name}: not the file that was signed (size or SHA-256)")
