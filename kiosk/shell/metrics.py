"""Prometheus metrics for central IT's fleet view, served as GET /metrics on the management port.

Counts and states only, never personal data: no patron number, title, certificate hash or
serial is ever a value or a label. Every label value comes from a fixed list (the session's
end reasons, the card and catalogue refusal codes); anything else is counted as "other", so
a label can neither carry data nor grow without bound.

Fed from two sides, both at the shell's edge (the core knows nothing of this):
- the controller's events and effects (`observe`): sessions by end reason, sign-in failures
  by reason, loans journaled, reader / pcscd / printer state;
- the services' state, read at scrape time (callables): outbox depth, oldest pending age,
  damaged rows, last catalogue success, config version, scanner state, rollbacks.

A private CollectorRegistry: nothing else in the process (or a library) can add to it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from kiosk import __version__
from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import CardError
from kiosk.core.catalogue import Refusal

SESSION_END_REASONS = ("finished", "timeout", "cancelled", "error", "staff")
SIGNIN_FAILURE_REASONS = tuple(e.value for e in CardError) + tuple(
    r.value for r in (Refusal.PATRON_BLOCKED, Refusal.PATRON_UNKNOWN, Refusal.WRONG_PASSWORD,
                      Refusal.OFFLINE, Refusal.OTHER)) + ("catalogue_unavailable",)
PCSCD_GONE = "pcscd_gone"


def _bounded(value: object, allowed: tuple[str, ...]) -> str:
    text = getattr(value, "value", value)
    return text if isinstance(text, str) and text in allowed else "other"


class KioskMetrics(Collector):
    """The kiosk's metrics. `observe(item)` takes any controller event or effect (any thread);
    the callables are read at scrape time, each once per scrape, and may raise (what they feed
    is left out). `layer_rollbacks` gives (rollbacks, time of the last or None) from one read
    of the layer state, so the two gauges agree and a scrape reads the state once."""

    def __init__(
        self,
        *,
        kiosk_id: str = "",
        group: str = "",
        outbox_stats: Callable[[], Any] | None = None,
        config_version: Callable[[], int | None] = lambda: None,
        scanner_ok: Callable[[], bool | None] = lambda: None,
        layer_rollbacks: Callable[[], tuple[int, float | None]] = lambda: (0, None),
        release_rollback: Callable[[], float | None] = lambda: None,
        wall: Callable[[], datetime] = lambda: datetime.now().astimezone(),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kiosk_id, self.group = kiosk_id, group
        self.outbox_stats = outbox_stats
        self.config_version = config_version
        self.scanner_ok = scanner_ok
        self.layer_rollbacks = layer_rollbacks
        self.release_rollback = release_rollback
        self._wall = wall
        self._monotonic = monotonic
        self._started = monotonic()
        self._lock = threading.Lock()
        self.reader_ok: bool | None = None
        self.pcscd_ok: bool | None = None
        self.printer_ok: bool | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.sessions = Counter("kiosk_sessions", "Patron sessions ended, by how they ended",
                                ["reason"], registry=self.registry)
        self.signin_failures = Counter("kiosk_signin_failures", "Sign-ins refused, by reason (card, PIN, "
                                       "certificate or catalogue)", ["reason"], registry=self.registry)
        self.loans = Counter("kiosk_loans_journaled", "Loans written to the journal", registry=self.registry)
        for reason in SESSION_END_REASONS:                 # every series exists from the start (rate() works)
            self.sessions.labels(reason)
        self.registry.register(self)

    # -- from the controller --------------------------------------------------------------

    def observe(self, item: object) -> None:
        if isinstance(item, fx.EndSession):
            self.sessions.labels(_bounded(item.reason, SESSION_END_REASONS)).inc()
        elif isinstance(item, fx.Checkout):
            self.loans.inc()
        elif isinstance(item, ev.AuthDone) and item.outcome.error is not None:
            self._signin_failed(item.outcome.error)
        elif isinstance(item, ev.CardProbed) and item.probe.error is not None:
            self._signin_failed(item.probe.error)
        elif isinstance(item, ev.PatronResolved) and item.patron_id is None:
            self._signin_failed("catalogue_unavailable" if item.unavailable else CardError.NOT_REGISTERED)
        elif isinstance(item, ev.PatronLoaded) and item.refusal is not None:
            self._signin_failed(item.refusal)
        elif isinstance(item, ev.ReaderChanged):
            with self._lock:
                self.reader_ok = item.available
                self.pcscd_ok = item.available or item.detail != PCSCD_GONE
        elif isinstance(item, ev.ReceiptDone):
            self.printer_ok = item.ok

    def _signin_failed(self, reason: object) -> None:
        self.signin_failures.labels(_bounded(reason, SIGNIN_FAILURE_REASONS)).inc()

    # -- at scrape time ---------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("kiosk_build", "The kiosk's app version, its id and group (kiosk.id, kiosk.group)")
        info.add_metric([], {"version": __version__, "kiosk": self.kiosk_id, "group": self.group})
        yield info
        yield GaugeMetricFamily("kiosk_uptime_seconds", "Seconds since the app started",
                                value=self._monotonic() - self._started)
        layer = _read(self.layer_rollbacks)
        rollbacks, last_rollback = layer if layer is not None else (None, None)
        for name, doc, value in (
            ("kiosk_config_version", "Version of the signed configuration layer in force (0: site file only)",
             _read(lambda: self.config_version() or 0)),
            ("kiosk_rollbacks", "Signed configuration layers rolled back since the app started", rollbacks),
            ("kiosk_last_rollback_timestamp_seconds", "When the last rollback happened (0: never)",
             None if layer is None else last_rollback or 0),
            ("kiosk_release_last_rollback_timestamp_seconds",
             "When the release guard last rolled a software release back (0: never)",
             _read(lambda: self.release_rollback() or 0)),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))
        with self._lock:
            states = {"reader": self.reader_ok, "pcscd": self.pcscd_ok, "printer": self.printer_ok,
                      "scanner": _read(self.scanner_ok)}
        up = GaugeMetricFamily("kiosk_device_up", "1 when the device works, 0 when it does not; "
                               "absent while unknown or not fitted", labels=["device"])
        for device, ok in states.items():
            if ok is not None:
                up.add_metric([device], 1.0 if ok else 0.0)
        yield up
        yield from self._outbox()

    def _outbox(self) -> Iterator[Any]:
        stats = _read(self.outbox_stats) if self.outbox_stats is not None else None
        if stats is None:
            return
        now = self._wall()
        yield GaugeMetricFamily("kiosk_outbox_pending", "Loans not yet acknowledged by the catalogue",
                                value=stats.pending)
        age = 0.0 if stats.oldest_created is None else max(0.0, (now - stats.oldest_created).total_seconds())
        yield GaugeMetricFamily("kiosk_outbox_oldest_age_seconds", "Age of the oldest pending loan (0: none)",
                                value=age)
        yield GaugeMetricFamily("kiosk_outbox_damaged", "Journal rows that could not be opened (staff review)",
                                value=stats.damaged)
        yield GaugeMetricFamily("kiosk_outbox_conflicts", "Offline loans the catalogue refused (staff review)",
                                value=stats.conflicts)
        if stats.last_success is not None:
            yield GaugeMetricFamily("kiosk_catalogue_last_success_timestamp_seconds",
                                    "When the catalogue last acknowledged a queued loan",
                                    value=stats.last_success.timestamp())
            yield GaugeMetricFamily("kiosk_catalogue_seconds_since_success",
                                    "Seconds since the catalogue last acknowledged a queued loan",
                                    value=max(0.0, (now - stats.last_success).total_seconds()))

    def render(self) -> tuple[str, bytes]:
        """(content type, body) for GET /metrics."""
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)


def _read(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:                               # noqa: BLE001 - one broken source leaves one metric out
        return None
