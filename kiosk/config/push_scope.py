"""What a signed push may touch beyond the schema and PUSH_PROTECTED: the site file draws
the line, so a stolen signing key reaches no further than the site allows.

  - Secret files (`*_file`, client keys) only under `management.secrets_dir`; with no
    secrets directory named, a push names no secret file at all. Else a layer could
    name the device key as a REST token and send it to a server of its choosing.
  - Catalogue endpoints (backend, REST base_url, SIP2 host, port, TLS) only where
    `management.push_catalogue_endpoints` is true.
  - Staff accounts only where `management.push_staff_accounts` is true, and then each
    PIN hash must cost at least MIN_SCRYPT (an offline guess of a 4-digit PIN stays slow).

Checked on every push and again on the stored layer at every start-up (the site file
may have narrowed the scope since). Plain data in, OutOfScope out.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from kiosk.config.load import ConfigError
from kiosk.config.schema import field_at

ENDPOINT_KEYS = ("catalogue.backend", "catalogue.identity_links", "catalogue.rest.base_url",
                 "catalogue.sip2.host", "catalogue.sip2.port", "catalogue.sip2.tls")
MIN_SCRYPT = (14, 8, 1)             # log2 N, r, p: kiosk.core.staff_pins' own cost
SOURCE = "signed layer"


class OutOfScope(ConfigError):
    """A key the site file does not let central IT push (refusal code protected_key)."""


def _leaves(node: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + key + ".")
        else:
            yield prefix + key, value


def _inside(path: str, directory: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([real, root]) == root and real != root


def scrypt_cost_error(pin_hash: str) -> str | None:
    """Why a staff PIN hash is too cheap to push, or None."""
    parts = pin_hash.split("$")
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    except (IndexError, ValueError):
        return "pin_hash is not a scrypt hash from `kiosk staff hash-pin`"
    if log2_n < MIN_SCRYPT[0] or r < MIN_SCRYPT[1] or p < MIN_SCRYPT[2]:
        return (f"scrypt cost N=2^{log2_n}, r={r}, p={p} is below the minimum "
                f"N=2^{MIN_SCRYPT[0]}, r={MIN_SCRYPT[1]}, p={MIN_SCRYPT[2]}")
    return None


def check_push_scope(layer: dict, site: dict) -> None:
    """OutOfScope for the first key of `layer` that `site` (defaults + site file) keeps
    to itself."""
    m = site["management"]
    secrets_dir = m["secrets_dir"]
    for dotted, value in _leaves(layer):
        spec = field_at(dotted)
        if spec is not None and spec.secret and value:
            if not secrets_dir:
                raise OutOfScope(SOURCE, dotted, "a push may name secret files only under "
                                                 "management.secrets_dir, and the site file names none")
            if not _inside(value, secrets_dir):
                raise OutOfScope(SOURCE, dotted, f"{value[:120]} is outside management.secrets_dir "
                                                 f"({secrets_dir})")
        if dotted in ENDPOINT_KEYS and not m["push_catalogue_endpoints"]:
            raise OutOfScope(SOURCE, dotted, "catalogue endpoints may be pushed only where the site file "
                                             "sets management.push_catalogue_endpoints = true")
        if dotted == "staff.accounts":
            if not m["push_staff_accounts"]:
                raise OutOfScope(SOURCE, dotted, "staff accounts may be pushed only where the site file "
                                                 "sets management.push_staff_accounts = true")
            for account in value:
                reason = scrypt_cost_error(str(account.get("pin_hash", "")))
                if reason:
                    raise OutOfScope(SOURCE, dotted, f"account {str(account.get('id'))[:64]!r}: {reason}")
