"""Staff mode as a pure state machine: sign-in, the staff menu, counter registration.

Like kiosk/core/session.py it takes events and returns effects, with an injected clock and
no I/O. The controller routes events here while staff mode is open. Staff sign in
with a badge and/or a PIN checked against scrypt hashes from config; too many
failures lock sign-in for a while; staff mode closes by itself when left idle.

Counter registration links a patron's My Number Card to their library card. Only
the card holder's PIN opens the card (no proxy registration); the individual number
is never read. Where the library's linking needs the birth date, it comes from the
券面事項入力補助AP's basic-information EF in the card layer, which keeps the date
only (name, address and sex are dropped there). Its PIN may equal the user-
authentication PIN: the same PIN is tried only while at least two tries remain on
it, otherwise the patron is asked (kiosk/card_service.py does the VERIFYs).

Screens (`Show.model` keys; every model also has `countdown` and `notice`):
- staff_signin: badge (a badge was scanned), digits, locked_for (seconds, or None)
- staff_menu: staff_id, out_of_service, offline_lending, registration
- staff_status: status (dict from the controller)
- staff_review: conflicts (list of dicts from the controller)
- staff_selftest: results (lights/sound -> "running"/"done"; scanner/reader -> a dict with
  "result": scanned (n), reading, card (kind, tries) or error (code), for the screen's words)
- staff_confirm: action ("restart" or "shutdown")
- staff_counter (counter terminals, kiosk.mode = "counter"): staff_id, last (the last
  identification's outcome: "identified", an error code, or None)
- counter_identify: see kiosk/core/counter.py
- staff_register: step (insert, pin, last_try, authenticating, pin2, last_try2, reading, scan,
  confirm, linking, done, error), digits, tries_left, patron_id, valid_until, linked_before, error,
  first_pin_tried (the same PIN already cost the 券面事項入力補助 PIN a try: pin2 says so),
  patron_name (confirm only, once the catalogue named the scanned library card)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import CardError, CardIdentity, PinPrompt, pin_prompt
from kiosk.core.counter import CounterSettings, Identification
from kiosk.core.patterns import fullmatch

CLOSED = "closed"
SIGNIN = "staff_signin"
MENU = "staff_menu"
STATUS = "staff_status"
REVIEW = "staff_review"
SELFTEST = "staff_selftest"
CONFIRM = "staff_confirm"
REGISTER = "staff_register"
COUNTER = "staff_counter"
IDENTIFY = "counter_identify"

MAX_PIN = 8


@dataclass(frozen=True)
class StaffAccount:
    id: str
    pin_hash: str
    badge: str = ""


@dataclass(frozen=True)
class StaffSettings:
    accounts: tuple[StaffAccount, ...] = ()
    max_failures: int = 5
    lockout_seconds: float = 900.0
    idle_timeout: float = 60.0
    warning: float = 15.0
    badge_pattern: str = r"^S\d{5}$"
    birth_date: bool = False            # registration sends the birth date with the link
    patron_pattern: str = r"^2\d{7,13}$"
    counter: CounterSettings | None = None  # a counter terminal: identification, never lending

    def is_badge(self, code: str) -> bool:
        return bool(code) and fullmatch(self.badge_pattern, code.strip())


@dataclass
class _Registration:
    step: str = "insert"
    pin: bytearray = field(default_factory=bytearray)
    tries_left: int | None = None
    identity: CardIdentity | None = None
    birth_date: date | None = None
    patron_id: str | None = None
    linked_to: str | None = None        # the library card this card was linked to before
    birth_date_sent: bool = False
    error: str | None = None
    first_pin_tried: bool = False
    patron_name: str | None = None      # the catalogue's name for the card, for staff to check

    def wipe(self) -> None:
        for i in range(len(self.pin)):
            self.pin[i] = 0
        self.pin.clear()


class StaffMode:
    def __init__(self, settings: StaffSettings, check_pin: Callable[[bytes, str], bool],
                 locked_for: float = 0.0, now: float = 0.0) -> None:
        self.settings = settings
        self._check_pin = check_pin
        self.screen = CLOSED
        self.staff_id: str | None = None
        self.failures = 0
        self.locked_until = now + locked_for if locked_for > 0 else None
        self.out_of_service = False
        self.offline_lending = False
        self.serial = 10_000_000            # replies tagged like the patron session's, never equal
        self._badge: StaffAccount | None = None
        self._digits = bytearray()
        self._deadline: float | None = None
        self._shown_countdown: int | None = None
        self._data: dict[str, Any] = {}
        self._reg = _Registration()
        self._ident: Identification | None = None
        self._last: str | None = None          # the last identification's outcome, for staff
        self._shown_wipe_in: int | None = None
        self.notice: str | None = None

    @property
    def counter(self) -> bool:
        return self.settings.counter is not None

    @property
    def home(self) -> str:
        """Where staff land after sign-in and go back to: the counter screen on a counter terminal."""
        return COUNTER if self.counter else MENU

    @property
    def active(self) -> bool:
        return self.screen != CLOSED

    # -- entry ---------------------------------------------------------------

    def open(self, now: float, out_of_service: bool, offline_lending: bool,
             badge: str | None = None) -> list[fx.Effect]:
        """The hidden gesture, the GPIO button or a badge scan."""
        self.out_of_service, self.offline_lending = out_of_service, offline_lending
        if self.active:
            return []
        self._badge = None
        out = self._go(SIGNIN, now)
        if badge is not None:
            out = self._on_badge(badge, now)
        return out + [fx.Audit("staff", "staff.signin_opened")]

    def handle(self, event: ev.Event, now: float) -> list[fx.Effect]:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        return [] if handler is None or not self.active else handler(event, now)

    # -- rendering -------------------------------------------------------------

    def _locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def _countdown(self, now: float) -> int | None:
        if self._deadline is None or self._deadline - now > self.settings.warning:
            return None
        return max(0, math.ceil(self._deadline - now))

    def _model(self, now: float) -> dict:
        m: dict[str, Any] = {"countdown": self._countdown(now), "notice": self.notice}
        s = self.screen
        if s == SIGNIN:
            until = self.locked_until if self._locked(now) else None
            m.update(badge=self._badge is not None, digits=len(self._digits),
                     locked_for=None if until is None else math.ceil(until - now))
        elif s == MENU:
            m.update(staff_id=self.staff_id, out_of_service=self.out_of_service,
                     offline_lending=self.offline_lending, registration=True)
            if self.counter:
                m["counter"] = True             # its exit goes back to the counter screen
        elif s == STATUS:
            m.update(status=self._data.get("status", {}))
        elif s == REVIEW:
            m.update(conflicts=self._data.get("conflicts", []))
        elif s == SELFTEST:
            m.update(results=dict(self._data.get("selftest", {})))
        elif s == CONFIRM:
            m.update(action=self._data.get("confirm"))
        elif s == COUNTER:
            m.update(staff_id=self.staff_id, last=self._last)
        elif s == IDENTIFY and self._ident is not None:
            m.update(self._ident.model(now))
        elif s == REGISTER:
            r = self._reg
            m.update(step=r.step, digits=len(r.pin), tries_left=r.tries_left, patron_id=r.patron_id,
                     valid_until=r.identity.not_after.date().isoformat() if r.identity else None,
                     linked_before=r.linked_to is not None, error=r.error, first_pin_tried=r.first_pin_tried)
            if r.step == "confirm" and r.patron_name:
                m["patron_name"] = r.patron_name
        return m

    def _render(self, now: float) -> list[fx.Effect]:
        if self.screen == IDENTIFY and self._ident is not None:
            self.notice = self._ident.notice
        self._shown_countdown = self._countdown(now)
        return [fx.Show(self.screen, self._model(now))]

    def _go(self, screen: str, now: float, notice: str | None = None) -> list[fx.Effect]:
        self.screen = screen
        self.notice = notice
        self._deadline = now + self.settings.idle_timeout
        return self._render(now)

    def _close(self, now: float, why: str) -> list[fx.Effect]:
        out: list[fx.Effect] = []
        if self.screen == REGISTER:             # the card layer must not stay in counter mode
            out += [fx.StaffCommand("release_card"), fx.StaffCommand("card_mode", "kiosk")]
        if self._ident is not None:
            self._ident.wipe()
            self._ident = None
            out.append(fx.StaffCommand("release_card"))
        self._last = None
        self._digits = _wiped(self._digits)
        self._reg.wipe()
        self._reg = _Registration()
        if self.staff_id is not None:
            out.append(fx.Audit(self.staff_id, "staff." + why))
        self.staff_id = None
        self._badge = None
        self._data = {}
        self.screen = CLOSED
        self._deadline = None
        self.serial += 1
        return out + [fx.StaffCommand("leave")]

    # -- sign-in ---------------------------------------------------------------

    def _on_badge(self, code: str, now: float) -> list[fx.Effect]:
        account = next((a for a in self.settings.accounts if a.badge and a.badge == code.strip()), None)
        if account is None:
            return self._go(SIGNIN, now, notice="unknown_badge")
        self._badge = account
        return self._go(SIGNIN, now)

    def _signin_press(self, a: str, value: str | None, now: float) -> list[fx.Effect]:
        if a == "cancel":
            return self._close(now, "signin_cancelled")
        if self._locked(now):
            return self._go(SIGNIN, now, notice="locked")
        if a == "digit" and value is not None and len(value) == 1 and value in "0123456789":
            if len(self._digits) < MAX_PIN:
                self._digits.append(ord(value))
            return self._render(now)
        if a in ("delete", "clear"):
            if a == "clear":
                self._digits = _wiped(self._digits)
            elif self._digits:
                self._digits[-1] = 0
                del self._digits[-1]
            return self._render(now)
        if a == "ok" and self._digits:
            pin, self._digits = self._digits, bytearray()
            candidates = [self._badge] if self._badge else list(self.settings.accounts)
            try:
                account = next((c for c in candidates if self._check_pin(bytes(pin), c.pin_hash)), None)
            finally:
                _wiped(pin)
            if account is None:
                self.failures += 1
                out: list[fx.Effect] = [fx.Audit("staff", "staff.signin_failed", failures=self.failures)]
                if self.failures >= self.settings.max_failures:
                    self.locked_until = now + self.settings.lockout_seconds
                    self.failures = 0
                    out += [fx.Audit("staff", "staff.signin_locked"),
                            fx.StaffCommand("lock_signin", self.settings.lockout_seconds)]
                    return out + self._go(SIGNIN, now, notice="locked")
                return out + self._go(SIGNIN, now, notice="wrong_pin")
            self.failures = 0
            self.staff_id = account.id
            return [fx.Audit(account.id, "staff.signed_in"), fx.StaffCommand("end_patron_session"),
                    *self._go(self.home, now)]
        return []

    # -- events ----------------------------------------------------------------

    def _on_Press(self, e: ev.Press, now: float) -> list[fx.Effect]:
        a, s = e.action, self.screen
        if a == "more_time":
            self._deadline = now + self.settings.idle_timeout
            return self._render(now)
        self._deadline = now + self.settings.idle_timeout     # any touch is activity, typing too
        if s == SIGNIN:
            return self._signin_press(a, e.value, now)
        if a == "exit" and s == MENU and self.counter:
            return self._go(COUNTER, now)       # a counter terminal signs out from its own screen
        if a == "exit":
            return self._close(now, "signed_out")
        if a == "back" and s in (STATUS, REVIEW, SELFTEST, CONFIRM):
            return self._go(MENU, now)
        if s == MENU:
            return self._menu(a, now)
        if s == COUNTER:
            return self._counter_press(a, now)
        if s == IDENTIFY:
            return self._identify_press(a, e.value, now)
        if s == REVIEW and a == "resolve" and e.value:
            return [fx.Audit(self.staff_id, "staff.conflict_resolved"), fx.StaffCommand("resolve_conflict", e.value),
                    fx.StaffCommand("load", "conflicts")]
        if s == SELFTEST and a in ("test_lights", "test_sound"):
            self._data.setdefault("selftest", {})[a[5:]] = "running"
            return [fx.StaffCommand("self_test", a[5:])] + self._render(now)
        if s == CONFIRM and a == "confirm":
            action: str = self._data["confirm"]     # set by _menu before it shows CONFIRM
            return [fx.Audit(self.staff_id, "staff." + action), *self._close(now, "signed_out"),
                    fx.StaffCommand(action)]
        if s == REGISTER:
            return self._register_press(a, e.value, now)
        return []

    def _menu(self, a: str, now: float) -> list[fx.Effect]:
        sid = self.staff_id
        if a == "reset":
            return [fx.Audit(sid, "staff.reset"), fx.StaffCommand("reset"), *self._go(MENU, now, notice="reset_done")]
        if a == "out_of_service":
            self.out_of_service = not self.out_of_service
            return [fx.Audit(sid, "staff.out_of_service", on=self.out_of_service),
                    fx.StaffCommand("out_of_service", self.out_of_service), *self._render(now)]
        if a == "offline_lending":
            self.offline_lending = not self.offline_lending
            return [fx.Audit(sid, "staff.offline_lending", on=self.offline_lending),
                    fx.StaffCommand("offline_lending", self.offline_lending), *self._render(now)]
        if a == "sync_now":
            return [fx.Audit(sid, "staff.sync_now"), fx.StaffCommand("sync_now"),
                    *self._go(MENU, now, notice="sync_started")]
        if a == "status":
            return [fx.StaffCommand("load", "status")] + self._go(STATUS, now)
        if a == "review":
            return [fx.StaffCommand("load", "conflicts")] + self._go(REVIEW, now)
        if a == "self_test":
            self._data["selftest"] = {}
            return [fx.Audit(sid, "staff.self_test")] + self._go(SELFTEST, now)
        if a in ("restart", "shutdown"):
            self._data["confirm"] = a
            return self._go(CONFIRM, now)
        if a == "register":
            self._reg = _Registration()
            return [fx.Audit(sid, "staff.registration_started"), fx.StaffCommand("card_mode", "counter"),
                    *self._go(REGISTER, now)]
        return []

    # -- counter terminal: its own screen and identification ----------------------

    def _counter_press(self, a: str, now: float) -> list[fx.Effect]:
        if a == "identify":
            return self._identify_next(now)
        if a == "register":
            return self._menu("register", now)
        if a == "menu":
            return self._go(MENU, now)
        return []

    def _identify_next(self, now: float) -> list[fx.Effect]:
        """A fresh identification (the previous patron's is wiped); a card already in the
        reader is read at once, so the next patron can start straight away."""
        self._new_identification()
        return [fx.StaffCommand("rescan_card")] + self._go(IDENTIFY, now)

    def _new_identification(self) -> Identification:
        assert self.settings.counter is not None
        if self._ident is not None:
            self._ident.wipe()
        self.serial += 1
        self._ident = Identification(self.settings.counter, serial=self.serial, actor=self.staff_id)
        return self._ident

    def _identify_press(self, a: str, value: str | None, now: float) -> list[fx.Effect]:
        ident = self._ident
        assert ident is not None
        if a in ("back", "cancel"):
            ident.wipe()
            self._ident = None
            self.serial += 1                    # a late reply from this patron's attempt is stale
            return [fx.StaffCommand("release_card")] + self._go(COUNTER, now)
        if a == "next" and ident.step in ("identified", "error"):
            return self._identify_next(now)
        return ident.press(a, value) + self._render(now)

    def _identify_event(self, fn, now: float) -> list[fx.Effect]:
        """An event for the identification under way: the patron at the counter is activity."""
        ident = self._ident
        assert ident is not None
        self._deadline = now + self.settings.idle_timeout
        before = ident.step
        out = fn(ident)
        if ident.step != before and ident.step in ("identified", "error"):
            self._last = "identified" if ident.step == "identified" else ident.error
        return out + self._render(now)

    def _on_AuthDone(self, e: ev.AuthDone, now: float) -> list[fx.Effect]:
        if self.screen != IDENTIFY or self._ident is None:
            return []
        return self._identify_event(lambda i: i.authenticated(e), now)

    def _on_PatronResolved(self, e: ev.PatronResolved, now: float) -> list[fx.Effect]:
        if self.screen != IDENTIFY or self._ident is None:
            return []
        return self._identify_event(lambda i: i.resolved(e, now), now)

    def _on_HandedOver(self, e: ev.HandedOver, now: float) -> list[fx.Effect]:
        if self.screen != IDENTIFY or self._ident is None:
            return []
        return self._identify_event(lambda i: i.handed_over(e), now)

    def _on_StaffData(self, e: ev.StaffData, now: float) -> list[fx.Effect]:
        if e.kind == "patron_name":             # kept with the registration, not in _data
            r = self._reg
            data = e.data if isinstance(e.data, dict) else {}
            if self.screen != REGISTER or r.step != "confirm" or data.get("patron_id") != r.patron_id:
                return []                       # late: another card, or staff moved on
            name = data.get("name")
            r.patron_name = name if isinstance(name, str) and name.strip() else None
            return self._render(now)
        if e.kind == "selftest":                # results arrive one part at a time
            self._data.setdefault("selftest", {}).update(e.data)
        else:
            self._data[e.kind] = e.data
        return self._render(now) if self.screen in (STATUS, REVIEW, SELFTEST) else []

    def _on_Barcode(self, e: ev.Barcode, now: float) -> list[fx.Effect]:
        s = self.screen
        if s == SIGNIN:
            return self._on_badge(e.code, now)
        if s == SELFTEST:
            self._data.setdefault("selftest", {})["scanner"] = {"result": "scanned", "n": len(e.code)}
            return self._render(now)
        if s == REGISTER and self._reg.step == "scan":
            code = e.code.strip()
            if not fullmatch(self.settings.patron_pattern, code):
                return self._go(REGISTER, now, notice="not_a_library_card")
            self._reg.patron_id = code
            self._reg.step = "confirm"
            self._reg.patron_name = None
            # The catalogue's name for this card, so staff can check it is the person at the
            # desk (staff screen only: never on a patron screen, never logged).
            return [fx.StaffCommand("patron_name", code)] + self._go(REGISTER, now)
        return []

    def _on_Tick(self, e: ev.Tick, now: float) -> list[fx.Effect]:
        ident = self._ident
        if self._deadline is not None and now >= self._deadline:
            return self._close(now, "timed_out")
        if self.screen == IDENTIFY and ident is not None:
            if ident.due(now):                  # the barcode's time is up: wiped, next patron
                deadline = self._deadline       # a wipe is not staff activity
                out = self._identify_next(now)
                self._deadline = deadline
                return out
            if ident.step == "identified":
                shown = self._shown_wipe_in
                self._shown_wipe_in = ident.model(now)["wipe_in"]
                if shown != self._shown_wipe_in:
                    return self._render(now)
        if self._deadline is not None and now >= self._deadline:
            return self._close(now, "timed_out")
        if self._countdown(now) != self._shown_countdown or (self.screen == SIGNIN and self._locked(now)):
            return self._render(now)
        return []

    # -- self-test of the reader, and registration: card events ---------------

    def _on_CardInserted(self, e: ev.CardInserted, now: float) -> list[fx.Effect]:
        if self.screen == IDENTIFY and self._ident is not None:
            if self._ident.step in ("identified", "error"):     # the next patron's card
                self._new_identification()
            return self._identify_event(lambda i: i.card_inserted(), now)
        if self.screen == SELFTEST:
            self._data.setdefault("selftest", {})["reader"] = {"result": "reading"}
            return [fx.ProbeCard(serial=self.serial)] + self._render(now)
        if self.screen == REGISTER and self._reg.step == "insert":
            self._reg.step = "reading"
            return [fx.ProbeCard(serial=self.serial)] + self._go(REGISTER, now)
        return []

    def _on_CardRemoved(self, e: ev.CardRemoved, now: float) -> list[fx.Effect]:
        if self.screen == IDENTIFY and self._ident is not None:
            return self._identify_event(lambda i: i.card_removed(), now)
        r = self._reg
        if self.screen == REGISTER and r.step in ("reading", "pin", "last_try", "authenticating", "pin2",
                                                               "last_try2"):
            return self._register_error(CardError.CARD_REMOVED.value, now)
        return []

    def _on_CardProbed(self, e: ev.CardProbed, now: float) -> list[fx.Effect]:
        if e.serial is not None and e.serial != self.serial:
            return []
        p = e.probe
        if self.screen == IDENTIFY and self._ident is not None:
            return self._identify_event(lambda i: i.probed(e), now)
        if self.screen == SELFTEST:
            verdict = ({"result": "error", "code": p.error.value} if p.error else
                       {"result": "card", "kind": p.kind.value, "tries": p.tries_left})
            self._data.setdefault("selftest", {})["reader"] = verdict
            return self._render(now)
        if self.screen != REGISTER or self._reg.step != "reading":
            return []
        if p.error is not None:
            return self._register_error(p.error.value, now)
        if not p.tries_left:
            return self._register_error(CardError.PIN_LOCKED.value, now)
        self._reg.tries_left = p.tries_left
        self._reg.step = "last_try" if p.tries_left == 1 else "pin"
        return self._go(REGISTER, now)

    def _register_error(self, code: str, now: float) -> list[fx.Effect]:
        self._reg.wipe()
        self._reg.error = code
        self._reg.step = "error"
        return [fx.Audit(self.staff_id, "staff.registration_failed", reason=code)] + self._go(REGISTER, now)

    def _register_press(self, a: str, value: str | None, now: float) -> list[fx.Effect]:
        r = self._reg
        if a == "cancel":
            r.wipe()
            self._reg = _Registration()
            self.serial += 1                     # a late reply from this attempt is now stale
            return [fx.Audit(self.staff_id, "staff.registration_cancelled"), fx.StaffCommand("release_card"),
                    fx.StaffCommand("card_mode", "kiosk"), *self._go(self.home, now)]
        if r.step in ("last_try", "last_try2") and a == "confirm_last_try":
            r.step = "pin" if r.step == "last_try" else "pin2"
            return self._go(REGISTER, now)
        if r.step in ("pin", "pin2"):
            if a == "digit" and value is not None and len(value) == 1 and value in "0123456789":
                if len(r.pin) < 4:
                    r.pin.append(ord(value))
                return self._render(now)
            if a in ("delete", "clear"):
                if a == "clear":
                    r.wipe()
                elif r.pin:
                    r.pin[-1] = 0
                    del r.pin[-1]
                return self._render(now)
            if a == "ok" and len(r.pin) == 4:
                pin, r.pin = r.pin, bytearray()
                if r.step == "pin":
                    r.step = "authenticating"
                    return [fx.AuthenticateForRegistration(pin, self.settings.birth_date, serial=self.serial)] + \
                        self._go(REGISTER, now)
                r.step = "reading"
                return [fx.ReadBirthDate(pin, serial=self.serial)] + self._go(REGISTER, now)
            return []
        if r.step == "confirm" and a in ("link", "unlink"):
            assert r.identity is not None and r.patron_id is not None
            r.step = "linking"
            r.patron_name = None
            if a == "unlink":
                return [fx.UnlinkCard(r.identity, serial=self.serial)] + self._go(REGISTER, now)
            birth, r.birth_date = r.birth_date, None     # kept only to be sent with the link
            r.birth_date_sent = birth is not None
            return [fx.LinkCard(r.identity, r.patron_id, birth, serial=self.serial)] + self._go(REGISTER, now)
        if r.step in ("done", "error") and a in ("ok", "done", "again"):
            self._reg = _Registration()
            self.serial += 1
            if a == "again":
                return [fx.StaffCommand("release_card")] + self._go(REGISTER, now)
            return [fx.StaffCommand("release_card"), fx.StaffCommand("card_mode", "kiosk")] + self._go(self.home, now)
        return []

    def _on_RegistrationRead(self, e: ev.RegistrationRead, now: float) -> list[fx.Effect]:
        r = self._reg
        if self.screen != REGISTER or r.step != "authenticating" or (e.serial is not None and e.serial != self.serial):
            return []
        out = e.outcome
        if not out.ok:
            if out.error == CardError.PIN_WRONG and out.tries_left:
                r.tries_left = out.tries_left
                r.step = "last_try" if out.tries_left == 1 else "pin"
                return self._go(REGISTER, now, notice="pin_wrong")
            code = CardError.PIN_LOCKED if out.error == CardError.PIN_WRONG else (out.error or CardError.BAD_SIGNATURE)
            return self._register_error(code.value, now)
        identity = out.identity
        assert identity is not None, "an ok outcome carries the identity"
        r.identity = identity
        r.birth_date = e.birth_date
        r.first_pin_tried = e.first_pin_tried
        if self.settings.birth_date and e.birth_date is None:
            if e.second_pin_tries is not None and e.second_pin_tries <= 0:
                return self._register_error("second_pin_locked", now)
            r.tries_left = e.second_pin_tries
            r.step = _second_pin_step(e.second_pin_tries)
            return [fx.LookupLink(identity, serial=self.serial)] + self._go(REGISTER, now)
        r.step = "scan"
        return [fx.LookupLink(identity, serial=self.serial)] + self._go(REGISTER, now)

    def _on_BirthDateRead(self, e: ev.BirthDateRead, now: float) -> list[fx.Effect]:
        r = self._reg
        if self.screen != REGISTER or r.step != "reading" or r.identity is None or (
                e.serial is not None and e.serial != self.serial):
            return []
        if e.birth_date is not None:
            r.birth_date = e.birth_date
            r.step = "scan"
            return self._go(REGISTER, now)
        if e.tries_left is None:                # card gone or the EF unreadable: not a PIN matter
            return self._register_error("birth_date_unreadable", now)
        if e.tries_left:
            r.tries_left = e.tries_left
            r.step = _second_pin_step(e.tries_left)
            return self._go(REGISTER, now, notice="pin_wrong")
        return self._register_error("second_pin_locked", now)

    def _on_LinkFound(self, e: ev.LinkFound, now: float) -> list[fx.Effect]:
        if self.screen == REGISTER and (e.serial is None or e.serial == self.serial):
            self._reg.linked_to = e.patron_id
            return self._render(now)
        return []

    def _on_LinkDone(self, e: ev.LinkDone, now: float) -> list[fx.Effect]:
        r = self._reg
        if self.screen != REGISTER or r.step != "linking" or (e.serial is not None and e.serial != self.serial):
            return []
        if e.error:
            return self._register_error(e.error, now)
        r.step = "done"
        action = "staff.card_unlinked" if e.unlinked else (
            "staff.card_relinked" if r.linked_to is not None else "staff.card_linked")
        r.wipe()
        return [fx.Audit(self.staff_id, action, kenhojo_read=r.birth_date_sent)] + self._go(REGISTER, now)


def _second_pin_step(tries: int | None) -> str:
    """The 券面事項入力補助 PIN follows the user-authentication PIN's last-try rule: at one
    try left the patron confirms first (a wrong PIN then locks it)."""
    return "last_try2" if pin_prompt(tries) is PinPrompt.CONFIRM_LAST_TRY else "pin2"


def _wiped(buf: bytearray) -> bytearray:
    for i in range(len(buf)):
        buf[i] = 0
    buf.clear()
    return buf
