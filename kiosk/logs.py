"""Structured logs to stdout, one JSON object per line, for journald.

Reading records are secret (JLA 図書館の自由に関する宣言 第3): a log line names what
happened, never who borrowed what. `log_event` refuses field names that could carry
a PIN, a patron number, a title or a certificate serial, so a careless call fails in
the tests instead of leaking on a kiosk.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

# A field name is refused if, with case and separators removed, it CONTAINS one of these
# (so patronId, patron_no, book_title, cert_serial, mynumber all fail) ...
DENIED_WORDS = (
    "patron", "borrower", "member", "title", "serial", "barcode", "cert", "mynumber",
    "kojin", "password", "passwd", "passcode", "birth", "address", "email", "phone",
    "isbn", "book", "reading", "history",
)
# ... or if one of its words (split on separators and camelCase) IS one of these short
# words, which are too common as substrings to match that way ("pin" is in "mapping").
DENIED_TOKENS = frozenset({
    "pin", "pins", "item", "items", "name", "names", "user", "users", "card", "cards",
    "dob", "sex", "gender", "age",
})


def check_field_name(name: str) -> None:
    """Raise ValueError if `name` could carry patron data."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    for word in DENIED_WORDS:
        if word in squashed:
            raise ValueError(f"field {name!r} may carry patron data ({word!r}); never logged or audited")
    tokens = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    for token in tokens:
        if token in DENIED_TOKENS:
            raise ValueError(f"field {name!r} may carry patron data ({token!r}); never logged or audited")


def check_fields(fields: dict[str, Any]) -> None:
    for name in fields:
        check_field_name(name)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    check_fields(fields)
    logger.log(level, event, extra={"kiosk_fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "kiosk_fields", {}))
        if record.exc_info:
            # The type and message only: a traceback's locals and reprs could carry patron data.
            exc = record.exc_info[1]
            out["error"] = type(exc).__name__
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "kiosk_fields", {})
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        err = f" error={type(record.exc_info[1]).__name__}" if record.exc_info else ""
        return f"{record.levelname} {record.name}: {record.getMessage()} {extra}{err}".rstrip()


def setup_logging(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
