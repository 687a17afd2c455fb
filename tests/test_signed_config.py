"""Signed configuration bundles: format, every refusal, the stored layer, applying it.

verify_bundle is pure; the store and the applier are exercised on real files in a
real data dir (with the kiosk's own store and audit trail), including a SIGKILL in
the middle of writing the layer.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.card.identity import SHIPPED_TRUST_DIR
from kiosk.config.applier import UNUSABLE, load_effective_config
from kiosk.config.layer_store import LAYER_FILE, SignedLayerStore, load_signed_bundle
from kiosk.config.load import load_config, validate_layer
from kiosk.config.schema import SCHEMA, field_at
from kiosk.config.signed import (
    ADD_ONLY,
    PUSH_PROTECTED,
    REFUSAL_CODES,
    BundleRefused,
    canonical_json,
    key_id,
    live_and_restart_keys,
    load_public_keys,
    sign_bundle,
    verify_bundle,
)
from kiosk_testing.fleet import FLEET_NOW, make_bundle

LAYER = {"timeouts": {"scanning": 90}, "loans": {"offline_max_items": 3}, "ui": {"help_text": "窓口へどうぞ"}}


def verify(raw: bytes, keys, **kw):
    args = dict(kiosk_id="kiosk-01", group="chuo", current_version=None, now=FLEET_NOW)
    args.update(kw)
    return verify_bundle(raw, keys, args["kiosk_id"], args["group"], args["current_version"], args["now"],
                         **{k: v for k, v in kw.items() if k == "max_bytes"})


def refused(raw: bytes, keys, **kw) -> BundleRefused:
    with pytest.raises(BundleRefused) as err:
        verify(raw, keys, **kw)
    assert err.value.code in REFUSAL_CODES
    return err.value


def edit(raw: bytes, change) -> bytes:
    doc = json.loads(raw)
    change(doc)
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


@pytest.fixture
def keys(fleet_keys):
    return [fleet_keys.private.public_key()]


# -- the format -------------------------------------------------------------------------

def test_a_signed_bundle_verifies_and_carries_its_layer(fleet_keys, keys):
    raw = make_bundle(fleet_keys.private, LAYER, 7, target_group="chuo")
    bundle = verify(raw, keys)
    assert bundle.version == 7 and bundle.layer == LAYER
    assert bundle.key_id == key_id(fleet_keys.private.public_key())
    assert bundle.target_group == "chuo" and bundle.target_kiosk is None
    assert bundle.expires_at == FLEET_NOW + timedelta(days=7)
    assert len(bundle.digest) == 64 and bundle.raw == raw


def test_reformatting_keeps_the_signature_valid(fleet_keys, keys):
    """What is signed is the payload's meaning (canonical JSON), not its layout."""
    raw = make_bundle(fleet_keys.private, LAYER, 7)
    compact = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=True).encode()
    reordered = json.dumps(dict(reversed(list(json.loads(raw).items()))), indent=7).encode()
    assert verify(compact, keys).layer == verify(reordered, keys).layer == LAYER


def test_canonical_json_is_one_byte_string_per_meaning():
    assert canonical_json({"b": [1, 2.5, "é"], "a": None}) == '{"a":null,"b":[1,2.5,"é"]}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


# -- every refusal, with its reason -------------------------------------------------------

def _flip_signature(doc):
    sig = bytearray(base64.b64decode(doc["signature"]["value"]))
    sig[5] ^= 1
    doc["signature"]["value"] = base64.b64encode(bytes(sig)).decode()


def _sign_other_as_trusted(doc, trusted_id, other):
    doc["signature"]["value"] = base64.b64encode(other.sign(b"kiosk-config-bundle/1\0"
                                                            + canonical_json(doc["payload"]))).decode()
    doc["signature"]["key_id"] = trusted_id


