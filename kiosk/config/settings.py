"""Typed settings, one small frozen dataclass per backend, built once from the validated
configuration (`BackendSettings.from_config`) and handed to each backend factory: a backend
sees only its own settings, never the whole configuration.

Plain dataclasses rather than pydantic: the schema (`kiosk.config.schema`) already validates
every layer with file/key/reason messages, so these only carry the result with types mypy can
check; no compiled dependency and nothing on the Pi's start-up path. Rules that span keys and
that the schema cannot state are checked here and raise the same `ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from kiosk.config.load import ConfigError

Config = Mapping[str, Any]
SOURCE = "configuration"


def _opt(value: str | None) -> str | None:
    """The schema's empty string means "not set"."""
    return value or None


# -- catalogue -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalCatalogueSettings:
    path: Path
    seed_demo: bool


@dataclass(frozen=True)
class Sip2Settings:
    host: str
    port: int
    tls: bool
    ca_file: str | None
    client_cert: str | None
    client_key: str | None
    login_user: str | None
    password_file: str
    terminal_password_file: str
    location: str | None
    institution: str
    charset: str
    terminator: str            # the characters that end a message: "\r" or "\r\n"
    retries: int
    timeout: float

    @classmethod
    def from_config(cls, config: Config) -> Sip2Settings:
        s = config["catalogue"]["sip2"]
        if not s["host"]:
            raise ConfigError(SOURCE, "catalogue.sip2.host", "must be set for the sip2 backend")
        return cls(
            host=s["host"], port=int(s["port"]), tls=bool(s["tls"]), ca_file=_opt(s.get("ca_file")),
            client_cert=_opt(s.get("client_cert")), client_key=_opt(s.get("client_key")),
            login_user=_opt(s.get("login_user")), password_file=s.get("password_file", ""),
            terminal_password_file=s.get("terminal_password_file", ""), location=_opt(s.get("location")),
            institution=s.get("institution", ""), charset=s.get("charset") or "utf-8",
            terminator={"CR": "\r", "CRLF": "\r\n"}[s.get("terminator") or "CR"],
            retries=int(s.get("retries", 3)), timeout=float(config["catalogue"].get("timeout", 10)),
        )


@dataclass(frozen=True)
class RestSettings:
    base_url: str
    token_file: str
    ca_bundle: str | None
    client_cert: str | None
    client_key: str | None
    retries: int
    timeout: float

    @classmethod
    def from_config(cls, config: Config) -> RestSettings:
        s = config["catalogue"]["rest"]
        if not s.get("base_url"):
            raise ConfigError(SOURCE, "catalogue.rest.base_url", "must be set for the rest backend")
        if s.get("client_key") and not s.get("client_cert"):
            raise ConfigError(SOURCE, "catalogue.rest.client_key", "needs catalogue.rest.client_cert")
        return cls(
            base_url=s["base_url"], token_file=s.get("token_file", ""), ca_bundle=_opt(s.get("ca_bundle")),
            client_cert=_opt(s.get("client_cert")), client_key=_opt(s.get("client_key")),
            retries=int(s.get("retries", 3)), timeout=float(config["catalogue"].get("timeout", 10)),
        )


@dataclass(frozen=True)
class CatalogueSettings:
    """Which catalogue, and the settings of only the backends in use."""

    backend: Literal["local", "sip2", "rest"]
    local: LocalCatalogueSettings | None = None
    sip2: Sip2Settings | None = None
    rest: RestSettings | None = None          # the catalogue, or the card-link service of a SIP2 site

    @classmethod
    def from_config(cls, config: Config, data_dir: Path) -> CatalogueSettings:
        c = config["catalogue"]
        backend = c["backend"]
        if backend == "local":
            return cls("local", local=LocalCatalogueSettings(
                path=Path(c["local"]["path"] or data_dir / "catalogue.json"), seed_demo=bool(c["local"]["seed_demo"])))
        if backend == "rest":
            return cls("rest", rest=RestSettings.from_config(config))
        links = RestSettings.from_config(config) if c["identity_links"] == "rest" else None
        return cls("sip2", sip2=Sip2Settings.from_config(config), rest=links)


# -- card --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CardSettings:
    reader: Literal["pcsc", "virtual", "none"]
    reader_name: str | None             # PC/SC: only readers whose name contains this
    trust_anchors: tuple[Path, ...]
    test_anchors: tuple[Path, ...]
    accept_test_pki: bool
    allow_smartphone: bool
    link_cache_days: int

    @classmethod
    def from_config(cls, config: Config) -> CardSettings:
        c = config["card"]
        return cls(reader=c["backend"], reader_name=_opt(c["reader"]),
                   trust_anchors=tuple(Path(p) for p in c["trust_anchors"]),
                   test_anchors=tuple(Path(p) for p in c["test_anchors"]),
                   accept_test_pki=bool(c["accept_test_pki"]), allow_smartphone=bool(c["allow_smartphone"]),
                   link_cache_days=int(c["link_cache_days"]))


# -- hardware ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LedSettings:
    pins: Mapping[str, int]             # colour -> BCM pin; -1: that colour is not fitted


@dataclass(frozen=True)
class ResetButtonSettings:
    pin: int
    hold_seconds: float


