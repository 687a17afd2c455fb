"""Configuration: layered TOML, validated with errors naming file, key and reason."""

import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.config.load import DEFAULTS, ConfigError, load_config, merge, read_secret, validate_layer
from kiosk.config.schema import SCHEMA

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "kiosk.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_cover_every_schema_key():
    """The shipped defaults set every key the schema knows, and nothing else."""
    import tomllib

    data = tomllib.loads(DEFAULTS.read_text(encoding="utf-8"))
    validate_layer(data, str(DEFAULTS))

    def keys(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from keys(v, prefix + k + ".")
            else:
                yield prefix + k

    assert set(keys(data)) == set(keys(SCHEMA))


def test_example_site_file_is_valid():
    config = load_config(REPO / "config" / "kiosk.example.toml")
    assert config["catalogue"]["backend"] == "sip2"
    assert config["catalogue"]["sip2"]["tls"] is True
    assert config["kiosk"]["id"] == "chuo-01"
    # untouched keys keep their defaults
    assert config["timeouts"]["scanning"] == 120


@pytest.mark.parametrize("text, key, reason", [
    ("[kiosk]\ncolour = 'red'\n", "kiosk.colour", "unknown key"),
    ("[nonsense]\nx = 1\n", "nonsense", "unknown key"),
    ("[timeouts]\npin = 'long'\n", "timeouts.pin", "must be a number"),
    ("[timeouts]\npin = 1\n", "timeouts.pin", "at least 5"),
    ("[catalogue.sip2]\nport = 70000\n", "catalogue.sip2.port", "at most 65535"),
    ("[catalogue]\nbackend = 'z39.50'\n", "catalogue.backend", "must be one of local, sip2, rest"),
    ("[ui]\nlanguages = ['ja', 'fr']\n", "ui.languages", "unknown language 'fr'"),
    ("[loans]\nitem_pattern = '(['\n", "loans.item_pattern", "not a valid regular expression"),
    ("[loans]\noffline_lending = 'yes'\n", "loans.offline_lending", "true or false"),
    ("[kiosk]\nid = 'bad id!'\n", "kiosk.id", "letters, digits"),
    ("catalogue = 3\n", "catalogue", "must be a table"),
    ("[hardware]\nled_red = true\n", "hardware.led_red", "whole number"),
])
def test_bad_values_name_file_key_and_reason(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.source == str(path)
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(path) in str(err.value) and key in str(err.value)


def test_toml_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path, "[kiosk\nid = 1")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "not valid TOML" in str(err.value) and str(path) in str(err.value)


def test_cross_key_rules(tmp_path):
    with pytest.raises(ConfigError, match="catalogue.sip2.host"):
        load_config(write(tmp_path, "[catalogue]\nbackend = 'sip2'\n"))
    # SIP2 cannot resolve card links: a card reader needs the REST link service beside it.
    with pytest.raises(ConfigError, match="catalogue.identity_links"):
        load_config(write(tmp_path, "[catalogue]\nbackend = 'sip2'\n[catalogue.sip2]\nhost = 'ils'\n"))
    with pytest.raises(ConfigError, match="catalogue.rest.base_url"):
        load_config(write(tmp_path, "[catalogue]\nbackend = 'sip2'\nidentity_links = 'rest'\n"
                                    "[catalogue.sip2]\nhost = 'ils'\n"))
    with pytest.raises(ConfigError, match="ui.default_language"):
        load_config(write(tmp_path, "[ui]\nlanguages = ['en']\n"))


def test_relative_paths_resolve_against_the_declaring_file(tmp_path):
    site = tmp_path / "etc"
    site.mkdir()
    path = write(site, "[catalogue.sip2]\nca_file = 'ils-ca.pem'\n")
    config = load_config(path)
    assert config["catalogue"]["sip2"]["ca_file"] == str(site / "ils-ca.pem")
    assert all(Path(p).exists() for p in config["card"]["trust_anchors"])


def test_layers_merge_deeply():
    merged = merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
    assert merged == {"a": {"b": 1, "c": 3}}


def test_secret_comes_from_file_and_is_never_described(tmp_path):
    secret = tmp_path / "sip2-password"
    secret.write_text("s3cr3t-canary\n")
    site = write(tmp_path, f"[card]\nbackend = 'none'\n[catalogue]\nbackend = 'sip2'\n[catalogue.sip2]\n"
                           f"host = 'ils'\npassword_file = '{secret}'\n")
    config = load_config(site)
    assert read_secret(config["catalogue"]["sip2"]["password_file"]) == "s3cr3t-canary"
    out = subprocess.run([sys.executable, "-m", "kiosk", "config", "check", "-v", str(site)],
                         capture_output=True, text=True, check=True)
    assert "s3cr3t-canary" not in out.stdout + out.stderr
    assert "password_file" in out.stdout


def test_config_check_command_exit_codes(tmp_path):
    good = write(tmp_path, "[kiosk]\nid = 'ok-1'\n", "good.toml")
    bad = write(tmp_path, "[timeouts]\nscanning = 9999\n", "bad.toml")
    ok = subprocess.run([sys.executable, "-m", "kiosk", "config", "check", str(good)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    ko = subprocess.run([sys.executable, "-m", "kiosk", "config", "check", str(bad)],
                        capture_output=True, text=True)
    assert ko.returncode == 1
    assert f"{bad}: timeouts.scanning: must be at most 900" in ko.stderr
    missing = subprocess.run([sys.executable, "-m", "kiosk", "config", "check", str(tmp_path / "no.toml")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "file not found" in missing.stderr


def test_config_check_full_loads_the_files_a_site_file_names(tmp_path):
    def check(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kiosk", "config", "check", *args], capture_output=True, text=True)

    not_a_key = write(tmp_path, "not a key\n", "release.pem")
    site = write(tmp_path, "[kiosk]\nid = 'ok-1'\n[ui]\nfont = '/etc/passwd'\n[management]\n"
                 f"release_url = 'https://it.example/{{kiosk}}.json'\nrelease_keys = ['{not_a_key}']\n", "site.toml")
    assert check(str(site)).returncode == 0                  # the shape is right: files are not opened
    full = check("--full", str(site))
    assert full.returncode == 1 and f"{site}: ui.font: /etc/passwd: not a TrueType/OpenType font" in full.stderr
    site.write_text(site.read_text(encoding="utf-8").replace("font = '/etc/passwd'", "font = ''"), encoding="utf-8")
    full = check("--full", str(site))
    assert full.returncode == 1 and "management.release_keys" in full.stderr and "not a PEM public key" in full.stderr
    keyless = write(tmp_path, "[kiosk]\nid = 'ok-1'\n[management]\nrelease_url = 'https://it.example/r.json'\n",
                    "keyless.toml")
    ko = check(str(keyless))
    assert ko.returncode == 1 and "management.release_keys: release_url is set" in ko.stderr


def test_booleans_are_not_numbers_and_numbers_not_booleans():
    with pytest.raises(ConfigError, match="true or false"):
        validate_layer({"kiosk": {"demo": 1}}, "x")
    with pytest.raises(ConfigError, match="whole number"):
        validate_layer({"catalogue": {"sip2": {"port": True}}}, "x")


def test_nan_and_infinity_are_not_numbers(tmp_path):
    for text in ("nan", "inf"):
        with pytest.raises(ConfigError, match="must be a number"):
            load_config(write(tmp_path, f"[timeouts]\npin = {text}\n"))


def test_staff_hash_pin_command_makes_a_hash_the_config_accepts(tmp_path):
    from kiosk.core.staff_pins import check_pin

    out = subprocess.run([sys.executable, "-m", "kiosk", "staff", "hash-pin"], input="24681357\n",
                         capture_output=True, text=True, check=True)
    pin_hash = out.stdout.strip()
    assert "24681357" not in out.stdout and check_pin(b"24681357", pin_hash)
    site = write(tmp_path, f"[[staff.accounts]]\nid = 's01'\nbadge = ''\npin_hash = '{pin_hash}'\n")
    assert load_config(site)["staff"]["accounts"][0]["id"] == "s01"
    bad = subprocess.run([sys.executable, "-m", "kiosk", "staff", "hash-pin"], input="12\n",
                         capture_output=True, text=True)
    assert bad.returncode == 2
    with pytest.raises(ConfigError, match="scrypt hash"):
        load_config(write(tmp_path, "[[staff.accounts]]\nid = 's01'\nbadge = ''\npin_hash = '1234'\n"))


def test_manual_card_entry_is_on_by_default_and_reaches_the_session(tmp_path):
    """Issue 16: the idle keypad for a library card number (loans.manual_card_entry)."""
    from kiosk.shell.launcher import session_settings

    assert load_config(None)["loans"]["manual_card_entry"] is True
    assert session_settings(load_config(None)).manual_card_entry is True
    off = load_config(write(tmp_path, "[loans]\nmanual_card_entry = false\n"))
    assert session_settings(off).manual_card_entry is False
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "[loans]\nmanual_card_entry = 'yes'\n", "bad.toml"))