@pytest.mark.parametrize("case, code, words", [
    ("not_json", "malformed", "not valid JSON"),
    ("not_utf8", "malformed", "not UTF-8"),
    ("array", "malformed", "not a JSON object"),
    ("nan", "malformed", "not JSON"),
    ("duplicate_key", "malformed", "duplicate key"),
    ("deep", "malformed", "nested too deeply"),
    ("wrong_format", "malformed", "format must be"),
    ("no_expiry", "malformed", "payload must have exactly"),
    ("naive_time", "malformed", "needs a time zone"),
    ("bad_target", "malformed", "payload.target"),
    ("bool_version", "malformed", "payload.version"),
    ("unsigned", "unsigned", "no signature"),
    ("plain_config", "unsigned", "no signature"),
    ("wrong_key", "wrong_key", "does not trust"),
    ("tampered_value", "bad_signature", "changed after signing"),
    ("tampered_version", "bad_signature", "changed after signing"),
    ("flipped_signature", "bad_signature", "changed after signing"),
    ("other_key_trusted_id", "bad_signature", "changed after signing"),
    ("signature_not_base64", "bad_signature", "not base64"),
    ("expired", "expired", "expired at 2025-04-01T09:00:00+09:00"),
    ("other_kiosk", "other_target", "meant for kiosk 'kiosk-99'"),
    ("other_group", "other_target", "meant for group 'kita'"),
    ("replayed", "replayed", "version 7 is already applied"),
    ("older", "older_version", "rollback refused"),
    ("unknown_key", "schema", "ui.colour: unknown key"),
    ("out_of_range", "schema", "timeouts.scanning: must be at most 900"),
    ("wrong_type", "schema", "loans.offline_lending: must be true or false"),
    ("bad_regex", "schema", "loans.item_pattern: not a valid regular expression"),
    ("relative_path", "schema", "a pushed path must be absolute"),
    ("foreign_anchor", "schema", "shipped trust directory"),
    ("pinned_keys", "protected_key", "management.trusted_keys: may only be set in the site file"),
    ("endpoint", "protected_key", "management.port"),
    ("data_dir", "protected_key", "kiosk.data_dir"),
    ("test_pki", "protected_key", "card.accept_test_pki"),
    ("too_large", "too_large", "at most 4096"),
])
def test_each_bad_bundle_is_refused_with_its_reason(fleet_keys, keys, case, code, words):
    priv, other = fleet_keys.private, fleet_keys.other
    good = make_bundle(priv, LAYER, 7)
    trusted_id = key_id(priv.public_key())
    kw: dict = {}
    raw = {
        "not_json": lambda: b"{version: 7",
        "not_utf8": lambda: b'{"a": "\xff"}',
        "array": lambda: b"[1, 2, 3]",
        "nan": lambda: good.replace(b'"version": 7', b'"version": NaN'),
        "duplicate_key": lambda: good.replace(b'"version": 7', b'"version": 7, "version": 8'),
        "deep": lambda: b'{"payload": ' + b"[" * 20000 + b"]" * 20000 + b"}",
        "wrong_format": lambda: edit(good, lambda d: d.update(format="kiosk-config-bundle/0")),
        "no_expiry": lambda: edit(good, lambda d: d["payload"].pop("expires_at")),
        "naive_time": lambda: edit(good, lambda d: d["payload"].update(expires_at="2025-05-01T00:00:00")),
        "bad_target": lambda: edit(good, lambda d: d["payload"].update(target={"kiosk": "a", "group": "b"})),
        "bool_version": lambda: edit(good, lambda d: d["payload"].update(version=True)),
        "unsigned": lambda: edit(good, lambda d: d.pop("signature")),
        "plain_config": lambda: json.dumps(LAYER).encode(),
        "wrong_key": lambda: make_bundle(other, LAYER, 7),
        "tampered_value": lambda: edit(good, lambda d: d["payload"]["config"]["loans"].update(offline_max_items=50)),
        "tampered_version": lambda: edit(good, lambda d: d["payload"].update(version=8)),
        "flipped_signature": lambda: edit(good, _flip_signature),
        "other_key_trusted_id": lambda: edit(good, lambda d: _sign_other_as_trusted(d, trusted_id, other)),
        "signature_not_base64": lambda: edit(good, lambda d: d["signature"].update(value="%%%")),
        "expired": lambda: make_bundle(priv, LAYER, 7, now=FLEET_NOW - timedelta(days=7)),
        "other_kiosk": lambda: make_bundle(priv, LAYER, 7, target_kiosk="kiosk-99"),
        "other_group": lambda: make_bundle(priv, LAYER, 7, target_group="kita"),
        "replayed": lambda: (kw.update(current_version=7), good)[1],
        "older": lambda: (kw.update(current_version=9), good)[1],
        "unknown_key": lambda: make_bundle(priv, {"ui": {"colour": "red"}}, 7),
        "out_of_range": lambda: make_bundle(priv, {"timeouts": {"scanning": 5000}}, 7),
        "wrong_type": lambda: make_bundle(priv, {"loans": {"offline_lending": "yes"}}, 7),
        "bad_regex": lambda: make_bundle(priv, {"loans": {"item_pattern": "(["}}, 7),
        "relative_path": lambda: make_bundle(priv, {"catalogue": {"sip2": {"ca_file": "ca.pem"}}}, 7),
        "foreign_anchor": lambda: make_bundle(priv, {"card": {"trust_anchors": ["/tmp/evil/ca.pem"]}}, 7),
        "pinned_keys": lambda: make_bundle(priv, {"management": {"trusted_keys": ["/tmp/evil.pub"]}}, 7),
        "endpoint": lambda: make_bundle(priv, {"management": {"port": 9443}}, 7),
        "data_dir": lambda: make_bundle(priv, {"kiosk": {"data_dir": "/tmp/elsewhere"}}, 7),
        "test_pki": lambda: make_bundle(priv, {"card": {"accept_test_pki": True}}, 7),
        "too_large": lambda: (kw.update(max_bytes=4096), good + b" " * 4096)[1],
    }[case]()
    err = refused(raw, keys, **kw)
    assert (err.code, words in err.reason) == (code, True), err.reason


