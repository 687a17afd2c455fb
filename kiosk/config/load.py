"""Loading and validating the kiosk's TOML configuration.

Layers, later wins: the shipped defaults (config/defaults.toml), the site file
(`--config`, `KIOSK_CONFIG`, else /etc/kiosk/kiosk.toml), then the signed layer
central IT pushes. Each layer is validated on its own so that an error names the
file it came from, the key and the reason. Plain data in, plain dicts out.

Errors: whatever a file or a pushed layer holds (damaged bytes, TOML nested a
thousand deep, a NUL in a path, a regular expression too big to compile), the only
exception is ConfigError, one line "file: key: reason", so the kiosk can fall back
to the last good layer instead of crash-looping on a traceback.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Iterable

from kiosk.config.schema import SCHEMA, Field
from kiosk.data import shipped

DEFAULTS = shipped("defaults.toml")
SITE_DEFAULT = Path("/etc/kiosk/kiosk.toml")


class ConfigError(Exception):
    """One clear reason a configuration cannot be used."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")
        self.source, self.key, self.reason = source, key, reason


def parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "", f"not valid TOML ({e})") from None
    except RecursionError:                      # tomllib recurses once per nested array or table
        raise ConfigError(source, "", "not valid TOML (nested too deeply)") from None


def read_toml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"cannot be read ({e})") from None
    return parse_toml(text, str(path))


