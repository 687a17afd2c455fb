"""Typed settings: each backend is built from its own small settings object, made once from
the validated configuration; no factory is handed the whole configuration."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from kiosk.config.load import ConfigError, load_config
from kiosk.config.settings import (
    BackendSettings,
    CatalogueSettings,
    EvdevScannerSettings,
    HardwareSettings,
    PrinterSettings,
    RestSettings,
    SerialScannerSettings,
    Sip2Settings,
)
from kiosk.hardware import evdev_scanner, leds, receipt_printer, reset_button, serial_scanner
from kiosk.shell import launcher
from kiosk.sync import rest_backend, sip2_backend


def site(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "kiosk.toml"
    path.write_text(f"[kiosk]\ndata_dir = '{tmp_path / 'data'}'\n" + text, encoding="utf-8")
    return load_config(path)


def test_the_shipped_defaults_build_a_local_catalogue_and_no_devices(tmp_path):
    s = BackendSettings.from_config(site(tmp_path, ""))
    assert s.catalogue == CatalogueSettings("local", local=s.catalogue.local)
    assert s.catalogue.local is not None and s.catalogue.local.path == tmp_path / "data" / "catalogue.json"
    hw = s.hardware
    assert (hw.leds, hw.buzzer_pin, hw.reset_button, hw.scanner, hw.printer) == (None, None, None, None, None)
    assert not hw.uses_gpio
    assert s.card.reader == "pcsc" and len(s.card.trust_anchors) == 2


def test_a_sip2_site_gets_sip2_settings_and_the_rest_link_service_only(tmp_path):
    s = BackendSettings.from_config(site(tmp_path, (
        "[catalogue]\nbackend = 'sip2'\nidentity_links = 'rest'\ntimeout = 4\n"
        "[catalogue.sip2]\nhost = 'ils.example'\nport = 6001\nterminator = 'CRLF'\n"
        "[catalogue.rest]\nbase_url = 'https://links.example/api'\n")))
    c = s.catalogue
    assert c.backend == "sip2" and c.local is None
    assert isinstance(c.sip2, Sip2Settings) and isinstance(c.rest, RestSettings)
    assert (c.sip2.host, c.sip2.port, c.sip2.tls, c.sip2.terminator, c.sip2.timeout) == \
        ("ils.example", 6001, True, "\r\n", 4.0)
    assert c.sip2.login_user is None and c.sip2.ca_file is None         # "" means not set
    assert c.rest.base_url == "https://links.example/api"


def test_devices_come_with_exactly_their_own_settings(tmp_path):
    s = BackendSettings.from_config(site(tmp_path, (
        "[hardware]\nleds = 'gpio'\nled_red = -1\nbuzzer = 18\nreset_button = 23\nreset_hold_seconds = 5\n"
        "scanner = 'serial'\nscanner_baud = 115200\nscan_flush_ms = 200\n"
        "printer = 'network'\nprinter_device = '10.0.0.5:9100'\n")))
    hw = s.hardware
    assert hw.leds is not None and dict(hw.leds.pins) == {"green": 17, "yellow": 27, "red": -1}
    assert hw.buzzer_pin == 18 and hw.uses_gpio
    assert hw.reset_button is not None and (hw.reset_button.pin, hw.reset_button.hold_seconds) == (23, 5.0)
    assert hw.scanner == SerialScannerSettings("/dev/kiosk-scanner", 115200, 0.2, 1.0)
    assert isinstance(hw.printer, PrinterSettings) and hw.printer.kind == "network"
    evdev = HardwareSettings.from_config(site(tmp_path, "[hardware]\nscanner = 'evdev'\nscanner_layout = 'jis'\n"))
    assert evdev.scanner == EvdevScannerSettings("", "jis", 0.3, 1.0)


def test_rest_rules_the_schema_cannot_state_name_the_key():
    config = {"catalogue": {"timeout": 10, "rest": {"base_url": "https://x.example", "client_key": "/k.pem",
                                                    "client_cert": ""}}}
    with pytest.raises(ConfigError) as err:
        RestSettings.from_config(config)
    assert err.value.key == "catalogue.rest.client_key"


def test_settings_are_frozen(tmp_path):
    s = BackendSettings.from_config(site(tmp_path, ""))
    with pytest.raises(AttributeError):
        s.card.reader = "virtual"  # type: ignore[misc]


@pytest.mark.parametrize("factory", [
    launcher.build_catalogue, launcher.build_reader, launcher.build_hardware,
    rest_backend.build_rest_catalogue, sip2_backend.build_sip2_catalogue, leds.build_leds, leds.build_sounds,
    reset_button.build_reset_button, evdev_scanner.build_evdev_scanner, serial_scanner.build_serial_scanner,
    receipt_printer.build_receipt_printer, receipt_printer.connector,
])
def test_every_backend_factory_takes_typed_settings_not_the_configuration(factory):
    first = next(iter(inspect.signature(factory).parameters.values()))
    assert first.name == "settings", factory.__qualname__
    assert "Settings" in str(first.annotation) and "dict" not in str(first.annotation), first.annotation


def test_the_app_builds_its_settings_once_before_opening_anything(tmp_path):
    config = site(tmp_path, "")
    config["catalogue"]["rest"]["client_key"] = "/k.pem"
    config["catalogue"]["backend"] = "rest"
    config["catalogue"]["rest"]["base_url"] = "https://x.example"
    with pytest.raises(ConfigError):
        launcher.open_services(config)
    assert not (tmp_path / "data" / "kiosk.db").exists()