def test_checks_run_in_a_fixed_order(fleet_keys, keys):
    priv = fleet_keys.private
    expired_elsewhere = make_bundle(priv, {"ui": {"colour": "red"}}, 3, now=FLEET_NOW - timedelta(days=8),
                                    target_kiosk="kiosk-99")
    assert refused(expired_elsewhere, keys, current_version=5).code == "expired"
    assert refused(make_bundle(priv, {"ui": {"colour": "x"}}, 3, target_kiosk="kiosk-99"), keys,
                   current_version=5).code == "other_target"
    assert refused(make_bundle(priv, {"ui": {"colour": "x"}}, 3), keys, current_version=5).code == "older_version"
    assert refused(make_bundle(fleet_keys.other, {}, 3, now=FLEET_NOW - timedelta(days=8)), keys).code == "wrong_key"
    assert refused(b"x" * 70000, keys).code == "too_large"


def test_refusal_after_the_version_is_read_names_it(fleet_keys, keys):
    err = refused(make_bundle(fleet_keys.private, LAYER, 4), keys, current_version=6)
    assert err.version == 4


def test_no_pinned_key_means_no_bundle(fleet_keys):
    err = refused(make_bundle(fleet_keys.private, LAYER, 1), [])
    assert err.code == "wrong_key" and "trusted: none" in err.reason


def test_push_protected_and_add_only_keys_exist_in_the_schema():
    for dotted in PUSH_PROTECTED:
        assert dotted in SCHEMA or field_at(dotted) is not None, dotted
    for dotted in ADD_ONLY:
        assert field_at(dotted) is not None