def _type_error(f: Field, value: Any) -> str | None:
    k = f.kind
    if k == "bool":
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if k == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else f"must be a whole number, got {value!r}"
    if k == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a number, got {value!r}"
        return None
    if k == "str":
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if k == "path":
        if not isinstance(value, str):
            return f"must be a string, got {value!r}"
        return "a path cannot contain a NUL character" if "\x00" in value else None
    if k == "tables":
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            return f"must be a list of tables ([[...]]), got {value!r}"
        for n, table in enumerate(value):
            for key, item in table.items():
                sub = (f.fields or {}).get(key)
                if sub is None:
                    return f"entry {n + 1}: unknown key {key!r}"
                reason = _field_error(sub, item)
                if reason:
                    return f"entry {n + 1}: {key}: {reason}"
            missing = sorted(set(f.fields or {}) - set(table))
            if missing:
                return f"entry {n + 1}: missing {', '.join(missing)}"
        return None
    if k in ("strs", "paths"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"must be a list of strings, got {value!r}"
        if k == "paths" and any("\x00" in v for v in value):
            return "a path cannot contain a NUL character"
        return None
    raise AssertionError(k)


def _field_error(f: Field, value: Any) -> str | None:
    reason = _type_error(f, value)
    if reason:
        return reason
    if f.choices is not None and value not in f.choices:
        return f"must be one of {', '.join(map(str, f.choices))}, got {value!r}"
    if f.min is not None and value < f.min:
        return f"must be at least {f.min:g}, got {value!r}"
    if f.max is not None and value > f.max:
        return f"must be at most {f.max:g}, got {value!r}"
    if f.check is not None:
        return f.check(value)
    return None


def validate_layer(data: dict, source: str, schema: dict = SCHEMA, prefix: str = "") -> None:
    """Raise ConfigError for the first unknown key, wrong type or out-of-range value."""
    if not isinstance(data, dict):
        raise ConfigError(source, prefix.rstrip("."), "must be a table")
    for key, value in data.items():
        dotted = prefix + key
        spec = schema.get(key)
        if spec is None:
            raise ConfigError(source, dotted, "unknown key")
        if isinstance(spec, dict):
            if not isinstance(value, dict):
                raise ConfigError(source, dotted, "must be a table ([" + dotted + "])")
            validate_layer(value, source, spec, dotted + ".")
            continue
        reason = _field_error(spec, value)
        if reason:
            raise ConfigError(source, dotted, reason)


def _resolve_paths(data: dict, base: Path, schema: dict = SCHEMA) -> dict:
    """Relative paths in a file are relative to that file, not to the working directory."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        spec = schema[key]
        if isinstance(spec, dict):
            out[key] = _resolve_paths(value, base, spec)
        elif spec.kind == "path" and value:
            out[key] = str((base / os.path.expanduser(value)).resolve())
        elif spec.kind == "paths":
            out[key] = [str((base / os.path.expanduser(v)).resolve()) for v in value]
        else:
            out[key] = value
    return out


def merge(base: dict, layer: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_layer(path: Path) -> dict:
    data = read_toml(path)
    validate_layer(data, str(path))
    return _resolve_paths(data, path.resolve().parent)


def site_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("KIOSK_CONFIG") or SITE_DEFAULT)


def load_config(site: Path | None, extra_layers: Iterable[tuple[str, dict]] = ()) -> dict:
    """Defaults, then the site file (when it exists or was named), then extra layers.

    `extra_layers` are (source name, already-parsed dict) pairs, e.g. the signed
    layer from central IT or the demo's overrides; they are validated too.
    """
    config = load_layer(DEFAULTS)
    if site is not None:
        config = merge(config, load_layer(site))
    for source, layer in extra_layers:
        validate_layer(layer, source)
        config = merge(config, _resolve_paths(layer, Path.cwd()))
    check_combination(config, "configuration")
    return config


def check_combination(config: dict, source: str) -> None:
    """Rules that span keys: each names the key to fix."""
    ui = config["ui"]
    if ui["default_language"] not in ui["languages"]:
        raise ConfigError(source, "ui.default_language", "must be one of ui.languages")
    cat = config["catalogue"]
    if cat["backend"] == "sip2" and not cat["sip2"]["host"]:
        raise ConfigError(source, "catalogue.sip2.host", "is needed when catalogue.backend is sip2")
    if cat["backend"] == "sip2" and cat["identity_links"] != "rest" and config["card"]["backend"] != "none":
        raise ConfigError(source, "catalogue.identity_links",
                          "must be rest with the sip2 backend: SIP2 cannot resolve My Number Card links")
    if (cat["backend"] == "rest" or cat["identity_links"] == "rest") and not cat["rest"]["base_url"]:
        raise ConfigError(source, "catalogue.rest.base_url", "is needed when catalogue.backend is rest")
    if config["card"]["accept_test_pki"] and not config["card"]["test_anchors"] and not config["kiosk"]["demo"]:
        raise ConfigError(source, "card.test_anchors", "is needed when card.accept_test_pki is true")


MAX_SECRET_BYTES = 4096


def decode_secret(data: bytes, source: str) -> str:
    """A secret file's text: one line of UTF-8 at most (a trailing newline is fine).
    ConfigError names the fault, never the content."""
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(source, "", f"secret file is larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, "", "secret file is not UTF-8 text") from None
    text = text.strip()
    if "\n" in text or "\r" in text:
        raise ConfigError(source, "", "secret file must hold exactly one line")
    if not text.isprintable():
        raise ConfigError(source, "", "secret file holds control characters")
    return text


def read_secret_file(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(path, "", f"secret file cannot be read ({e.strerror})") from None
    return decode_secret(data, path)


def identity_problem(config: dict) -> str | None:
    """Why central IT's management may not start with this configuration, or None.
    Without its own id a kiosk would take bundles aimed at any other kiosk that forgot
    to set one (the old shipped default was the same `kiosk-01` everywhere)."""
    m = config["management"]
    if (m["enabled"] or m["poll_url"]) and not config["kiosk"]["id"]:
        return ("kiosk.id is not set: give this kiosk its own id (e.g. chuo-01) in the site file; "
                "central IT's management stays off until then")
    return None


def read_secret(path: str) -> str:
    """The content of a secret file (a password, a token). Never logged or printed."""
    return read_secret_file(path) if path else ""


def describe(config: dict) -> list[str]:
    """Lines for `kiosk config check`: every key and value, secrets only by path."""
    lines: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, prefix + key + ".")
            else:
                lines.append(f"{prefix}{key} = {value!r}")

    walk(config, "")
    return lines
