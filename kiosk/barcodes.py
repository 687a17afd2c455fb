"""Telling an item barcode from a library card barcode, per library.

Pure: the patterns come from config. NW-7 (Codabar) labels, common in Japanese
libraries, may arrive with their A-D start/stop characters; they are stripped first.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class BarcodeKind(str, enum.Enum):
    ITEM = "item"
    PATRON = "patron"
    INVALID = "invalid"


_CODABAR_ENDS = re.compile(r"^[A-Da-d](.*)[A-Da-d]$")


@dataclass(frozen=True)
class BarcodeRules:
    item_pattern: str = r"^1\d{7,13}$"
    patron_pattern: str = r"^2\d{7,13}$"
    strip_codabar: bool = True
    max_length: int = 32

    def normalise(self, raw: str) -> str:
        code = raw.strip()
        if self.strip_codabar:
            m = _CODABAR_ENDS.match(code)
            if m:
                code = m.group(1)
        return code

    def classify(self, raw: str) -> tuple[BarcodeKind, str]:
        """Return the kind and the normalised code; garbage is INVALID, never guessed."""
        if not raw or len(raw) > self.max_length or not raw.isprintable():
            return BarcodeKind.INVALID, ""
        code = self.normalise(raw)
        # re.ASCII: a bare \d would also take full-width or Arabic-Indic digits as a barcode.
        if re.fullmatch(self.item_pattern, code, re.ASCII):
            return BarcodeKind.ITEM, code
        if re.fullmatch(self.patron_pattern, code, re.ASCII):
            return BarcodeKind.PATRON, code
        return BarcodeKind.INVALID, code
