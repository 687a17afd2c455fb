"""Structured logs to stdout, one JSON object per line, for journald.

Reading records are secret (JLA 図書館の自由に関する宣言 第3): a log line names what
happened, never who borrowed what. `log_event` refuses field names that could carry
a PIN, a patron number, a title or a certificate serial, so a careless call fails in
the tests instead of leaking on a kiosk.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Field names that must never reach a log line or the audit trail.
FORBIDDEN_FIELDS = frozenset({
    "pin", "password", "passwd", "secret", "patron", "patron_id", "patron_number", "card_number",
    "library_card", "name", "title", "titles", "item", "item_id", "barcode", "serial",
    "cert_serial", "certificate", "my_number", "individual_number", "birth_date", "address",
})


def check_fields(fields: dict[str, Any]) -> None:
    bad = sorted(k for k in fields if k.lower() in FORBIDDEN_FIELDS)
    if bad:
        raise ValueError(f"field(s) {', '.join(bad)} may carry patron data and are never logged")


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
