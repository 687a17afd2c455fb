"""What a signed push may touch (the site file draws the line), what a layer must build
before it is stored, and the version high-water mark across rollbacks (issue 14)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import kivy
import pytest

from kiosk.cli.main import main as kiosk_main
from kiosk.config.applier import load_effective_config
from kiosk.config.layer_store import LAYER_FILE, SignedLayerStore
from kiosk.config.load import ConfigError, identity_problem, load_config, read_secret
from kiosk.config.push_scope import MIN_SCRYPT, scrypt_cost_error
from kiosk.config.rollback import Rollback
from kiosk.config.signed import verify_bundle
from kiosk.config.usable import check_font, check_picture, check_usable
from kiosk.core.patterns import fullmatch, pattern_error
from kiosk.core.staff_pins import hash_pin
from kiosk_testing.fleet import make_bundle

KIVY_FONT = Path(kivy.__file__).parent / "data" / "fonts" / "DejaVuSans.ttf"


def _secrets(kiosk_root: Path) -> Path:
    d = kiosk_root / "secrets"
    d.mkdir(exist_ok=True)
    return d


# -- secret files only under management.secrets_dir ------------------------------------------

def test_no_secrets_dir_means_a_push_names_no_secret_file(fleet_kiosk, fleet_keys, tmp_path):
    kiosk = fleet_kiosk(serve=False)
    token = tmp_path / "token"
    token.write_text("abc\n", encoding="utf-8")
    out = kiosk.applier.apply(make_bundle(fleet_keys.private, {"catalogue": {"rest": {"token_file": str(token)}}}, 1))
    assert out.code == "protected_key" and "management.secrets_dir" in out.reason
    assert not (kiosk.data_dir / LAYER_FILE).exists()


def test_secret_files_outside_the_secrets_dir_are_refused_even_through_links(fleet_kiosk, fleet_keys, tmp_path):
    secrets = _secrets(tmp_path)
    kiosk = fleet_kiosk(serve=False, extra=f"secrets_dir = '{secrets}'\n")
    device_key = kiosk.data_dir / "device.key"
    device_key.write_text("not-really-the-key\n", encoding="utf-8")
    (secrets / "innocent").symlink_to(device_key)
    for path in (device_key, secrets / ".." / "k1" / "data" / "device.key", secrets / "innocent", secrets):
        out = kiosk.applier.apply(make_bundle(fleet_keys.private,
                                              {"catalogue": {"rest": {"token_file": str(path)}}}, 1))
        assert out.code == "protected_key", (path, out)
    ok = secrets / "rest-token"
    ok.write_text("token-123\n", encoding="utf-8")
    out = kiosk.applier.apply(make_bundle(fleet_keys.private, {"catalogue": {"rest": {"token_file": str(ok)}}}, 1))
    assert out.applied, out


# -- catalogue endpoints and staff accounts only where the site allows ---------------------------

@pytest.mark.parametrize("layer", [
    {"catalogue": {"rest": {"base_url": "https://evil.example/kiosk"}}},
    {"catalogue": {"sip2": {"host": "evil.example"}}},
    {"catalogue": {"sip2": {"port": 7001}}},
    {"catalogue": {"sip2": {"tls": False}}},
    {"catalogue": {"backend": "rest"}},
], ids=["base_url", "sip2-host", "sip2-port", "sip2-tls", "backend"])
def test_catalogue_endpoints_are_pushable_only_where_the_site_allows(fleet_kiosk, fleet_keys, layer):
    closed = fleet_kiosk(name="closed", serve=False)
    out = closed.applier.apply(make_bundle(fleet_keys.private, layer, 1))
    assert out.code == "protected_key" and "push_catalogue_endpoints" in out.reason


def test_an_allowed_endpoint_push_applies(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False, extra="push_catalogue_endpoints = true\n")
    out = kiosk.applier.apply(make_bundle(fleet_keys.private, {"catalogue": {"sip2": {"port": 7001}}}, 1))
    assert out.applied, out


def test_staff_accounts_need_the_site_and_a_minimum_scrypt_cost(fleet_kiosk, fleet_keys):
    cheap = {"id": "s01", "badge": "", "pin_hash": hash_pin(b"1234", log2_n=1)}
    strong = {"id": "s01", "badge": "", "pin_hash": hash_pin(b"1234")}
    closed = fleet_kiosk(name="closed", serve=False)
    out = closed.applier.apply(make_bundle(fleet_keys.private, {"staff": {"accounts": [strong]}}, 1))
    assert out.code == "protected_key" and "push_staff_accounts" in out.reason
    open_ = fleet_kiosk(name="open", serve=False, extra="push_staff_accounts = true\n")
    out = open_.applier.apply(make_bundle(fleet_keys.private, {"staff": {"accounts": [cheap]}}, 1))
    assert out.code == "protected_key" and "below the minimum" in out.reason
    out = open_.applier.apply(make_bundle(fleet_keys.private, {"staff": {"accounts": [strong]}}, 1))
    assert out.applied, out


def test_scrypt_cost_rule():
    assert scrypt_cost_error(hash_pin(b"1234")) is None
    assert scrypt_cost_error(f"scrypt${MIN_SCRYPT[0] - 1}$8$1$c2FsdA==$aGFzaA==") is not None
    assert scrypt_cost_error("scrypt$14$1$1$c2FsdA==$aGFzaA==") is not None       # r too small
    assert scrypt_cost_error("nonsense") is not None


# -- the kiosk id ------------------------------------------------------------------------------

def test_management_needs_a_kiosk_id_of_its_own(tmp_path, capsys):
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\ndata_dir = '{tmp_path}'\n[management]\nenabled = true\n", encoding="utf-8")
    config = load_config(site)
    assert config["kiosk"]["id"] == ""                          # the shipped default names no kiosk
    assert "kiosk.id is not set" in (identity_problem(config) or "")
    assert kiosk_main(["config", "check", str(site)]) == 1
    assert "kiosk.id" in capsys.readouterr().err
    site.write_text(f"[kiosk]\nid = 'chuo-07'\ndata_dir = '{tmp_path}'\n[management]\nenabled = true\n",
                    encoding="utf-8")
    assert identity_problem(load_config(site)) is None
    assert kiosk_main(["config", "check", str(site)]) == 0


def test_a_bundle_for_kiosk_01_does_not_reach_a_kiosk_without_an_id():
    from kiosk.config.signed import BundleRefused
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    body = make_bundle(key, {"timeouts": {"pin": 30}}, 1, target_kiosk="kiosk-01")
    with pytest.raises(BundleRefused) as e:
        verify_bundle(body, [key.public_key()], load_config(None)["kiosk"]["id"], None, None, None)
    assert e.value.code == "other_target"


# -- building what a layer changes -------------------------------------------------------------

def test_secret_files_decode_as_one_line_and_never_echo_their_bytes(tmp_path):
    cases = {b"\xff\xfeSECRETBYTES\x00": "not UTF-8", b"SECRETBYTES\nline two\n": "one line",
             b"SECRET\x07BYTES": "control"}
    for data, reason in cases.items():
        path = tmp_path / "secret"
        path.write_bytes(data)
        with pytest.raises(ConfigError) as e:
            read_secret(str(path))
        assert reason in str(e.value) and "SECRET" not in str(e.value).replace(str(path), "")
    path.write_bytes("トークン-ok\n".encode())
    assert read_secret(str(path)) == "トークン-ok"


def test_fonts_must_be_fonts(tmp_path):
    assert check_font("/etc/passwd") is not None
    assert check_font(str(KIVY_FONT)) is None
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"\x00\x01\x00\x00\x00\x40" + b"\x00" * 6)      # a header promising 64 tables
    assert check_font(str(broken)) is not None


def test_a_scanner_picture_must_be_a_picture_the_screen_can_show(tmp_path):
    from PIL import Image

    good = tmp_path / "scanner.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(good)
    photo = tmp_path / "scanner.jpg"
    Image.new("RGB", (64, 48), (20, 30, 200)).save(photo)
    assert check_picture(str(good)) is None and check_picture(str(photo)) is None
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    huge = tmp_path / "huge.png"
    Image.new("1", (5000, 8)).save(huge)               # a few hundred bytes, wider than a Pi's textures
    for path, reason in ((tmp_path / "absent.png", "cannot be read"), (Path("/etc/passwd"), "not a PNG or JPEG"),
                         (truncated, "cannot be decoded"), (huge, "pixels on a side")):
        assert reason in check_picture(str(path)), path
    from kiosk.config.load import merge

    base = load_config(None)
    for path in (Path("/etc/passwd"), truncated):
        layer = {"ui": {"scan_picture": str(path)}}
        with pytest.raises(ConfigError) as e:
            check_usable(merge(base, layer), layer, "layer")
        assert e.value.key == "ui.scan_picture"
    layer = {"ui": {"scan_picture": str(good)}}
    check_usable(merge(base, layer), layer, "layer")


def test_tls_material_must_load(tmp_path, fleet_pki):
    base = load_config(None)
    not_ca = tmp_path / "ca.pem"
    not_ca.write_text("not a certificate\n", encoding="utf-8")
    bad = [
        ({"catalogue": {"sip2": {"ca_file": str(not_ca)}}}, "catalogue.sip2.ca_file"),
        ({"catalogue": {"rest": {"ca_bundle": str(not_ca)}}}, "catalogue.rest.ca_bundle"),
        ({"catalogue": {"sip2": {"client_key": str(fleet_pki.client_key)}}}, "catalogue.sip2.client_key"),
        ({"catalogue": {"sip2": {"client_cert": str(fleet_pki.server_cert),
                                 "client_key": str(fleet_pki.client_key)}}}, "catalogue.sip2.client_key"),
    ]
    from kiosk.config.load import merge

    for layer, key in bad:
        with pytest.raises(ConfigError) as e:
            check_usable(merge(base, layer), layer, "layer")
        assert e.value.key == key, (layer, e.value)
    good = {"catalogue": {"sip2": {"ca_file": str(fleet_pki.ca), "client_cert": str(fleet_pki.client_cert),
                                   "client_key": str(fleet_pki.client_key)}}}
    check_usable(merge(base, good), good, "layer")


def test_catastrophic_patterns_run_in_linear_time():
    assert pattern_error(r"^(\d+)+X$") is None
    started = time.monotonic()
    for n in (30, 128, 10_000):
        assert not fullmatch(r"^(\d+)+X$", "1" * n + "Y")
    assert time.monotonic() - started < 0.5            # `re` takes minutes at n = 30 already
    assert fullmatch(r"^1\d{7,13}$", "10000001") and not fullmatch(r"^1\d{7,13}$", "1000000١")  # ASCII digits
    assert "linear-time" in (pattern_error(r"(a)\1") or "")     # back-references cannot run in RE2


# -- the high-water mark and last known good on disk -----------------------------------------------

def test_rolling_back_never_lowers_the_high_water_mark(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    v1 = make_bundle(fleet_keys.private, {"timeouts": {"pin": 31}}, 1)
    v2 = make_bundle(fleet_keys.private, {"timeouts": {"pin": 32}}, 2)
    assert kiosk.applier.apply(v1).applied
    store = SignedLayerStore(kiosk.data_dir)
    digest1 = store.read().digest
    assert store.mark_good(digest1)
    assert kiosk.applier.apply(v2).applied
    good = verify_bundle(v1, [fleet_keys.private.public_key()], "kiosk-01", None, None, None)
    store.roll_back(good, Rollback("2025-04-01T09:00:00+09:00", "test", 2, 1))
    stored = store.read()
    assert stored.version == 2 and stored.current_version == 1 and stored.raw == v1
    assert load_effective_config(kiosk.site).bundle.version == 1
    again = fleet_kiosk(name="k1b", site=kiosk.site)
    again.data_dir = kiosk.data_dir
    assert again.applier.apply(v2).code == "replayed"               # a rolled-back version is not new
    assert again.applier.apply(v1).code == "older_version"
    assert again.applier.apply(make_bundle(fleet_keys.private, {"timeouts": {"pin": 33}}, 3)).applied
    assert store.read().good == v1                                 # last good kept until v3 reaches READY


def test_tools_only_read_the_layer_file(fleet_kiosk, fleet_keys):
    kiosk = fleet_kiosk(serve=False)
    assert kiosk.applier.apply(make_bundle(fleet_keys.private, {"timeouts": {"pin": 31}}, 1)).applied
    before = (kiosk.data_dir / LAYER_FILE).read_bytes()
    load_effective_config(kiosk.site)                               # `kiosk card info`, `sync drain`, ...
    assert (kiosk.data_dir / LAYER_FILE).read_bytes() == before
    load_effective_config(kiosk.site, starting=True)                # the app: a trial start begins
    assert "trial" in json.loads((kiosk.data_dir / LAYER_FILE).read_text())


def test_management_does_not_start_without_a_kiosk_id(tmp_path, fleet_keys, fleet_pki):
    from kiosk.shell.launcher import load_site, open_services, start_management
    from kiosk.sync.management_server import ManagementServer
    from kiosk_testing.fleet import free_port, site_text

    text = site_text(tmp_path / "data", fleet_keys, fleet_pki)
    for kiosk_id, serves in (("", False), ("chuo-03", True)):
        site = tmp_path / "kiosk.toml"
        site.write_text(text.replace('id = "kiosk-01"', f'id = "{kiosk_id}"').replace("[management]\n",
                        f"[management]\nport = {free_port()}\n"), encoding="utf-8")
        effective = load_site(str(site))
        services = open_services(effective.config)
        services.effective = effective
        try:
            start_management(services)
            assert any(isinstance(x, ManagementServer) for x in services.extras) is serves, kiosk_id
        finally:
            services.close()
