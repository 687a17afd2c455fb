"""The last-known-good rule's record: which signed layer is in force and the last rollback.

A small typed record so /health, the audit and a metrics exporter all read the same
facts (never a secret, never patron data). Plain data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rollback:
    """One fall-back from a signed layer that would not run."""

    at: str                         # ISO 8601, kiosk time
    reason: str                     # why the layer could not be used (key and kind of fault, no content)
    from_version: int | None        # the layer set aside
    to_version: int | None          # the layer now in force; None: the site file alone

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "reason": self.reason, "from_version": self.from_version,
                "to_version": self.to_version}

    @classmethod
    def from_json(cls, doc: Any) -> Rollback | None:
        if not isinstance(doc, dict):
            return None
        try:
            return cls(at=str(doc["at"]), reason=str(doc["reason"]), from_version=_int(doc.get("from_version")),
                       to_version=_int(doc.get("to_version")))
        except KeyError:
            return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class LayerState:
    """What /health reports about central IT's layer (and what metrics can export)."""

    version: int | None             # the signed layer in force; None: the site file alone
    high_water: int | None          # the highest version ever accepted: a push must be above it
    last_rollback: Rollback | None  # the most recent rollback, kept across restarts
    rolled_back_at_start: bool      # this start fell back from the stored layer

    def to_json(self) -> dict[str, Any]:
        return {"config_version": self.version, "config_high_water": self.high_water,
                "rolled_back_at_start": self.rolled_back_at_start,
                "last_rollback": None if self.last_rollback is None else self.last_rollback.to_json()}