def test_startup_checks_skip_expiry_and_group(fleet_keys, keys):
    raw = make_bundle(fleet_keys.private, LAYER, 3, now=FLEET_NOW - timedelta(days=30), target_group="kita")
    assert verify_bundle(raw, keys, "kiosk-01", None, None, None).version == 3
    other_kiosk = make_bundle(fleet_keys.private, LAYER, 3, target_kiosk="kiosk-02")
    with pytest.raises(BundleRefused, match="other_target"):
        verify_bundle(other_kiosk, keys, "kiosk-01", None, None, None)


def test_public_keys_load_from_pem_and_wrong_files_are_named(tmp_path, fleet_keys):
    keys = load_public_keys([fleet_keys.public_pem])
    assert list(keys) == [key_id(fleet_keys.private.public_key())]
    bad = tmp_path / "bad.pub"
    bad.write_text("hello")
    with pytest.raises(Exception, match="not a PEM public key") as err:
        load_public_keys([bad])
    assert str(bad) in str(err.value)
    with pytest.raises(Exception, match="cannot be read"):
        load_public_keys([tmp_path / "missing.pub"])


def test_sign_refuses_two_targets(fleet_keys):
    with pytest.raises(ValueError):
        sign_bundle({}, fleet_keys.private, 1, issued_at=FLEET_NOW, expires_at=FLEET_NOW + timedelta(days=1),
                    target_kiosk="a", target_group="b")


# -- live or restart --------------------------------------------------------------------

def test_changed_keys_split_into_live_and_restart():
    old = load_config(None)
    new = load_config(None, [("push", {"timeouts": {"scanning": 99}, "loans": {"offline_lending": True},
                                       "ui": {"fullscreen": False}, "catalogue": {"sip2": {"port": 6002}}})])
    live, restart = live_and_restart_keys(old, new)
    assert live == ("loans.offline_lending", "timeouts.scanning")
    assert restart == ("catalogue.sip2.port", "ui.fullscreen")
    assert live_and_restart_keys(old, old) == ((), ())


# -- trust anchors: add-only ----------------------------------------------------------------

def test_pushed_trust_anchor_is_added_never_replaces(fleet_kiosk, fleet_keys):
    only_2015 = f'\n[card]\ntrust_anchors = ["{SHIPPED_TRUST_DIR}/auth_ca_2015.pem"]\n'
    kiosk = fleet_kiosk(serve=False, extra=only_2015)
    outcome = kiosk.applier.apply(make_bundle(fleet_keys.private, {"card": {"trust_anchors": ["auth_ca_2023.pem"]}}, 1))
    assert outcome.applied, outcome
    assert kiosk.applier.config["card"]["trust_anchors"] == [str(SHIPPED_TRUST_DIR / "auth_ca_2015.pem"),
                                                             str(SHIPPED_TRUST_DIR / "auth_ca_2023.pem")]
    # a later bundle naming only 2023 still cannot drop 2015
    assert kiosk.applier.apply(make_bundle(fleet_keys.private, {"card": {"trust_anchors": []}}, 2)).applied
    assert str(SHIPPED_TRUST_DIR / "auth_ca_2015.pem") in kiosk.applier.config["card"]["trust_anchors"]


