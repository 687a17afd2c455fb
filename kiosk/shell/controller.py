"""The imperative shell around the session core.

It feeds events into `Session` on the UI thread and carries out the effects that
come back: screens through the View, lights and sounds through their backends,
card and catalogue work on worker threads (so the screen never waits on a card
or the network), loans through the durable outbox. Results come back as events.
Nothing here imports Kivy: the UI thread is whatever `Loop` the caller supplies.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Protocol

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import AuthOutcome, CardError, CardKind, CardProbe
from kiosk.core.catalogue import Catalogue, CatalogueUnavailable, LinkRefused, LoanResult, Refusal
from kiosk.core.interfaces import CardEvent, CardEventKind, CardReader, Leds, Loop, Sounds, View
from kiosk.core.patron_resolver import PatronResolver
from kiosk.core.session import Session
from kiosk.logs import log_event

if TYPE_CHECKING:
    from kiosk.core.account import AccountView
    from kiosk.core.returns import ReturnDesk
    from kiosk.core.staff import StaffMode

log = logging.getLogger("kiosk.controller")

TICK_SECONDS = 0.25


class CardAuth(Protocol):
    """kiosk.card.service.CardService as the controller uses it (blocking calls)."""

    def probe(self) -> CardProbe: ...

    def authenticate(self, pin: bytearray) -> AuthOutcome: ...

    def release(self) -> None: ...

    # counter mode (staff registration) only
    def set_mode(self, mode: str) -> None: ...

    def authenticate_for_registration(self, pin: bytearray, birth_date: bool): ...

    def read_birth_date(self, pin: bytearray): ...


class LoanJournal(Protocol):
    """kiosk.store.outbox.Outbox + its worker as the controller uses them."""

    def append(self, loan) -> None: ...

    def withdraw(self, txn_id: str) -> None: ...


class Receipts(Protocol):
    def print_receipt(self, lines: tuple[tuple[str, str], ...], *, lang: str, returns: bool = False) -> bool: ...


class StaffBackend(Protocol):
    """What staff-menu actions need from the rest of the kiosk (built by the launcher)."""

    def audit(self, actor: str, action: str, **fields) -> None: ...

    def load(self, kind: str) -> object:
        """Data for a staff screen: "status" (dict) or "conflicts" (list of dicts)."""

    def resolve_conflict(self, conflict_id: str) -> None: ...

    def remember(self, setting: str, value: object) -> None: ...

    def lock_signin(self, seconds: float) -> None: ...

    def exit(self, how: str) -> None:
        """Leave the app: "restart" (systemd starts it again) or "shutdown" (power off)."""


class _NoLeds:
    def show(self, pattern: str) -> None:
        pass

    def close(self) -> None:
        pass


class _NoSounds:
    def play(self, cue: str) -> None:
        pass


def _zero(buf: bytearray | None) -> None:
    if buf is not None:
        for i in range(len(buf)):
            buf[i] = 0


class Controller:
    """Made with the session and the UI alone, so the first screen can be drawn before
    the reader, the catalogue and the outbox exist; `connect` hands those over."""

    def __init__(self, session: Session, view: View, loop: Loop, clock: Callable[[], float]) -> None:
        self.session = session
        self.view = view
        self.loop = loop
        self.clock = clock
        self.card_reader: CardReader | None = None
        self.card_auth: CardAuth | None = None
        self.catalogue: Catalogue | None = None
        self.resolver: PatronResolver | None = None
        self.journal: LoanJournal | None = None
        self.leds: Leds = _NoLeds()
        self.sounds: Sounds = _NoSounds()
        self.receipts: Receipts | None = None
        self.wake_outbox: Callable[[], None] = lambda: None
        self.staff: StaffMode | None = None
        self.returns: ReturnDesk | None = None     # the return desk (kiosk/core/returns.py), when configured
        self.account: AccountView | None = None    # My account (kiosk/core/account.py), over the scanning screen
        self.staff_backend: "StaffBackend | None" = None
        self.card_present = False
        self._at_idle: list[Callable[[], None]] = []
        # One thread for the card (APDUs must not interleave), one for the catalogue.
        self._card_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="card")
        self._net_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalogue")
        self._started = False
        self._stopped = threading.Event()
        self._screen = None
        self._lights: str | None = None
        # Until connect(), events wait (the launcher draws the first screen first).
        self._connected = False
        self._held: list[ev.Event] = []
        # Watchers of every event and effect (the /metrics counters): they count, never steer.
        self.observers: list[Callable[[object], None]] = []

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._run(self.session.start(self.clock()))
        self.loop.call_every(TICK_SECONDS, lambda: self.dispatch(ev.Tick()))
        if self._connected:
            self._start_reader()
        log_event(log, "kiosk.started")

    def connect(
        self,
        card_reader: CardReader | None,
        card_auth: CardAuth | None,
        catalogue: Catalogue,
        resolver: PatronResolver,
        journal: LoanJournal,
        leds: Leds | None = None,
        sounds: Sounds | None = None,
        receipts: Receipts | None = None,
        wake_outbox: Callable[[], None] = lambda: None,
        staff: StaffMode | None = None,
        staff_backend: "StaffBackend | None" = None,
    ) -> None:
        """Hand over the backends (UI thread). The reader starts now and the events
        that waited are handled in order."""
        self.card_reader, self.card_auth, self.catalogue = card_reader, card_auth, catalogue
        self.resolver, self.journal, self.receipts = resolver, journal, receipts
        self.leds = leds or _NoLeds()
        self.sounds = sounds or _NoSounds()
        self.wake_outbox = wake_outbox
        self.staff, self.staff_backend = staff, staff_backend
        self._connected = True
        if not self._started or self._stopped.is_set():
            return
        if self._lights is not None:
            self.leds.show(self._lights)            # what the first screen asked for
        self._start_reader()
        held, self._held = self._held, []
        for event in held:
            self.dispatch(event)

    def _start_reader(self) -> None:
        if self.card_reader is not None:
            self.card_reader.start(self._on_card_event)
        else:
            self.dispatch(ev.ReaderChanged(False, "no_reader"))

    def stop(self) -> None:
        """Idempotent: Kivy may call on_stop twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.card_reader is not None:
            self.card_reader.stop()
        self._card_pool.shutdown(wait=False, cancel_futures=True)
        self._net_pool.shutdown(wait=False, cancel_futures=True)
        self.leds.close()
        log_event(log, "kiosk.stopped")

    # -- events in ------------------------------------------------------------

    def post(self, event: ev.Event) -> None:
        """Hand an event to the session from any thread."""
        if not self._stopped.is_set():
            self.loop.call_soon(lambda: self.dispatch(event))

    # Events staff mode takes while it is open; the patron session never sees them then.
    _STAFF_EVENTS = (ev.Press, ev.Barcode, ev.CardInserted, ev.CardRemoved, ev.CardProbed, ev.StaffData,
                     ev.RegistrationRead, ev.BirthDateRead, ev.LinkFound, ev.LinkDone)

    def _admit(self, event: ev.Event) -> bool:
        """Whether `event` is handled now: never after stop; held until the backends are
        connected (ticks excepted); a card's coming and going is noted either way it goes."""
        if self._stopped.is_set():
            return False
        if not self._connected and not isinstance(event, ev.Tick):
            self._held.append(event)
            return False
        if isinstance(event, ev.CardInserted | ev.CardRemoved):
            self.card_present = isinstance(event, ev.CardInserted)
        return True

    def dispatch(self, event: ev.Event) -> None:
        """Run one event through staff mode or the session. UI thread only."""
        if not self._admit(event):
            return
        now = self.clock()
        self._observe(event)
        staff = self.staff
        staff_open = staff is not None and staff.active
        if self._to_return_desk(event, now, staff_open) or self._to_account(event, now, staff_open):
            if isinstance(event, ev.Tick):
                self._run_at_idle()         # a station's desk takes every tick: idle work still runs
            return
        if staff is None:
            self._run(self.session.handle(event, now))
            if isinstance(event, ev.Tick):
                self._run_at_idle()
            return
        if isinstance(event, ev.StaffOpen):
            self._run(staff.open(now, self.session.out_of_service, self.session.offline_lending, event.badge))
            return
        if (not staff.active and isinstance(event, ev.Barcode) and staff.settings.is_badge(event.code)
                and not self.session.in_session):
            self._run(staff.open(now, self.session.out_of_service, self.session.offline_lending, event.code))
            return
        if staff.active and isinstance(event, self._STAFF_EVENTS):
            self._run(staff.handle(event, now))
            return
        if isinstance(event, ev.Tick):
            self._run_at_idle()
        if staff.active and isinstance(event, ev.Tick):
            self._run(staff.handle(event, now))
            # The patron session's clock runs on (its timeouts still end a session), unseen.
            self._run([e for e in self.session.handle(event, now) if not isinstance(e, fx.Show | fx.Lights)])
            return
        self._run(self.session.handle(event, now))

    def set_catalogue_away(self, away: bool) -> None:
        """Whether the outbox worker finds the catalogue away (the return desk queues returns
        taken meanwhile, marked for no-block). UI thread."""
        if self.returns is not None:
            self._run(self.returns.set_offline(away, self.clock()))

    def open_return_desk(self) -> None:
        """Open the return desk now (a return station's first screen). UI thread."""
        if self.returns is not None:
            self._run(self.returns.open(self.clock()))

    def _to_return_desk(self, event: ev.Event, now: float, staff_open: bool) -> bool:
        """The return desk takes the patron's events while it is open (always, on a return
        station); "return books" at idle opens it. True when the event was the desk's."""
        desk = self.returns
        if desk is None:
            return False
        if staff_open or isinstance(event, ev.StaffOpen):
            if desk.active and not desk.settings.station:
                desk.close(now)                             # staff take the screen: the desk is wiped
            return False
        if self.session.out_of_service:
            # Out of service the session alone answers (no return is taken); a station's desk
            # comes back, empty, once staff put the kiosk back in service.
            if desk.settings.station and isinstance(event, ev.SetOutOfService):
                self._run(self.session.handle(event, now))
                if not self.session.out_of_service:
                    self._run(desk.open(now))
                return True
            return False
        if not desk.active:
            if (isinstance(event, ev.Press) and event.action == "return_books"
                    and self.session.screen == "idle" and not self.session.out_of_service):
                self._run(desk.open(now))
                return True
            return False
        if isinstance(event, ev.Barcode) and self.staff is not None and self.staff.settings.is_badge(event.code):
            return False                                    # a staff badge still opens staff mode
        if desk.settings.station and isinstance(event, ev.CardInserted | ev.CardRemoved | ev.CardProbed):
            return True                                     # no sign-in at a return station
        if not isinstance(event, ev.Press | ev.Barcode | ev.ItemDone | ev.JournalFailed | ev.ReceiptDone | ev.Tick):
            if isinstance(event, ev.CardInserted):
                desk.close(now)                             # a patron signs in: the desk gives way, wiped
                return False
            # The session stays at idle under the desk, unseen (reader news, staff switches); out
            # of service it draws its own screen, and the desk comes back when it is over.
            effects = self.session.handle(event, now)
            if self.session.out_of_service:
                desk.close(now)                             # wiped; a station's desk waits, empty
                self._run(effects)
            else:
                self._run([e for e in effects if not isinstance(e, fx.Show | fx.Lights)])
            return True
        if isinstance(event, ev.ItemDone) and event.result.kind != "checkin":
            return False
        self._run(desk.handle(event, now))
        if not desk.active:
            self._run(self.session.refresh(now))            # back to the idle screen
        if isinstance(event, ev.Tick):
            self._run([e for e in self.session.handle(event, now) if not isinstance(e, fx.Show | fx.Lights)])
        return True

    _ACCOUNT_EVENTS = (ev.AccountLoaded, ev.RenewDone, ev.RenewAllDone)

    def _to_account(self, event: ev.Event, now: float, staff_open: bool) -> bool:
        """My account sits over the scanning screen: "my_account" there opens it, "close" goes
        back. While it is open the session's clock runs on (its timeout ends both, and the
        account is wiped with the session) and touches count as activity."""
        view = self.account
        if view is None:
            return False
        if staff_open or isinstance(event, ev.StaffOpen):
            if view.active:
                view.close()                                # staff take the screen: My account is wiped
            return False
        session = self.session
        if not view.active:
            if (isinstance(event, ev.Press) and event.action == "my_account" and session.screen == "scanning"
                    and session.p.patron_id):
                self._run(view.open(session.p.patron_id, session.language))
                return True
            return isinstance(event, self._ACCOUNT_EVENTS)        # late answers after close: dropped
        if isinstance(event, ev.Press) and event.action == "close":
            view.close()
            self._run(session.refresh(now))
            return True
        if isinstance(event, (ev.Press, *self._ACCOUNT_EVENTS)):
            if isinstance(event, ev.Press):
                self._quietly(ev.Press("more_time"), now)        # a touch here is activity too
            self._run(view.handle(event, now))
            return True
        if isinstance(event, ev.Barcode):                         # a book scanned: back to borrowing
            view.close()
            self._run(session.refresh(now))
            return False
        self._quietly(event, now)
        return True

    def _quietly(self, event: ev.Event, now: float) -> None:
        """The session's answer while My account covers the screen: drawn only if the
        session left the scanning screen (a timeout, a reset), which also wipes the account."""
        effects = self.session.handle(event, now)
        if self.session.screen != "scanning" and self.account is not None:
            self.account.close()
            self._run(effects)
            return
        self._run([e for e in effects if not isinstance(e, fx.Show | fx.Lights)])

    def when_idle(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the UI thread at the next moment no patron or staff member is using
        the kiosk (new configuration never lands in the middle of a session). Any thread."""
        self.loop.call_soon(lambda: (self._at_idle.append(fn), self._run_at_idle()))

    def _idle(self) -> bool:
        """Nobody is using the kiosk: no patron session (out of service counts as idle), no one
        at the return desk, no staff."""
        if self.session.in_session and self.session.screen != "out_of_service":
            return False
        if self.returns is not None and self.returns.in_use:
            return False
        return self.staff is None or not self.staff.active

    def _run_at_idle(self) -> None:
        if not self._at_idle or not self._idle():
            return
        pending, self._at_idle = self._at_idle, []
        for fn in pending:
            try:
                fn()
            except Exception as exc:
                log_event(log, "idle_task.failed", logging.ERROR, error=type(exc).__name__)

    def apply_settings(self, settings) -> None:
        """Live configuration: the session's rules change; the screen is redrawn."""
        self.session.settings = settings
        if self.returns is not None and self.returns.active:
            self._run(self.returns.open(self.clock()))      # a station's desk stays its screen
        else:
            self._run(self.session.refresh(self.clock()))
        log_event(log, "config.applied_live")

    def on_loan_result(self, result: LoanResult) -> None:
        """Called by the outbox worker's thread when the catalogue answered a loan."""
        self.post(ev.ItemDone(result))

    def _on_card_event(self, e: CardEvent) -> None:
        mapping = {
            CardEventKind.INSERTED: ev.CardInserted(),
            CardEventKind.REMOVED: ev.CardRemoved(),
            CardEventKind.READER_AVAILABLE: ev.ReaderChanged(True),
            CardEventKind.READER_UNAVAILABLE: ev.ReaderChanged(False, e.detail),
        }
        log_event(log, "card." + e.kind.value, detail=e.detail)
        self.post(mapping[e.kind])

    # -- effects out ------------------------------------------------------------

    def _observe(self, item: object) -> None:
        for observer in self.observers:
            try:
                observer(item)
            except Exception as exc:  # a watcher must never take the kiosk down
                log_event(log, "observer.failed", logging.ERROR, error=type(exc).__name__)

    def _run(self, effects: list[fx.Effect]) -> None:
        for i, effect in enumerate(effects):
            self._observe(effect)
            handler = getattr(self, "_do_" + type(effect).__name__)
            try:
                handler(effect)
            except Exception as exc:  # one failing effect must never take the kiosk down
                if isinstance(effect, fx.Checkout | fx.CheckIn):
                    # Not durable, so not lent (or returned): what the machine meant to show next
                    # (the row as done, green light, success sound) is dropped and the item refused.
                    txn = effect.loan.txn_id if isinstance(effect, fx.Checkout) else effect.request.txn_id
                    self._journal_failed(txn, exc)
                    self._run([x for x in effects[i + 1:] if not isinstance(x, fx.Show | fx.Lights | fx.Cue)])
                    return
                log.exception("effect.failed", extra={"kiosk_fields": {"effect": type(effect).__name__}})

    def _journal_failed(self, txn_id: str, exc: Exception) -> None:
        from kiosk.store.outbox import OutboxFull

        log_event(log, "loan.journal_failed", logging.ERROR, txn=txn_id, error=type(exc).__name__)
        desk = self.returns
        machine = desk.handle if desk is not None and desk.active else self.session.handle
        self._run(machine(ev.JournalFailed(txn_id), self.clock()))
        if not isinstance(exc, OutboxFull):
            # The store cannot write: no further loan could be recorded either.
            if self.staff_backend is not None:
                note = getattr(self.staff_backend, "store_failed", None)
                if note is not None:
                    note(exc)
            self.post(ev.SetOutOfService(True))

    def _do_Show(self, e: fx.Show) -> None:
        if e.screen != self._screen:
            log_event(log, "screen", screen=e.screen)
            self._screen = e.screen
        self.view.show(e.screen, e.model)

    def _do_Lights(self, e: fx.Lights) -> None:
        self._lights = e.pattern
        self.leds.show(e.pattern)
        self.view.lights(e.pattern)

    def _do_Cue(self, e: fx.Cue) -> None:
        self.sounds.play(e.sound)
        self.view.cue(e.sound)

    def _do_ProbeCard(self, e: fx.ProbeCard) -> None:
        def work() -> None:
            if self.card_auth is None:
                probe = CardProbe(kind=CardKind.MUTE, error=CardError.READER_GONE)
            else:
                probe = self.card_auth.probe()
            log_event(log, "card.probed", kind=getattr(probe.kind, "value", None),
                      error=probe.error.value if probe.error else None)
            self.post(ev.CardProbed(probe, serial=e.serial))

        self._submit(self._card_pool, work, lambda: ev.CardProbed(
            CardProbe(kind=CardKind.MUTE, error=CardError.MUTE_CARD), serial=e.serial))

    def _do_Authenticate(self, e: fx.Authenticate) -> None:
        pin = e.pin

        def work() -> None:
            try:
                outcome = self.card_auth.authenticate(pin) if self.card_auth else AuthOutcome(
                    error=CardError.READER_GONE)
            finally:
                _zero(pin)
            log_event(log, "card.authenticated" if outcome.ok else "card.refused",
                      error=outcome.error.value if outcome.error else None,
                      tries_left=outcome.tries_left)
            self.post(ev.AuthDone(outcome, serial=e.serial))

        self._submit(self._card_pool, work, lambda: ev.AuthDone(
            AuthOutcome(error=CardError.MUTE_CARD), serial=e.serial), cleanup=lambda: _zero(pin))

    def _do_ResolvePatron(self, e: fx.ResolvePatron) -> None:
        def work() -> None:
            self.post(self.resolver.resolve(e.identity, serial=e.serial))

        self._submit(self._net_pool, work, lambda: ev.PatronResolved(None, unavailable=True, serial=e.serial))

    def _do_LoadPatron(self, e: fx.LoadPatron) -> None:
        password = e.password

        def work() -> None:
            try:
                secret = password.decode("ascii") if password is not None else None
                status = self.catalogue.patron_status(e.patron_id, secret)
                del secret
                self.post(ev.PatronLoaded(status, serial=e.serial))
            except CatalogueUnavailable:
                log_event(log, "catalogue.unavailable", during="patron_status")
                self.post(ev.PatronLoaded(None, Refusal.OFFLINE, serial=e.serial))
            finally:
                _zero(password)

        self._submit(self._net_pool, work, lambda: ev.PatronLoaded(None, Refusal.OFFLINE, serial=e.serial),
                     cleanup=lambda: _zero(password))

    def _do_Checkout(self, e: fx.Checkout) -> None:
        # Durable before anything else happens: the screen may show the loan next.
        self.journal.append(e.loan)
        log_event(log, "loan.journaled", txn=e.loan.txn_id, offline=e.loan.offline)
        self.wake_outbox()

    def _do_LoadAccount(self, e: fx.LoadAccount) -> None:
        def work() -> None:
            try:
                account = self.catalogue.patron_account(e.patron_id)
            except CatalogueUnavailable:
                log_event(log, "catalogue.unavailable", during="patron_account")
                account = None
            self.post(ev.AccountLoaded(account, serial=e.serial))        # never logged: reading records

        self._submit(self._net_pool, work, lambda: ev.AccountLoaded(None, serial=e.serial))

    def _do_Renew(self, e: fx.Renew) -> None:
        def work() -> None:
            try:
                result = self.catalogue.renew(e.patron_id, e.item_id, e.key)
            except CatalogueUnavailable:
                log_event(log, "catalogue.unavailable", during="renew")
                result = None
            log_event(log, "renewal.answered", ok=None if result is None else result.ok,
                      refusal=result.refusal.value if result is not None and result.refusal else None)
            self.post(ev.RenewDone(e.item_id, e.key, result))

        self._submit(self._net_pool, work, lambda: ev.RenewDone(e.item_id, e.key, None))

    def _do_RenewAll(self, e: fx.RenewAll) -> None:
        def work() -> None:
            try:
                result = self.catalogue.renew_all(e.patron_id, e.key)
            except CatalogueUnavailable:
                log_event(log, "catalogue.unavailable", during="renew_all")
                result = None
            self.post(ev.RenewAllDone(e.key, result))

        self._submit(self._net_pool, work, lambda: ev.RenewAllDone(e.key, None))

    def _do_CheckIn(self, e: fx.CheckIn) -> None:
        # Durable before anything else happens: the screen may show the return as received next.
        self.journal.append(e.request)
        log_event(log, "return.journaled", txn=e.request.txn_id, offline=e.request.offline)
        self.wake_outbox()

    def _do_Withdraw(self, e: fx.Withdraw) -> None:
        self.journal.withdraw(e.txn_id)
        log_event(log, "loan.withdrawn", txn=e.txn_id)

    def _do_PrintReceipt(self, e: fx.PrintReceipt) -> None:
        receipts = self.receipts
        if receipts is None:
            self.post(ev.ReceiptDone(False))
            return

        def work() -> None:
            if e.returns:
                ok = bool(receipts.print_receipt(e.lines, lang=e.lang, returns=True))
            else:
                ok = bool(receipts.print_receipt(e.lines, lang=e.lang))
            log_event(log, "receipt.printed" if ok else "receipt.failed", lines=len(e.lines))
            self.post(ev.ReceiptDone(ok))

        self._submit(self._net_pool, work, lambda: ev.ReceiptDone(False))

    def _do_EndSession(self, e: fx.EndSession) -> None:
        log_event(log, "session.ended", reason=e.reason)
        if self.card_auth is not None:
            self._submit(self._card_pool, self.card_auth.release, None)
        if e.patron_id is not None:
            pid = e.patron_id

            def end() -> None:
                try:
                    self.catalogue.end_session(pid)
                except CatalogueUnavailable:
                    pass

            self._submit(self._net_pool, end, None)

    # -- staff mode ---------------------------------------------------------------

    def _do_Audit(self, e: fx.Audit) -> None:
        if self.staff_backend is not None:
            self.staff_backend.audit(e.actor or "staff", e.action, **e.fields)

    def _do_StaffCommand(self, e: fx.StaffCommand) -> None:
        handler = self._STAFF_COMMANDS.get(e.name)
        if handler is None:
            log_event(log, "staff.unknown_command", level=logging.WARNING, command=e.name)
            return
        handler(self, e.value)

    def _without_drawing(self, event: ev.Event) -> None:
        """The session's answer to a staff action, less what it would draw: staff's screen stays."""
        self._run([x for x in self.session.handle(event, self.clock()) if not isinstance(x, fx.Show | fx.Lights)])

    def _staff_end_patron_session(self, _value: Any) -> None:
        self._without_drawing(ev.Reset("staff"))

    def _staff_leave(self, _value: Any) -> None:
        now = self.clock()
        self._run(self.session.handle(ev.CardPresence(self.card_present), now))
        self._run(self.session.refresh(now))
        if self.returns is not None and self.returns.settings.station and not self.session.out_of_service:
            self._run(self.returns.open(now))               # a return station's screen again

    def _staff_reset(self, _value: Any) -> None:
        self._without_drawing(ev.Reset("staff"))
        self._reinitialise()

    def _staff_out_of_service(self, value: Any) -> None:
        self._without_drawing(ev.SetOutOfService(bool(value)))
        if self.staff_backend is not None:
            self.staff_backend.remember("out_of_service", bool(value))

    def _staff_offline_lending(self, value: Any) -> None:
        self.session.handle(ev.SetOfflineLending(bool(value)), self.clock())
        if self.staff_backend is not None:
            self.staff_backend.remember("offline_lending", bool(value))

    def _staff_sync_now(self, _value: Any) -> None:
        self.wake_outbox()

    def _staff_load(self, value: Any) -> None:
        backend = self.staff_backend
        if backend is not None:
            kind = str(value)
            self._submit(self._net_pool, lambda: self.post(ev.StaffData(kind, backend.load(kind))), None)

    def _staff_patron_name(self, value: Any) -> None:
        """The catalogue's name for a library card being linked, for the staff confirm
        screen only (the name is never logged)."""
        catalogue, patron_id = self.catalogue, str(value)
        if catalogue is None:
            return

        def work() -> None:
            try:
                name = catalogue.patron_status(patron_id).name
            except CatalogueUnavailable:
                name = None
            self.post(ev.StaffData("patron_name", {"patron_id": patron_id, "name": name}))

        self._submit(self._net_pool, work, None)

    def _staff_resolve_conflict(self, value: Any) -> None:
        if self.staff_backend is not None:
            self.staff_backend.resolve_conflict(str(value))

    def _staff_self_test(self, value: Any) -> None:
        self._self_test(str(value))

    def _staff_lock_signin(self, value: Any) -> None:
        if self.staff_backend is not None:
            self.staff_backend.lock_signin(float(value))

    def _staff_card_mode(self, value: Any) -> None:
        card = self.card_auth
        if card is None:
            return
        mode = str(value)
        self._submit(self._card_pool, lambda: card.set_mode(mode), None)
        if mode == "counter" and self.card_present:
            self.post(ev.CardInserted())    # registration starts with the card already in place

    def _staff_release_card(self, _value: Any) -> None:
        if self.card_auth is not None:
            self._submit(self._card_pool, self.card_auth.release, None)

    def _staff_exit(self, how: str) -> None:
        if self.staff_backend is not None:
            log_event(log, "kiosk." + how)
            self.staff_backend.exit(how)

    # The staff core's commands (kiosk/core/staff.py, fx.StaffCommand.name) and what runs each.
    _STAFF_COMMANDS: dict[str, Callable[[Controller, Any], None]] = {
        "end_patron_session": _staff_end_patron_session,
        "leave": _staff_leave,
        "reset": _staff_reset,
        "out_of_service": _staff_out_of_service,
        "offline_lending": _staff_offline_lending,
        "sync_now": _staff_sync_now,
        "load": _staff_load,
        "patron_name": _staff_patron_name,
        "resolve_conflict": _staff_resolve_conflict,
        "self_test": _staff_self_test,
        "lock_signin": _staff_lock_signin,
        "card_mode": _staff_card_mode,
        "release_card": _staff_release_card,
        "restart": lambda self, _value: self._staff_exit("restart"),
        "shutdown": lambda self, _value: self._staff_exit("shutdown"),
    }

    def _reinitialise(self) -> None:
        """Staff reset: reader, card layer and catalogue connection start afresh, no reboot."""
        log_event(log, "kiosk.reset")
        if self.card_reader is not None:
            reader = self.card_reader
            self.card_present = False

            def restart_reader() -> None:
                reader.stop()
                reader.start(self._on_card_event)

            self._submit(self._card_pool, restart_reader, None)
        if self.card_auth is not None:
            self._submit(self._card_pool, self.card_auth.release, None)
        if self.catalogue is not None:
            self._submit(self._net_pool, self.catalogue.reset, None)
        self.wake_outbox()

    def _self_test(self, what: str) -> None:
        """Walk every light pattern or sound cue once, paced on the card worker's thread."""
        patterns = ("ready", "busy", "success", "refused", "error", "card_left", "out_of_service")
        cues = ("accepted", "refused", "card_reminder", "attention")

        def run() -> None:
            import time as _time

            for item in (patterns if what == "lights" else cues):
                if what == "lights":
                    self.leds.show(item)
                    self.loop.call_soon(lambda item=item: self.view.lights(item))
                else:
                    self.sounds.play(item)
                    self.loop.call_soon(lambda item=item: self.view.cue(item))
                _time.sleep(0.6)
            self.leds.show("ready")
            self.post(ev.StaffData("selftest", {what: "done"}))

        self._submit(self._net_pool, run, None)

    def _do_AuthenticateForRegistration(self, e: fx.AuthenticateForRegistration) -> None:
        pin = e.pin

        def work() -> None:
            try:
                outcome, birth, second = self.card_auth.authenticate_for_registration(pin, e.birth_date)
            finally:
                _zero(pin)
            log_event(log, "registration.authenticated" if outcome.ok else "registration.refused",
                      error=outcome.error.value if outcome.error else None, kenhojo_read=birth is not None)
            self.post(ev.RegistrationRead(outcome, birth, second, serial=e.serial,
                                          first_pin_tried=bool(getattr(self.card_auth, "same_pin_tried", False))))

        self._submit(self._card_pool, work, lambda: ev.RegistrationRead(
            AuthOutcome(error=CardError.MUTE_CARD), serial=e.serial), cleanup=lambda: _zero(pin))

    def _do_ReadBirthDate(self, e: fx.ReadBirthDate) -> None:
        pin = e.pin

        def work() -> None:
            try:
                birth, tries = self.card_auth.read_birth_date(pin)
            finally:
                _zero(pin)
            log_event(log, "registration.second_pin", ok=birth is not None, tries_left=tries)
            self.post(ev.BirthDateRead(birth, tries, serial=e.serial))

        self._submit(self._card_pool, work, lambda: ev.BirthDateRead(None, None, serial=e.serial),
                     cleanup=lambda: _zero(pin))

    def _do_LookupLink(self, e: fx.LookupLink) -> None:
        def work() -> None:
            try:
                found = self.catalogue.resolve_identity(e.identity.cert_hash)
            except CatalogueUnavailable:
                found = None
            self.post(ev.LinkFound(found, serial=e.serial))

        self._submit(self._net_pool, work, None)

    def _do_LinkCard(self, e: fx.LinkCard) -> None:
        def work() -> None:
            try:
                self.catalogue.link_identity(e.identity.cert_hash, e.patron_id, e.birth_date)
            except LinkRefused as refused:
                self.post(ev.LinkDone(refused.refusal.value, serial=e.serial))
                return
            except CatalogueUnavailable:
                self.post(ev.LinkDone("offline", serial=e.serial))
                return
            if self.resolver.cache is not None:
                self.resolver.cache.put(e.identity.cert_hash, e.patron_id)
            self.post(ev.LinkDone(None, serial=e.serial))

        self._submit(self._net_pool, work, lambda: ev.LinkDone("offline", serial=e.serial))

    def _do_UnlinkCard(self, e: fx.UnlinkCard) -> None:
        def work() -> None:
            try:
                self.catalogue.unlink_identity(e.identity.cert_hash)
            except CatalogueUnavailable:
                self.post(ev.LinkDone("offline", unlinked=True, serial=e.serial))
                return
            if self.resolver.cache is not None:
                self.resolver.cache.forget(e.identity.cert_hash)
            self.post(ev.LinkDone(None, unlinked=True, serial=e.serial))

        self._submit(self._net_pool, work, lambda: ev.LinkDone("offline", unlinked=True, serial=e.serial))

    def _submit(self, pool: ThreadPoolExecutor, work: Callable[[], None],
                on_crash: Callable[[], ev.Event] | None, cleanup: Callable[[], None] | None = None) -> None:
        """Run `work` on a worker; if it crashes, log the type only and answer with `on_crash`."""

        def guarded() -> None:
            try:
                work()
            except Exception as exc:
                log_event(log, "worker.failed", logging.ERROR, error=type(exc).__name__)
                if on_crash is not None:
                    self.post(on_crash())
            finally:
                if cleanup is not None:
                    cleanup()

        try:
            pool.submit(guarded)
        except RuntimeError:        # shutting down
            if cleanup is not None:
                cleanup()
