"""The shape of the kiosk's configuration: every key, its type and its range.

One schema serves the shipped defaults, the site file and the signed layer that
central IT pushes, so a key is valid in one place exactly when it is valid in all.
Defaults live in config/defaults.toml; this file only says what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from kiosk.core.patterns import pattern_error

LANGUAGES = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")


@dataclass(frozen=True)
class Field:
    kind: str                           # str, int, float, bool, path, paths, strs, pins
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None    # returns a reason when the value is wrong
    live: bool = True                   # can change at the next idle moment without a restart
    secret: bool = False                # names a file whose content is a secret; never printed
    fields: dict[str, "Field"] | None = None    # kind "tables": the keys each table may have


def _regex(value: Any) -> str | None:
    """Configured patterns run under RE2 (kiosk.core.patterns): linear time, whatever is pushed."""
    values = value if isinstance(value, list) else [value]
    for v in values:
        reason = pattern_error(v)
        if reason:
            return reason
    return None


def _kiosk_id(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value) else "use 1-64 letters, digits, '.', '_' or '-'"


def _kiosk_id_or_unset(value: str) -> str | None:
    return None if value == "" else _kiosk_id(value)


def _languages(value: list[str]) -> str | None:
    bad = [v for v in value if v not in LANGUAGES]
    if bad:
        return f"unknown language {bad[0]!r}; known: {', '.join(LANGUAGES)}"
    return None if value else "at least one language is needed"


def _management_address(value: str) -> str | None:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be the IP address of the interface to listen on, e.g. 10.1.2.3"
    return None


def _management_poll_url(value: str) -> str | None:
    ok = value == "" or value.startswith("https://") or value.startswith("http://127.0.0.1")
    return None if ok else "must be an https:// URL (or empty: no polling)"


def _staff_accounts(value: list[dict]) -> str | None:
    ids = [a.get("id") for a in value]
    if len(set(ids)) != len(ids):
        return "staff account ids must be unique"
    for a in value:
        if not str(a.get("pin_hash", "")).startswith("scrypt$"):
            return f"account {a.get('id')!r}: pin_hash must be a scrypt hash from `kiosk staff hash-pin`"
    return None


def _codabar_guards(value: str) -> str | None:
    ok = len(value) == 2 and all(c in "ABCD" for c in value)
    return None if ok else "two of A, B, C, D: the NW-7 start and stop characters, e.g. \"AA\""


_SECONDS = Field("float", min=5, max=900)     # a screen timeout; one Field serves them all (frozen)
_PIN = Field("int", min=-1, max=27, live=False)
_CHECKS = ("none", "mod10w31", "mod10w21", "luhn", "mod11w27", "mod11", "7dr", "7dsr", "mod43", "mod16")

SCHEMA: dict[str, Any] = {
    "kiosk": {
        "id": Field("str", check=_kiosk_id_or_unset, live=False),     # "": not set (management stays off)
        "group": Field("str", check=_kiosk_id),
        "mode": Field("str", choices=("kiosk", "counter", "return"), live=False),
        "data_dir": Field("path", live=False),
        "library_name": Field("str"),
        "demo": Field("bool", live=False),
    },
    "ui": {
        "default_language": Field("str", choices=LANGUAGES),
        "languages": Field("strs", check=_languages),
        "fullscreen": Field("bool", live=False),
        "kiosk_mode": Field("bool", live=False),
        "high_contrast": Field("bool"),
        "large_text": Field("bool"),
        "font": Field("path", live=False),
        "show_patron_name": Field("bool"),
        "help_text": Field("str"),
        "scan_picture": Field("path", live=False),
    },
    "timeouts": {
        "default": _SECONDS,
        "reading_card": _SECONDS,
        "pin": _SECONDS,
        "last_try": _SECONDS,
        "authenticating": _SECONDS,
        "library_card": _SECONDS,
        "take_card": _SECONDS,
        "scanning": _SECONDS,
        "finishing": _SECONDS,
        "summary": _SECONDS,
        "thank_you": Field("float", min=2, max=120),
        "error": _SECONDS,
        "warning": Field("float", min=3, max=120),
        "card_reminder_interval": Field("float", min=1, max=60),
    },
    "card": {
        "backend": Field("str", choices=("pcsc", "virtual", "none"), live=False),
        "reader": Field("str", live=False),
        "trust_anchors": Field("paths"),
        "accept_test_pki": Field("bool"),
        "test_anchors": Field("paths"),
        "allow_smartphone": Field("bool"),
        "link_cache_days": Field("int", min=0, max=3650),
    },
    "catalogue": {
        "backend": Field("str", choices=("local", "sip2", "rest"), live=False),
        # SIP2 has no message for card links: a SIP2 site keeps them in a REST link service.
        "identity_links": Field("str", choices=("catalogue", "rest"), live=False),
        "timeout": Field("float", min=1, max=120),
        "local": {
            "path": Field("path", live=False),
            "seed_demo": Field("bool", live=False),
        },
        "sip2": {
            "host": Field("str", live=False),
            "port": Field("int", min=1, max=65535, live=False),
            "tls": Field("bool", live=False),
            "ca_file": Field("path", live=False),
            "client_cert": Field("path", live=False),
            "client_key": Field("path", live=False, secret=True),
            "login_user": Field("str", live=False),
            "password_file": Field("path", live=False, secret=True),
            "terminal_password_file": Field("path", live=False, secret=True),
            "institution": Field("str", live=False),
            "location": Field("str", live=False),
            "charset": Field("str", choices=("utf-8", "cp850", "shift_jis", "cp932", "euc_jp"), live=False),
            "terminator": Field("str", choices=("CR", "CRLF"), live=False),
            "retries": Field("int", min=0, max=10, live=False),
        },
        "rest": {
            "base_url": Field("str", check=lambda v: None if v == "" or v.startswith("https://")
                              or v.startswith("http://127.0.0.1") else "must be an https:// URL",
                              live=False),
            "ca_bundle": Field("path", live=False),
            "client_cert": Field("path", live=False),
            "client_key": Field("path", live=False, secret=True),
            "token_file": Field("path", live=False, secret=True),
            "retries": Field("int", min=0, max=10, live=False),
        },
    },
    "loans": {
        "library_card_signin": Field("bool"),
        "library_card_password": Field("bool"),
        "manual_card_entry": Field("bool"),
        "offline_lending": Field("bool"),
        "offline_max_items": Field("int", min=1, max=50),
        "offline_loan_days": Field("int", min=1, max=90),
        "offline_refused_patterns": Field("strs", check=_regex),
        "item_pattern": Field("str", check=_regex),
        "patron_pattern": Field("str", check=_regex),
        "strip_codabar": Field("bool"),
        "receipt_printer": Field("bool"),
        "return_button": Field("bool", live=False),
    },
    "hardware": {
        "leds": Field("str", choices=("gpio", "none"), live=False),
        "pin_factory": Field("str", choices=("auto", "lgpio", "rpigpio", "mock"), live=False),
        "led_green": _PIN,
        "led_yellow": _PIN,
        "led_red": _PIN,
        "buzzer": _PIN,
        "reset_button": _PIN,
        "scanner": Field("str", choices=("wedge", "evdev", "serial", "none"), live=False),
        "scanner_device": Field("str", live=False),
        "scanner_layout": Field("str", choices=("us", "jis"), live=False),
        "scanner_baud": Field("int", choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200), live=False),
        "scan_debounce_ms": Field("int", min=0, max=5000, live=False),
        "scan_flush_ms": Field("int", min=20, max=5000, live=False),
        "reset_hold_seconds": Field("float", min=1, max=30, live=False),
        "printer": Field("str", choices=("none", "usb", "serial", "network", "file"), live=False),
        "printer_device": Field("str", live=False),
        "printer_kanji": Field("bool", live=False),
        "printer_width": Field("int", min=200, max=1000, live=False),
        "printer_font": Field("path", live=False),
        "printer_footer": Field("str"),
    },
    "barcodes": {
        "symbologies": Field("strs", check=lambda v: next(
            (f"unknown symbology {x!r}; known: nw7, code39, code128, ean13" for x in v
             if x not in ("nw7", "code39", "code128", "ean13")), None if v else "at least one symbology is needed")),
        "item_check": Field("str", choices=_CHECKS),
        "patron_check": Field("str", choices=_CHECKS),
        "aim_ids": Field("bool", live=False),
        "max_length": Field("int", min=4, max=128),
    },
    "logging": {
        "level": Field("str", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        "format": Field("str", choices=("json", "text"), live=False),
    },
    "staff": {
        # [[staff.accounts]] id = "s01", badge = "S00001" (or ""), pin_hash = "scrypt$..."
        # (`kiosk staff hash-pin` makes the hash; the PIN itself is never stored).
        "accounts": Field("tables", check=_staff_accounts, fields={
            "id": Field("str", check=_kiosk_id), "badge": Field("str"), "pin_hash": Field("str"),
        }),
        "max_failures": Field("int", min=1, max=20),
        "lockout_minutes": Field("float", min=1, max=1440),
        "idle_timeout": Field("float", min=10, max=900),
        "badge_pattern": Field("str", check=_regex),
        "registration_birth_date": Field("bool"),
    },
    # kiosk.mode = "counter": how an identified patron's library card number reaches the
    # staff's own circulation client (kiosk/core/counter.py). Staff mode's settings are built
    # once at start: a change takes effect by a restart (at the next idle moment).
    "counter": {
        "barcode": Field("bool", live=False),
        "barcode_symbology": Field("str", choices=("nw7", "code39", "code128"), live=False),
        "codabar_guards": Field("str", check=_codabar_guards, live=False),
        "barcode_seconds": Field("float", min=3, max=60, live=False),
        "keyboard": Field("bool", live=False),
        "keyboard_device": Field("path", live=False),
        "keyboard_layout": Field("str", choices=("us", "jis"), live=False),
    },
    # Central IT's endpoint and pinned signing keys: site file only, never pushable
    # (kiosk/signed_config.py PUSH_PROTECTED).
    "management": {
        "enabled": Field("bool", live=False),
        "bind": Field("str", check=_management_address, live=False),
        "port": Field("int", min=1, max=65535, live=False),
        "tls_cert": Field("path", live=False),
        "tls_key": Field("path", live=False, secret=True),
        "client_ca": Field("path", live=False),
        "require_client_cert": Field("bool", live=False),
        "max_body_bytes": Field("int", min=1024, max=1048576, live=False),
        "rate_per_minute": Field("int", min=1, max=600, live=False),
        "trusted_keys": Field("paths", live=False),
        "poll_url": Field("str", check=_management_poll_url, live=False),
        "poll_interval": Field("float", min=30, max=86400, live=False),
        "poll_ca": Field("path", live=False),
        # What a push may touch (kiosk/config/push_scope.py): secret files only under
        # secrets_dir; catalogue endpoints and staff accounts only when allowed here.
        "secrets_dir": Field("path", live=False),
        "push_catalogue_endpoints": Field("bool", live=False),
        "push_staff_accounts": Field("bool", live=False),
        "release_keys": Field("paths", live=False),
        "release_url": Field("str", check=_management_poll_url, live=False),
    },
}


def field_at(dotted: str) -> Field | None:
    node: Any = SCHEMA
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Field) else None
