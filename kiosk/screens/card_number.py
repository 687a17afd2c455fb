"""The library card number on a keypad, for a card whose barcode will not scan.

The PIN pad's keys and layout (kiosk/screens/pin_pad.py), but the number is shown as typed:
it is what the barcode says, not a secret. The session then treats it as a scanned library
card (same pattern check, then the password if the site asks for one).
"""

from __future__ import annotations

from kiosk.i18n import Translator
from kiosk.screens.pin_pad import PinScreen
from kiosk.screens.widgets.text import ICON_BACK, ICON_OK, icon


class CardNumberScreen(PinScreen):
    screen = "card_number"

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("card_number.title")
        self.hint.text = t("card_number.hint")
        number = str(model.get("number") or "")
        self.dots.text = number if number else "–"
        self.tries.text = ""
        self.note.text = ""
        self.keys["clear"].text = t("pin.clear")
        self.keys["delete"].text = icon(ICON_BACK) + "\n" + t("pin.delete")
        self.cancel.text = t("common.cancel")
        self.ok.text = icon(ICON_OK) + " " + t("pin.ok")