def test_trust_anchor_that_is_not_shipped_is_refused_as_unusable(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    outcome = kiosk.applier.apply(make_bundle(fleet_keys.private, {"card": {"trust_anchors": ["auth_ca_2099.pem"]}}, 1))
    assert (outcome.applied, outcome.code) == (False, UNUSABLE)
    assert "auth_ca_2099.pem does not exist" in outcome.reason


# -- applying ---------------------------------------------------------------------------

def test_apply_persists_then_hands_over(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    outcome = kiosk.applier.apply(make_bundle(fleet_keys.private, LAYER, 1), "push", "10.0.0.5")
    assert outcome.applied and outcome.live_keys == ("loans.offline_max_items", "timeouts.scanning", "ui.help_text")
    assert outcome.restart_keys == () and outcome.restart_needed is False
    [(config, restart)] = kiosk.switched
    assert config["timeouts"]["scanning"] == 90 and restart is False
    assert SignedLayerStore(kiosk.data_dir).highest_version() == 1
    assert kiosk.actions()[-1] == ("config.applied", {"version": 1, "digest": outcome_digest(kiosk),
                                                      "source": "push", "client": "10.0.0.5",
                                                      "live": 3, "restart": 0})


def outcome_digest(kiosk) -> str:
    return kiosk.applier.digest[:16]


def test_restart_needed_compares_with_what_the_app_started_on(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    first = kiosk.applier.apply(make_bundle(fleet_keys.private, {"ui": {"fullscreen": False}}, 1))
    assert first.restart_keys == ("ui.fullscreen",) and first.restart_needed
    # v2 leaves ui.fullscreen out, so it falls back to the site value the app runs with: no restart
    second = kiosk.applier.apply(make_bundle(fleet_keys.private, {"timeouts": {"pin": 30}}, 2))
    assert second.restart_keys == ("ui.fullscreen",) and second.restart_needed is False
    assert [r for _, r in kiosk.switched] == [True, False]
    third = kiosk.applier.apply(make_bundle(fleet_keys.private, {"catalogue": {"timeout": 5},
                                                                 "hardware": {"led_red": 5}}, 3))
    assert third.live_keys == ("catalogue.timeout", "timeouts.pin") and third.restart_keys == ("hardware.led_red",)
    assert kiosk.applier.status()["restart_pending"] is True


def test_bad_bundle_leaves_everything_untouched(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    assert kiosk.applier.apply(make_bundle(fleet_keys.private, LAYER, 5)).applied
    before_file = (kiosk.data_dir / LAYER_FILE).read_bytes()
    before_config = json.dumps(kiosk.applier.config, sort_keys=True)
    bad = [
        make_bundle(fleet_keys.other, {"timeouts": {"scanning": 30}}, 6),
        make_bundle(fleet_keys.private, {"timeouts": {"scanning": 30}}, 4),
        make_bundle(fleet_keys.private, {"ui": {"default_language": "ko", "languages": ["ja"]}}, 6),
        make_bundle(fleet_keys.private, {"ui": {"font": "/nonexistent/font.ttf"}}, 6),
        b"garbage",
    ]
    codes = [kiosk.applier.apply(raw).code for raw in bad]
    assert codes == ["wrong_key", "older_version", "unusable", "unusable", "malformed"]
    assert (kiosk.data_dir / LAYER_FILE).read_bytes() == before_file
    assert json.dumps(kiosk.applier.config, sort_keys=True) == before_config
    assert len(kiosk.switched) == 1
    refusals = [f["code"] for a, f in kiosk.actions() if a == "config.refused"]
    assert refusals == codes
    assert kiosk.applier.status()["last_refusal"]["code"] == "malformed"


def test_cross_key_rule_reason_names_the_key(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False, extra="push_catalogue_endpoints = true\n")     # under [management]
    outcome = kiosk.applier.apply(make_bundle(fleet_keys.private, {"catalogue": {"backend": "sip2"}}, 1))
    assert outcome.code == "unusable" and outcome.reason.startswith("catalogue.sip2.host: is needed")


def test_concurrent_bundles_apply_in_version_order(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    bundles = [make_bundle(fleet_keys.private, {"timeouts": {"pin": 10 + v}}, v) for v in range(1, 21)]
    start = threading.Barrier(len(bundles))
    outcomes = []

    def push(raw):
        start.wait()
        outcomes.append(kiosk.applier.apply(raw))

    threads = [threading.Thread(target=push, args=(b,)) for b in reversed(bundles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [o.version for o in outcomes if o.applied]
    assert 20 in applied and applied == sorted(applied) and len(set(applied)) == len(applied)
    assert [c["timeouts"]["pin"] for c, _ in kiosk.switched] == [10 + v for v in applied]
    assert kiosk.applier.version == 20 and SignedLayerStore(kiosk.data_dir).highest_version() == 20


# -- across restarts --------------------------------------------------------------------------

def test_rollback_is_refused_across_a_restart(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    assert kiosk.applier.apply(make_bundle(fleet_keys.private, LAYER, 5)).applied
    kiosk.close()
    again = fleet_kiosk(serve=False, site=kiosk.site)
    assert again.effective.bundle is not None and again.effective.bundle.version == 5
    assert again.effective.config["timeouts"]["scanning"] == 90       # the signed layer is back in force
    assert again.applier.apply(make_bundle(fleet_keys.private, LAYER, 4)).code == "older_version"
    assert again.applier.apply(make_bundle(fleet_keys.private, LAYER, 5)).code == "replayed"
    assert again.applier.apply(make_bundle(fleet_keys.private, {}, 6)).applied
    assert again.applier.config["timeouts"]["scanning"] == 120        # v6 is the whole layer: back to the site value


def test_startup_ignores_a_stored_layer_whose_key_is_no_longer_trusted(fleet_kiosk, fleet_keys, tmp_path):
    kiosk = fleet_kiosk(serve=False)
    assert kiosk.applier.apply(make_bundle(fleet_keys.private, LAYER, 5)).applied
    kiosk.close()
    other_pub = tmp_path / "rotated.pub"
    from cryptography.hazmat.primitives import serialization

    other_pub.write_bytes(fleet_keys.other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    kiosk.site.write_text(kiosk.site.read_text().replace(str(fleet_keys.public_pem), str(other_pub)))
    again = fleet_kiosk(serve=False, site=kiosk.site)
    assert again.effective.bundle is None and again.effective.config["timeouts"]["scanning"] == 120
    # the high-water mark still holds: the old version cannot come back signed by the new key either
    assert again.applier.apply(make_bundle(fleet_keys.other, LAYER, 5)).code == "replayed"
    assert again.applier.apply(make_bundle(fleet_keys.other, LAYER, 6)).applied


def test_startup_ignores_a_tampered_layer_file(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    assert kiosk.applier.apply(make_bundle(fleet_keys.private, LAYER, 5)).applied
    kiosk.close()
    path = kiosk.data_dir / LAYER_FILE
    path.write_text(path.read_text(encoding="utf-8").replace("offline_max_items\\\": 3",
                                                             "offline_max_items\\\": 50"), encoding="utf-8")
    assert "50" in path.read_text(encoding="utf-8")
    effective = load_effective_config(kiosk.site)
    assert effective.bundle is None and effective.config["loans"]["offline_max_items"] == 5


def test_startup_ignores_a_layer_for_another_kiosk_and_survives_a_bad_file(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    assert kiosk.applier.apply(make_bundle(fleet_keys.private, LAYER, 5, target_kiosk="kiosk-01")).applied
    kiosk.close()
    kiosk.site.write_text(kiosk.site.read_text().replace('id = "kiosk-01"', 'id = "kiosk-02"'))
    assert load_effective_config(kiosk.site).bundle is None
    (kiosk.data_dir / LAYER_FILE).write_text("{ not json")
    effective = load_effective_config(kiosk.site)
    assert effective.bundle is None and effective.config["timeouts"]["scanning"] == 120


def test_layer_file_holds_no_more_than_the_bundle(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    raw = make_bundle(fleet_keys.private, LAYER, 5)
    assert kiosk.applier.apply(raw).applied
    doc = json.loads((kiosk.data_dir / LAYER_FILE).read_text(encoding="utf-8"))
    assert doc["bundle"].encode("utf-8") == raw and doc["version"] == 5
    assert os.stat(kiosk.data_dir / LAYER_FILE).st_mode & 0o777 == 0o600
    assert load_signed_bundle(kiosk.data_dir, load_public_keys([fleet_keys.public_pem]), "kiosk-01").raw == raw


CHILD = r"""
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from kiosk.config.signed import sign_bundle, verify_bundle
from kiosk.config.layer_store import SignedLayerStore

data, key_path = Path(sys.argv[1]), sys.argv[2]
key = load_pem_private_key(Path(key_path).read_bytes(), None)
now = datetime.now(timezone.utc)
store = SignedLayerStore(data)
# a few KB per bundle, so a write takes a while and a kill lands inside one
layer = {"ui": {"help_text": "x" * 20000}}
bundles = [sign_bundle({**layer, "timeouts": {"pin": 5 + v % 800}}, key, v, issued_at=now,
                       expires_at=now + timedelta(days=1)) for v in range(1, 400)]
print("ready", flush=True)
for v, raw in enumerate(bundles, start=1):
    bundle = verify_bundle(raw, [key.public_key()], "kiosk-01", None, v - 1 if v > 1 else None, None)
    store.save(bundle, now)
    print(v, flush=True)
"""


@pytest.mark.slow
def test_sigkill_while_writing_leaves_a_whole_layer(tmp_path, fleet_keys):
    keys = load_public_keys([fleet_keys.public_pem])
    for run in range(6):
        data = tmp_path / f"run{run}"
        data.mkdir()
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(fleet_keys.private_pem)],
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.04 * run)
        os.kill(child.pid, signal.SIGKILL)
        out = child.communicate()[0].split()
        child.wait()
        confirmed = int(out[-1]) if out else 0
        bundle = load_signed_bundle(data, keys, "kiosk-01")
        if confirmed == 0 and bundle is None:
            continue
        assert bundle is not None, f"run {run}: nothing readable after {confirmed} confirmed writes"
        assert bundle.version in (confirmed, confirmed + 1)
        assert SignedLayerStore(data).highest_version() == bundle.version
        assert not list(data.glob(".signed_config.json.*.tmp"))     # a killed write's temp file is gone


# -- fuzz ------------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes_are_only_ever_refused(raw, fleet_keys):
    with pytest.raises(BundleRefused) as err:
        verify(raw, [fleet_keys.private.public_key()])
    assert err.value.code in REFUSAL_CODES and err.value.reason


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_bundles_are_refused_or_mean_the_same(data, fleet_keys):
    keys = [fleet_keys.private.public_key()]
    good = _good_bundle(fleet_keys.private)
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        bundle = verify(bytes(raw), keys)
    except BundleRefused as e:
        assert e.code in REFUSAL_CODES
    else:                                   # only layout changed (whitespace): same meaning
        assert bundle.layer == LAYER and bundle.version == 7
        assert json.loads(raw) == json.loads(good)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
schema_keys = st.sampled_from(["kiosk", "ui", "timeouts", "card", "loans", "catalogue", "management", "hardware",
                               "scanning", "pin", "languages", "trust_anchors", "offline_max_items", "port"])


@FUZZ
@given(layer=st.dictionaries(schema_keys, st.dictionaries(schema_keys | st.text(max_size=8), json_values,
                                                          max_size=3) | json_values, max_size=3))
def test_fuzz_signed_layers_pass_the_schema_or_are_refused(layer, fleet_keys):
    """Even central IT's own signature cannot get a layer past the schema and push rules."""
    raw = make_bundle(fleet_keys.private, layer, 3)
    try:
        bundle = verify(raw, [fleet_keys.private.public_key()])
    except BundleRefused as e:
        assert e.code in ("schema", "protected_key", "malformed"), e
    else:
        validate_layer(bundle.layer, "fuzz")
        assert "management" not in bundle.layer
        assert not {"id", "data_dir", "demo"} & set(bundle.layer.get("kiosk", {}))


_GOOD: dict[int, bytes] = {}


def _good_bundle(key: Ed25519PrivateKey) -> bytes:
    if id(key) not in _GOOD:
        _GOOD[id(key)] = make_bundle(key, LAYER, 7)
    return _GOOD[id(key)]
