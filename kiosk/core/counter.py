"""Counter identification: the card tells the staff's own circulation desk who the patron is.

A pure state machine (events in, effects out, injected time) that kiosk/core/staff.py runs
while a counter terminal (`kiosk.mode = "counter"`) shows the `counter_identify` screen.
The patron inserts the card and enters their own PIN on the terminal; authentication is
exactly the self-checkout one (effects ProbeCard, Authenticate: tries read first, the last
try only after an explicit confirmation, never a PIN without a try to spend, a signature
over a fresh challenge, the chain), and the library card number comes from the same link
lookup (ResolvePatron). The number then goes to staff by the site's routes and nowhere else:
as bar/space widths for the on-screen barcode (kiosk/core/barcode_symbols.py), wiped after
`barcode_seconds`, and/or typed into the staff PC by the USB keyboard (effect HandOver).
The staff screen never shows the number as text, a name, loans or history: only
"identified" or why not. The audit records that an identification happened, never the number.

Model of `counter_identify` (kiosk/core/screen_models.py): step (insert, reading, pin,
last_try, authenticating, resolving, identified, error), digits, tries_left, error, bars,
symbology, keyboard (None, typing, typed, failed), wipe_in (seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.barcode_symbols import SymbolError, encode
from kiosk.core.card import CardError, PinPrompt, pin_prompt

SCREEN = "counter_identify"
PIN_LEN = 4
BUSY = ("reading", "authenticating", "resolving")


@dataclass(frozen=True)
class CounterSettings:
    barcode: bool = True
    symbology: str = "nw7"
    codabar_guards: str = "AA"
    barcode_seconds: float = 10.0
    keyboard: bool = False


@dataclass
class Identification:
    """One patron at the counter; made anew for every patron, so nothing carries over."""

    settings: CounterSettings
    serial: int
    actor: str | None = None            # the staff member signed in, for the audit
    step: str = "insert"
    pin: bytearray = field(default_factory=bytearray)
    tries_left: int | None = None
    error: str | None = None
    bars: tuple[int, ...] | None = None
    keyboard: str | None = None
    wipe_at: float | None = None
    notice: str | None = None

    def wipe(self) -> None:
        for i in range(len(self.pin)):
            self.pin[i] = 0
        self.pin.clear()
        self.bars = None
        self.wipe_at = None

    def model(self, now: float) -> dict:
        return {"step": self.step, "digits": len(self.pin), "tries_left": self.tries_left, "error": self.error,
                "bars": list(self.bars) if self.bars is not None else None,
                "symbology": self.settings.symbology if self.bars is not None else None,
                "keyboard": self.keyboard,
                "wipe_in": None if self.wipe_at is None else max(0, math.ceil(self.wipe_at - now))}

    # -- events: each returns the effects; the caller redraws ------------------------------

    def card_inserted(self) -> list[fx.Effect]:
        if self.step != "insert":
            return []
        self.step = "reading"
        self.notice = None
        return [fx.ProbeCard(serial=self.serial)]

    def card_removed(self) -> list[fx.Effect]:
        if self.step in ("reading", "pin", "last_try", "authenticating"):
            return self._fail(CardError.CARD_REMOVED.value)
        return []

    def probed(self, e: ev.CardProbed) -> list[fx.Effect]:
        if self.step != "reading" or e.serial != self.serial:
            return []
        p = e.probe
        if p.error is not None:
            return self._fail(p.error.value)
        return self._ask(p.tries_left)

    def _ask(self, tries: int | None, notice: str | None = None) -> list[fx.Effect]:
        prompt = pin_prompt(tries)
        if prompt is PinPrompt.LOCKED:
            return self._fail(CardError.PIN_LOCKED.value)
        self.tries_left = tries
        self.notice = notice
        self.step = "last_try" if prompt is PinPrompt.CONFIRM_LAST_TRY else "pin"
        return []

    def press(self, action: str, value: str | None) -> list[fx.Effect]:
        if self.step == "last_try" and action == "confirm_last_try":
            self.step = "pin"
            return []
        if self.step != "pin":
            return []
        if action == "digit" and value is not None and len(value) == 1 and value in "0123456789":
            if len(self.pin) < PIN_LEN:
                self.pin.append(ord(value))
        elif action == "clear":
            self.wipe()
        elif action == "delete" and self.pin:
            self.pin[-1] = 0
            del self.pin[-1]
        elif action == "ok" and len(self.pin) == PIN_LEN:
            pin, self.pin = self.pin, bytearray()
            self.step = "authenticating"
            self.notice = None
            return [fx.Authenticate(pin, serial=self.serial)]
        return []

    def authenticated(self, e: ev.AuthDone) -> list[fx.Effect]:
        if self.step != "authenticating" or e.serial != self.serial:
            return []
        out = e.outcome
        if out.ok:
            assert out.identity is not None, "an ok outcome carries the identity"
            self.step = "resolving"
            return [fx.ResolvePatron(out.identity, serial=self.serial)]
        if out.error == CardError.PIN_WRONG and out.tries_left:
            return self._ask(out.tries_left, notice="pin_wrong")
        code = CardError.PIN_LOCKED if out.error == CardError.PIN_WRONG else (out.error or CardError.BAD_SIGNATURE)
        return self._fail(code.value)

    def resolved(self, e: ev.PatronResolved, now: float) -> list[fx.Effect]:
        if self.step != "resolving" or e.serial != self.serial:
            return []
        if e.patron_id is None:
            return self._fail("catalogue_unavailable" if e.unavailable else CardError.NOT_REGISTERED.value)
        s = self.settings
        self.step = "identified"
        out: list[fx.Effect] = [fx.StaffCommand("release_card")]
        barcode_ok = False
        if s.barcode:
            try:
                self.bars = encode(e.patron_id, s.symbology, s.codabar_guards).widths
                self.wipe_at = now + s.barcode_seconds
                barcode_ok = True
            except SymbolError:
                self.notice = "barcode_unavailable"
        if s.keyboard:
            self.keyboard = "typing"
            out.append(fx.HandOver(e.patron_id, serial=self.serial))
        elif not barcode_ok:
            return self._fail("barcode_unavailable")
        self.wipe_at = self.wipe_at or now + s.barcode_seconds
        return out + [fx.Audit(self.actor, "counter.identified", on_screen=barcode_ok, keyboard=s.keyboard,
                               offline=e.offline)]

    def handed_over(self, e: ev.HandedOver) -> list[fx.Effect]:
        if self.step != "identified" or e.serial != self.serial:
            return []
        self.keyboard = "typed" if e.ok else "failed"
        return [] if e.ok else [fx.Audit(self.actor, "counter.keyboard_failed")]

    def due(self, now: float) -> bool:
        """The barcode's time is up: the caller starts the next identification."""
        return self.step == "identified" and self.wipe_at is not None and now >= self.wipe_at

    def _fail(self, code: str) -> list[fx.Effect]:
        self.wipe()
        self.step = "error"
        self.error = code
        self.notice = None
        return [fx.StaffCommand("release_card"), fx.Audit(self.actor, "counter.identify_failed", reason=code)]