@dataclass(frozen=True)
class EvdevScannerSettings:
    device: str                         # a path or part of a /dev/input/by-id name; empty: find one
    layout: str                         # the keyboard country the scanner is set to: us | jis
    flush_after: float
    debounce: float

    @classmethod
    def from_config(cls, config: Config) -> EvdevScannerSettings:
        h = config["hardware"]
        return cls(h["scanner_device"], h["scanner_layout"], h["scan_flush_ms"] / 1000, h["scan_debounce_ms"] / 1000)


@dataclass(frozen=True)
class SerialScannerSettings:
    device: str
    baudrate: int
    flush_after: float
    debounce: float

    @classmethod
    def from_config(cls, config: Config) -> SerialScannerSettings:
        h = config["hardware"]
        return cls(h["scanner_device"] or "/dev/kiosk-scanner", int(h["scanner_baud"]),
                   h["scan_flush_ms"] / 1000, h["scan_debounce_ms"] / 1000)


@dataclass(frozen=True)
class PrinterSettings:
    kind: Literal["usb", "serial", "network", "file"]
    device: str
    kanji: bool
    width: int
    font_path: str
    footer: str
    library_name: str

    @classmethod
    def from_config(cls, config: Config) -> PrinterSettings | None:
        """None when no printer is fitted (`hardware.printer` = "none")."""
        h = config["hardware"]
        if h["printer"] == "none":
            return None
        return cls(kind=h["printer"], device=h["printer_device"], kanji=bool(h["printer_kanji"]),
                   width=int(h["printer_width"]), font_path=h["printer_font"], footer=h["printer_footer"],
                   library_name=config["kiosk"]["library_name"])


@dataclass(frozen=True)
class HardwareSettings:
    """None where a device is not fitted. The keyboard-wedge scanner lives in the UI."""

    pin_factory: str                    # auto | lgpio | rpigpio | mock (gpiozero's factories)
    leds: LedSettings | None
    buzzer_pin: int | None
    reset_button: ResetButtonSettings | None
    scanner: EvdevScannerSettings | SerialScannerSettings | None
    printer: PrinterSettings | None

    @property
    def uses_gpio(self) -> bool:
        return self.leds is not None or self.buzzer_pin is not None or self.reset_button is not None

    @classmethod
    def from_config(cls, config: Config) -> HardwareSettings:
        h = config["hardware"]
        scanner: EvdevScannerSettings | SerialScannerSettings | None = None
        if h["scanner"] == "evdev":
            scanner = EvdevScannerSettings.from_config(config)
        elif h["scanner"] == "serial":
            scanner = SerialScannerSettings.from_config(config)
        return cls(
            pin_factory=h["pin_factory"],
            leds=LedSettings({"green": h["led_green"], "yellow": h["led_yellow"], "red": h["led_red"]})
            if h["leds"] == "gpio" else None,
            buzzer_pin=h["buzzer"] if h["buzzer"] >= 0 else None,
            reset_button=ResetButtonSettings(h["reset_button"], float(h["reset_hold_seconds"]))
            if h["reset_button"] >= 0 else None,
            scanner=scanner,
            printer=PrinterSettings.from_config(config),
        )


# -- counter -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CounterSettings:
    """kiosk.mode = "counter": the terminal identifies patrons for staff and never lends.
    The routes by which an identified patron's library card number reaches staff."""

    enabled: bool                       # kiosk.mode == "counter"
    barcode: bool
    symbology: Literal["nw7", "code39", "code128"]
    codabar_guards: str
    barcode_seconds: float
    keyboard_device: str | None         # the HID gadget; None: no USB keyboard hand-over
    keyboard_layout: Literal["us", "jis"]

    @classmethod
    def from_config(cls, config: Config) -> CounterSettings:
        c = config["counter"]
        enabled = config["kiosk"]["mode"] == "counter"
        if enabled and not c["barcode"] and not c["keyboard"]:
            raise ConfigError(SOURCE, "counter.barcode", "a counter terminal needs the barcode or the keyboard "
                                                         "(counter.keyboard) to hand the number over")
        if c["keyboard"] and not c["keyboard_device"]:
            raise ConfigError(SOURCE, "counter.keyboard_device", "must be set when counter.keyboard is on")
        return cls(enabled=enabled, barcode=bool(c["barcode"]), symbology=c["barcode_symbology"],
                   codabar_guards=c["codabar_guards"], barcode_seconds=float(c["barcode_seconds"]),
                   keyboard_device=str(c["keyboard_device"]) if c["keyboard"] else None,
                   keyboard_layout=c["keyboard_layout"])


# -- all of them ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackendSettings:
    """Every backend's settings, built once when the configuration is loaded."""

    data_dir: Path
    catalogue: CatalogueSettings
    card: CardSettings
    hardware: HardwareSettings
    counter: CounterSettings | None = None

    @classmethod
    def from_config(cls, config: Config) -> BackendSettings:
        data_dir = Path(config["kiosk"]["data_dir"]).expanduser()
        return cls(data_dir=data_dir, catalogue=CatalogueSettings.from_config(config, data_dir),
                   card=CardSettings.from_config(config), hardware=HardwareSettings.from_config(config),
                   counter=CounterSettings.from_config(config))
