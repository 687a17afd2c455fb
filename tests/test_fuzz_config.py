"""Fuzz the configuration: only ConfigError (files, layers) or BundleRefused (pushes) may escape.

A kiosk never bricks itself: whatever a site file or a pushed bundle holds, loading it
ends in a configuration or in one clear "file: key: reason" line, never a traceback
that would leave systemd restarting the app in a loop.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st
from kiosk_testing.fuzz import FUZZ

from kiosk.config.load import ConfigError, load_config, load_layer, parse_toml, validate_layer
from kiosk.config.schema import SCHEMA, Field
from kiosk.config.signed import REFUSAL_CODES, Bundle, BundleRefused, sign_bundle, verify_bundle

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()

# 5000 deep: Hypothesis raises the recursion limit while a property runs, so 500 is not enough there.
DEEP = 5000
DEEP_ARRAY = "a = " + "[" * DEEP + "]" * DEEP
DEEP_TABLE = "a = " + "{b=" * DEEP + "1" + "}" * DEEP
DEEP_PATTERN = "(" * DEEP + ")" * DEEP
DEEP_REGEX = f"[loans]\nitem_pattern = '{DEEP_PATTERN}'\n"
HUGE_REPEAT = "[loans]\nitem_pattern = 'a{99999999999}'\n"
NUL_PATH = '[ui]\nfont = "fonts/a\\u0000b.ttf"\n'


# -- TOML text -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    (DEEP_ARRAY, "nested too deeply"),              # was RecursionError
    (DEEP_TABLE, "nested too deeply"),              # was RecursionError
    (DEEP_REGEX, "too large to compile"),           # was RecursionError (re's parser)
    (HUGE_REPEAT, "too large to compile"),          # was OverflowError
    (NUL_PATH, "NUL"),                              # was ValueError from Path.resolve
], ids=["deep-array", "deep-table", "deep-regex", "huge-repeat", "nul-path"])
def test_hostile_site_files_give_one_config_error_line(tmp_path, text, reason):
    site = tmp_path / "kiosk.toml"
    site.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_layer(site)
    assert reason in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(site) + ": ")


toml_tokens = st.sampled_from(["[", "]", "{", "}", "=", ",", ".", "\n", '"', "'", "a", "ui", "loans", "1", "1.5",
                               "true", "nan", "inf", "1979-05-27T07:32:00Z", "[[", "]]", " ", "#", "\\u0000", "\\"])
toml_texts = st.text(max_size=200) | st.lists(toml_tokens, max_size=60).map("".join)


@FUZZ
@given(text=toml_texts)
@example(text=DEEP_ARRAY)
@example(text=DEEP_TABLE)
def test_any_text_parses_to_a_table_or_a_config_error(text):
    try:
        assert isinstance(parse_toml(text, "site.toml"), dict)
    except ConfigError as e:
        assert e.source == "site.toml" and "\n" not in str(e).strip()


# -- TOML-shaped data against the schema -----------------------------------------------------

scalars = (st.booleans() | st.integers() | st.integers(-10, 100_000) | st.floats() | st.text(max_size=20)
           | st.sampled_from(["", "\x00", "a\x00b", "~", "../x", "a{99999999999}", "(" * 30 + ")" * 30, "[",
                              "scrypt$x", "127.0.0.1", "https://x", "ja", "en"])
           | st.datetimes() | st.dates() | st.times())
toml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def value_for(spec: Field) -> st.SearchStrategy:
    """Mostly the right kind (so validation goes deep), sometimes anything at all."""
    right = {
        "bool": st.booleans(), "int": st.integers(-5, 70000) | st.sampled_from(spec.choices or (0,)),
        "float": st.floats(-10, 100_000) | st.sampled_from([math.nan, math.inf]),
        "str": st.sampled_from(spec.choices or ("",)) | st.text(max_size=20) | scalars.filter(
            lambda v: isinstance(v, str)),
        "path": st.sampled_from(["/opt/x.pem", "rel/x", "a\x00b", "~/x", ""]),
        "strs": st.lists(st.sampled_from(["ja", "en", "nw7", "xx", "^1", "(", "a{99999999999}"]), max_size=3),
        "paths": st.lists(st.sampled_from(["/opt/x.pem", "rel", "a\x00"]), max_size=3),
        "tables": st.lists(st.fixed_dictionaries({}, optional={
            "id": st.sampled_from(["s01", "s01", "bad id"]), "badge": st.text(max_size=4),
            "pin_hash": st.sampled_from(["scrypt$x", "plain", ""]), "x": st.integers()}), max_size=3),
    }[spec.kind]
    return right | toml_values


def _fields(schema: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Field]]:
    out: list[tuple[tuple[str, ...], Field]] = []
    for key, spec in schema.items():
        out += _fields(spec, prefix + (key,)) if isinstance(spec, dict) else [(prefix + (key,), spec)]
    return out


FIELDS = _fields(SCHEMA)
SECTIONS = sorted(SCHEMA) + ["catalogue.sip2", "catalogue.rest", "catalogue.local"]


def _nest(items: list[tuple[tuple[str, ...], object]]) -> dict:
    """Dotted keys and values into nested tables; a clash keeps the first value."""
    out: dict = {}
    for path, value in items:
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(path[-1], value)
    return out


# A few known keys with values mostly of the right kind (so validation goes deep), plus
# sections or keys holding anything at all, plus unknown keys.
known_items = st.lists(st.one_of([st.tuples(st.just(path), value_for(spec)) for path, spec in FIELDS]),
                       max_size=5)
junk_items = st.lists(st.tuples(st.sampled_from(SECTIONS).map(lambda s: tuple(s.split("."))) | st.tuples(
    st.text(max_size=6)), toml_values), max_size=2)
layers = st.builds(lambda a, b: _nest(a + b), known_items, junk_items)


@FUZZ
@given(layer=layers)
@example(layer={"loans": {"item_pattern": DEEP_PATTERN}})
@example(layer={"loans": {"offline_refused_patterns": ["a{99999999999}"]}})
@example(layer={"ui": {"font": "a\x00b"}})
@example(layer={"card": {"trust_anchors": ["x\x00"]}})
def test_any_layer_loads_or_gives_a_config_error(layer):
    try:
        validate_layer(layer, "layer")
        config = load_config(None, [("layer", layer)])
    except ConfigError as e:
        assert e.source in ("layer", "configuration") and "\n" not in e.reason
    else:
        assert isinstance(config, dict) and set(config) == set(SCHEMA)


# -- signed bundles --------------------------------------------------------------------------

def _as_json(value: object) -> object:
    """A TOML-shaped value as JSON can carry it: dates and non-finite floats become text."""
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def verdict(raw: bytes) -> Bundle | BundleRefused:
    try:
        return verify_bundle(raw, [KEY.public_key()], "kiosk-01", "chuo", 3, NOW)
    except BundleRefused as e:
        assert e.code in REFUSAL_CODES and e.reason
        return e


def signed(layer: dict, version: int = 9, **kw) -> bytes:
    return sign_bundle(layer, KEY, version, issued_at=NOW - dt.timedelta(hours=1),
                       expires_at=NOW + dt.timedelta(days=7), **kw)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=6)
json_layers = st.dictionaries(st.sampled_from(sorted(SCHEMA)) | st.text(max_size=6), json_values, max_size=3)


def test_a_good_bundle_verifies():
    assert isinstance(verdict(signed({"timeouts": {"scanning": 90}})), Bundle)


@FUZZ
@given(raw=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
@example(raw=b"[" * 100_000)
@example(raw=b'{"a": 1, "a": 2}')
@example(raw=b'{"signature": 1, "payload": NaN}')
def test_any_bytes_are_a_bundle_or_a_refusal(raw):
    verdict(raw)


@FUZZ
@given(layer=json_layers | layers.map(_as_json))
@example(layer={"loans": {"item_pattern": DEEP_PATTERN}})
@example(layer={"ui": {"font": "/a\x00b"}})
def test_any_signed_layer_is_applied_or_refused_with_a_code(layer):
    """Signed with the pinned key: every check through the schema and the push rules runs."""
    verdict(signed(layer))


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=3)), min_size=1, max_size=3))
def test_a_damaged_signed_bundle_is_refused(edits):
    raw = bytearray(signed({"timeouts": {"scanning": 90}, "loans": {"item_pattern": "^1\\d{7}$"}}))
    for at, new in edits:
        at %= len(raw)
        raw[at:at + len(new)] = new
    verdict(bytes(raw))

