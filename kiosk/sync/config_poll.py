"""Pulling the signed configuration bundle, for kiosks that accept no inbound connections.

The poller only fetches: the bundle goes through the same `apply` as a push (and so
the same signature, version, target and schema checks), so a compromised web server
or a network in the middle can at worst withhold a bundle, never change one. It
sends If-None-Match with the last ETag and skips a body it has already handled (by
its SHA-256), so an unchanged bundle is neither re-applied nor re-audited on every
poll. Failures back off (doubling, up to `max_factor` times the interval) with
jitter, so a city's worth of kiosks coming back after a power cut do not all knock
at once. The URL may contain {kiosk} and {group}, filled in from the configuration.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

import requests

from kiosk import __version__
from kiosk.logs import log_event
from kiosk.worker_thread import WorkerThread

log = logging.getLogger("kiosk.config_poll")

APPLIED, REFUSED, UNCHANGED, NONE, UNREACHABLE = "applied", "refused", "unchanged", "none", "unreachable"


class Outcome(Protocol):
    applied: bool
    code: str
    reason: str


@dataclass(frozen=True)
class PollResult:
    state: str              # APPLIED, REFUSED, UNCHANGED, NONE (nothing published), UNREACHABLE
    code: str = ""          # the refusal code, or the error type when unreachable
    reason: str = ""


def next_delay(interval: float, failures: int, rng: random.Random, jitter: float = 0.1,
               max_factor: int = 8) -> float:
    """Seconds until the next poll: the interval, doubled per failure in a row up to
    `max_factor` times, spread by +-`jitter`."""
    base = interval * min(2 ** min(failures, 30), max_factor)
    return base * (1 + rng.uniform(-jitter, jitter))


def poll_url(config: dict) -> str:
    k = config["kiosk"]
    return config["management"]["poll_url"].replace("{kiosk}", k["id"]).replace("{group}", k["group"])


class ConfigPoller(WorkerThread):
    """Fetches central IT's published layer now and then and hands it to `apply`."""

    thread_name = "config-poll"

    def __init__(
        self,
        url: str,
        apply: Callable[[bytes, str, str], Outcome],
        *,
        interval: float = 900.0,
        ca_bundle: str = "",
        max_bytes: int = 65536,
        timeout: float = 15.0,
        known_digest: str | None = None,
        session: requests.Session | None = None,
        rng: random.Random | None = None,
        jitter: float = 0.1,
        max_factor: int = 8,
        first_delay: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        super().__init__()
        self.url = url
        self._apply = apply
        self.interval = interval
        self._verify: str | bool = ca_bundle or True
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._handled = known_digest            # the body we last handled (applied or refused)
        self._etag: str | None = None
        self._session = session or requests.Session()
        self._rng = rng or random.Random()
        self._jitter = jitter
        self._max_factor = max_factor
        self._first_delay = first_delay
        self._clock = clock
        self.failures = 0
        self.last_result: PollResult | None = None
        self.last_contact: datetime | None = None   # last time the server answered at all
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: dict, apply: Callable[[bytes, str, str], Outcome],
                    known_digest: str | None = None, **kwargs: Any) -> ConfigPoller:
        m = config["management"]
        return cls(poll_url(config), apply, interval=float(m["poll_interval"]), ca_bundle=m["poll_ca"],
                   max_bytes=m["max_body_bytes"], known_digest=known_digest, **kwargs)

    # -- one poll -----------------------------------------------------------------

    def poll_once(self) -> PollResult:
        with self._lock:
            result = self._poll()
            self.failures = self.failures + 1 if result.state == UNREACHABLE else 0
            self.last_result = result
            return result

    def _poll(self) -> PollResult:
        headers = {"Accept": "application/json", "User-Agent": f"kiosk/{__version__}"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        try:
            with self._session.get(self.url, headers=headers, stream=True, verify=self._verify,
                                   timeout=(5.0, self._timeout)) as response:
                status = response.status_code
                if status == 200:
                    body = self._read(response)
                etag = response.headers.get("ETag")
        except requests.RequestException as e:
            log_event(log, "config_poll.unreachable", level=logging.WARNING, error=type(e).__name__,
                      failures=self.failures + 1)
            return PollResult(UNREACHABLE, type(e).__name__, _short(e))
        self.last_contact = self._clock()
        if status == 304:
            return PollResult(UNCHANGED)
        if status in (204, 404):
            return PollResult(NONE)
        if status != 200:
            log_event(log, "config_poll.unreachable", level=logging.WARNING, error=f"HTTP {status}",
                      failures=self.failures + 1)
            return PollResult(UNREACHABLE, f"http_{status}", f"the server answered HTTP {status}")
        digest = hashlib.sha256(body).hexdigest()
        if digest == self._handled:
            self._etag = etag
            return PollResult(UNCHANGED)
        outcome = self._apply(body, "poll", urlsplit(self.url).hostname or "")
        self._handled, self._etag = digest, etag
        if outcome.applied:
            return PollResult(APPLIED)
        return PollResult(REFUSED, outcome.code, outcome.reason)

    def _read(self, response: requests.Response) -> bytes:
        """At most max_bytes + 1 bytes: enough for apply to see it is too large, without
        downloading the rest."""
        chunks, size = [], 0
        for chunk in response.iter_content(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max_bytes:
                break
        return b"".join(chunks)[: self._max_bytes + 1]

    # -- the thread -------------------------------------------------------------

    def next_delay(self) -> float:
        return next_delay(self.interval, self.failures, self._rng, self._jitter, self._max_factor)

    def start(self) -> None:
        self._start_thread()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop_thread(timeout)

    close = stop

    def _run(self) -> None:
        delay = self._first_delay if self._first_delay is not None else self._rng.uniform(0, min(self.interval, 60))
        while not self.stopping.wait(delay):
            try:
                self.poll_once()
            except Exception as e:                      # noqa: BLE001 - keep polling; apply never raises
                log_event(log, "config_poll.error", level=logging.ERROR, error=type(e).__name__)
                self.failures += 1
            delay = self.next_delay()

    def status(self) -> dict:
        r = self.last_result
        return {"poll_url_host": urlsplit(self.url).hostname, "last_result": None if r is None else r.state,
                "last_code": None if r is None else r.code, "failures": self.failures,
                "last_contact": None if self.last_contact is None else self.last_contact.isoformat(timespec="seconds")}


def _short(e: Exception) -> str:
    text = str(e)
    return text if len(text) <= 200 else text[:200] + "..."
