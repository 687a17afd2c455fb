"""The controller of a counter terminal (`kiosk.mode = "counter"`): staff mode is all there is.

A counter terminal stands at the staff's desk. It opens on staff sign-in, stays on the
staff counter screen while staff are signed in (kiosk/core/staff.py; its idle timeout signs
them out and sign-in comes back), and offers registration and identification
(kiosk/core/counter.py). The patron session never sees a touch, a scan or a card here, so a
counter terminal cannot lend: self-checkout is not reachable at all.

Identification's effects run here: the card's authentication and the link lookup exactly as
for self-checkout (the base Controller's handlers), and HandOver, which types the library
card number into the staff PC through the USB keyboard gadget (kiosk/hardware/hid_gadget.py)
on a thread of its own. The number is never logged.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.staff import CLOSED, SIGNIN
from kiosk.logs import log_event
from kiosk.shell.controller import Controller

log = logging.getLogger("kiosk.counter")

# The sign-in screen as the staff core draws it when nothing has been typed yet: the first
# frame, before staff mode itself is connected.
FIRST_SIGNIN = {"countdown": None, "notice": None, "badge": False, "digits": 0, "locked_for": None}


class Keyboard(Protocol):
    def type_line(self, text: str) -> None: ...


class CounterController(Controller):
    _STAFF_EVENTS = Controller._STAFF_EVENTS + (ev.AuthDone, ev.PatronResolved, ev.HandedOver)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keyboard: Keyboard | None = None
        self._keyboard_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyboard")

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._run([e for e in self.session.start(self.clock()) if not isinstance(e, fx.Show | fx.Lights)])
        self._do_Show(fx.Show(SIGNIN, dict(FIRST_SIGNIN)))
        self.loop.call_every(0.25, lambda: self.dispatch(ev.Tick()))
        if self._connected:
            self._start_reader()
        log_event(log, "kiosk.started", mode="counter")

    def stop(self) -> None:
        super().stop()
        self._keyboard_pool.shutdown(wait=False, cancel_futures=True)

    def dispatch(self, event: ev.Event) -> None:
        """Everything goes to staff mode; with nobody signed in, sign-in opens (a badge
        scanned signs in with it). The patron session only learns about the reader."""
        if not self._admit(event):
            return
        now = self.clock()
        staff = self.staff
        if staff is None:
            return
        if isinstance(event, ev.ReaderChanged | ev.SetOutOfService):
            self._without_drawing(event)
        if not staff.active:
            badge = event.code if isinstance(event, ev.Barcode) and staff.settings.is_badge(event.code) else None
            self._run(staff.open(now, self.session.out_of_service, False, badge))
            return
        if isinstance(event, ev.Tick):
            self._run_at_idle()
            self._run(staff.handle(event, now))
        elif isinstance(event, self._STAFF_EVENTS):
            self._run(staff.handle(event, now))

    def _idle(self) -> bool:
        """New configuration lands while nobody is signed in at the counter."""
        return self.staff is None or self.staff.screen in (CLOSED, SIGNIN)

    def apply_settings(self, settings) -> None:
        """Live configuration: the session's rules change, and nothing of the patron's is drawn."""
        self.session.settings = settings
        log_event(log, "config.applied_live")

    def _staff_leave(self, _value: Any) -> None:
        """Staff signed out (or timed out): straight back to sign-in, never the patron screen."""
        staff = self.staff
        if staff is not None and not staff.active:
            self._run(staff.open(self.clock(), self.session.out_of_service, False))

    def _staff_rescan_card(self, _value: Any) -> None:
        """Identification starts with a card already in the reader: read it now."""
        if self.card_present:
            self.post(ev.CardInserted())

    _STAFF_COMMANDS = {**Controller._STAFF_COMMANDS, "leave": _staff_leave, "rescan_card": _staff_rescan_card}

    def _do_HandOver(self, e: fx.HandOver) -> None:
        keyboard = self.keyboard
        if keyboard is None:
            self.post(ev.HandedOver(False, serial=e.serial))
            return
        number = e.patron_id

        def work() -> None:
            try:
                keyboard.type_line(number)
                ok = True
            except Exception as exc:        # the PC unplugged or off: staff still have the barcode
                log_event(log, "counter.keyboard_failed", logging.WARNING, error=type(exc).__name__)
                ok = False
            log_event(log, "counter.handed_over", route="keyboard", ok=ok)
            self.post(ev.HandedOver(ok, serial=e.serial))

        try:
            self._keyboard_pool.submit(work)
        except RuntimeError:                # shutting down
            pass
