"""Builds a running kiosk from its configuration: the one place that knows every backend.

Config picks each backend (card reader, catalogue, LEDs) the way gpiozero's pin
factories are picked; everything is handed to the controller as interfaces. Kivy is
imported only in `make_app`, so building and testing the services needs no display.

The app starts in two steps so that its first screen comes up fast: the store (staff
switches) and the session draw it; the backends (card reader and service, catalogue,
outbox, hardware, management) are built right after its first frame is drawn, and
each backend module is imported only when it is built.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from kiosk import __version__
from kiosk.config.load import load_config, site_path
from kiosk.config.settings import (
    BackendSettings,
    CardSettings,
    CatalogueSettings,
    EvdevScannerSettings,
    HardwareSettings,
    SerialScannerSettings,
)
from kiosk.core.barcodes import BarcodeRules
from kiosk.core.events import Barcode, SetOutOfService, StaffOpen
from kiosk.core.loan_rules import OfflineRules
from kiosk.core.session import Session, SessionSettings, Timeouts
from kiosk.logs import log_event, setup_logging
from kiosk.shell.controller import Controller
from kiosk.shell.lifecycle import (
    clear_power_request,
    install_stop_signals,
    request_power,
    sdl_without_signal_handlers,
)
from kiosk.shell.sd_notify import SystemdNotifier
from kiosk.shell.staff_backend import remembered
from kiosk.store.database import Store, StoreError, open_scratch_store, open_store

if TYPE_CHECKING:
    from kiosk.card.identity import TrustStore
    from kiosk.card.service import CardService
    from kiosk.config.applier import ConfigApplier, EffectiveConfig
    from kiosk.core.catalogue import Catalogue
    from kiosk.core.interfaces import CardReader, Loop, View
    from kiosk.core.patron_resolver import PatronResolver
    from kiosk.core.returns import ReturnDesk
    from kiosk.core.staff import StaffSettings
    from kiosk.screens.app import KioskApp
    from kiosk.shell.metrics import KioskMetrics
    from kiosk.shell.staff_backend import StaffBackend
    from kiosk.store.audit import Audit
    from kiosk.store.link_cache import LinkCache
    from kiosk.store.outbox import Outbox
    from kiosk.store.sealed import DeviceKey
    from kiosk.sync.outbox_worker import OutboxWorker

log = logging.getLogger("kiosk.launcher")

# Seconds from SIGTERM to a closed store: systemd's TimeoutStopSec is well above it.
STOP_BUDGET = 1.0

DEMO_DIR = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "kiosk-demo"


def load_site(explicit: str | None, starting: bool = False) -> EffectiveConfig:
    """Defaults + site file + the stored signed layer from central IT (re-verified, and
    `starting` the app: set aside for the last good one when it would not run)."""
    from kiosk.config.applier import load_effective_config

    path = site_path(explicit)
    if explicit is None and not path.exists():
        log_event(log, "config.no_site_file", level=logging.WARNING, path=str(path))
        return load_effective_config(None, starting=starting)
    return load_effective_config(path, starting=starting)


def load_site_config(explicit: str | None) -> dict:
    return load_site(explicit).config


# The demo's staff account (README): badge S00001 or PIN 2468, so that staff mode can be
# tried. Only the demo config has it; a site's accounts come from its own config.
DEMO_STAFF = {"id": "demo", "badge": "S00001",
              "pin_hash": "scrypt$14$8$1$3ncslUz5QRnBq+QKzCU91A==$knihakTgACOT3efhbPdTNnQrm5xrRTWD0X+pBVgnbLI="}


def demo_config(data_dir: str | None, windowed: bool = True) -> dict:
    directory = Path(data_dir).expanduser() if data_dir else DEMO_DIR
    layer = {
        "kiosk": {"demo": True, "data_dir": str(directory), "id": "demo"},
        "ui": {"fullscreen": not windowed, "kiosk_mode": not windowed},
        "card": {"backend": "virtual", "accept_test_pki": True, "allow_smartphone": False},
        "catalogue": {"backend": "local", "local": {"seed_demo": True}},
        "loans": {"receipt_printer": False},
        "logging": {"format": "text"},
        "staff": {"accounts": [dict(DEMO_STAFF)]},
    }
    return load_config(None, [("demo", layer)])


def session_settings(config: dict) -> SessionSettings:
    """The session core's settings from the config's plain data."""
    t = config["timeouts"]
    per_screen = {k: float(v) for k, v in t.items() if k not in ("default", "warning", "card_reminder_interval")}
    loans = config["loans"]
    return SessionSettings(
        default_language=config["ui"]["default_language"],
        languages=tuple(config["ui"]["languages"]),
        timeouts=Timeouts(default=float(t["default"]), per_screen=per_screen, warning=float(t["warning"])),
        library_card_enabled=loans["library_card_signin"],
        library_card_password=loans["library_card_password"],
        manual_card_entry=loans["manual_card_entry"],
        offline_lending=loans["offline_lending"],
        offline_rules=OfflineRules(max_items=loans["offline_max_items"], loan_days=loans["offline_loan_days"],
                                   refused_patterns=tuple(loans["offline_refused_patterns"])),
        receipt_printer=loans["receipt_printer"] or config["hardware"]["printer"] != "none",
        show_patron_name=config["ui"]["show_patron_name"],
        barcodes=BarcodeRules.from_config(config),
        reminder_interval=float(t["card_reminder_interval"]),
        return_button=loans["return_button"] and config["kiosk"]["mode"] != "return",
    )


def build_return_desk(config: dict) -> ReturnDesk | None:
    """The return desk for a return station (`kiosk.mode = "return"`) or a lending kiosk with
    the idle screen's "return books" button (`loans.return_button`); None otherwise."""
    from kiosk.core.returns import ReturnDesk, ReturnSettings

    station = config["kiosk"]["mode"] == "return"
    if not (station or config["loans"]["return_button"]):
        return None
    ui, t = config["ui"], config["timeouts"]
    languages = (ui["default_language"], *(x for x in ui["languages"] if x != ui["default_language"]))
    settings = ReturnSettings(
        barcodes=BarcodeRules.from_config(config), languages=languages, station=station,
        idle_seconds=float(t.get("scanning", t["default"])), warning_seconds=float(t["warning"]),
        receipts=config["loans"]["receipt_printer"] or config["hardware"]["printer"] != "none")
    return ReturnDesk(settings, new_txn_id=_new_txn_id, wall=lambda: datetime.now().astimezone())


def staff_settings(config: dict) -> StaffSettings:
    from kiosk.core.counter import CounterSettings
    from kiosk.core.staff import StaffAccount, StaffSettings

    staff, c = config["staff"], config["counter"]
    counter = CounterSettings(barcode=c["barcode"], symbology=c["barcode_symbology"], codabar_guards=c["codabar_guards"],
                              barcode_seconds=float(c["barcode_seconds"]), keyboard=c["keyboard"]) \
        if config["kiosk"]["mode"] == "counter" else None
    return StaffSettings(
        accounts=tuple(StaffAccount(a["id"], a["pin_hash"], a.get("badge", "")) for a in staff["accounts"]),
        max_failures=staff["max_failures"], lockout_seconds=staff["lockout_minutes"] * 60,
        idle_timeout=staff["idle_timeout"], warning=min(15.0, staff["idle_timeout"] / 3),
        badge_pattern=staff["badge_pattern"], birth_date=staff["registration_birth_date"],
        patron_pattern=config["loans"]["patron_pattern"], counter=counter,
    )


@dataclass
class Services:
    """Everything the controller needs; `close()` releases what was built, in order.
    `open_services` opens the store, `build_backends` adds the rest."""

    config: dict
    settings: BackendSettings
    data_dir: Path
    store: Store
    key: DeviceKey | None = None
    outbox: Outbox | None = None
    links: LinkCache | None = None
    audit: Audit | None = None
    catalogue: Any = None
    resolver: PatronResolver | None = None
    reader: CardReader | None = None
    card: CardService | None = None
    worker: OutboxWorker | None = None
    demo: Any = None
    extras: list = field(default_factory=list)
    notifier: SystemdNotifier = field(default_factory=SystemdNotifier)
    staff_backend: StaffBackend | None = None
    store_problem: str = ""             # why the real store cannot be used ("" when it can)
    effective: EffectiveConfig | None = None   # site + signed layer, when started with a site file
    applier: ConfigApplier | None = None
    controller: Controller | None = None    # once the first frame is drawn
    pending_switches: list = field(default_factory=list)   # switches asked for before the controller existed
    handoff: threading.Lock = field(default_factory=threading.Lock)    # guards the two above
    stop_app: Any = None                # set by make_app: stops the UI loop
    exit_how: str | None = None         # "restart" / "shutdown" (staff), "stop" (a signal): the first wins
    scanner: Any = None                 # the HID/serial scanner thread, when fitted (its `connected` event)
    metrics: KioskMetrics | None = None  # /metrics (start_management); rollbacks: metrics.layer_rollbacks
    backends: Any = None                # BackgroundBackends while they are built beside the first frame

    def request_exit(self, how: str) -> None:
        if self.exit_how is None:
            self.exit_how = how
        if self.stop_app is not None:
            self.stop_app()

    def close(self) -> None:
        """STOPPING=1, then every thread joined. A catalogue that does not answer cannot hold the
        stop: a worker still on the wire after STOP_BUDGET seconds is left to the process exit:
        its loan is journaled as in flight and comes back as a recognised replay, and the
        store is then not closed under it."""
        self.notifier.stopping()
        if self.backends is not None:
            self.backends.wait(reraise=False)   # stopped before the first frame: nothing half-built
        worker_done = True
        if self.worker is not None:
            worker_done = self.worker.stop(timeout=STOP_BUDGET)
        if self.reader is not None:
            self.reader.stop()          # the PC/SC watcher's blocking call is cancelled at once
        for thing in reversed(self.extras):
            thing.close()
        if worker_done:
            self.store.close()
        else:
            log_event(log, "kiosk.store_left_open", level=logging.WARNING, reason="outbox worker still sending")


def _data_dir(config: dict) -> Path:
    d = Path(config["kiosk"]["data_dir"]).expanduser()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def build_catalogue(settings: CatalogueSettings) -> Catalogue:
    """The configured catalogue; a SIP2 site's card links go to its REST link service."""
    if settings.local is not None:
        from kiosk.sync.local_catalogue import LocalCatalogue

        local = LocalCatalogue(settings.local.path)
        if settings.local.seed_demo:
            local.seed(LocalCatalogue.demo_seed())
        return local
    if settings.sip2 is None:
        from kiosk.sync.rest_backend import build_rest_catalogue

        assert settings.rest is not None, "the rest backend has rest settings"
        return build_rest_catalogue(settings.rest)
    from kiosk.sync.sip2_backend import build_sip2_catalogue

    circulation = build_sip2_catalogue(settings.sip2)
    if settings.rest is not None:
        from kiosk.sync.linked_catalogue import LinkedCatalogue
        from kiosk.sync.rest_backend import build_rest_catalogue

        return LinkedCatalogue(circulation, build_rest_catalogue(settings.rest))
    return circulation


def build_trust(settings: CardSettings, extra_test_anchors: Sequence[Path] = ()) -> TrustStore:
    """The anchors the kiosk decides on. `kiosk card info|verify` build theirs here too, so
    staff diagnostics and the kiosk never disagree about the same card."""
    from kiosk.card.identity import TrustStore

    return TrustStore.from_pem_files(list(settings.trust_anchors),
                                     test_paths=[*settings.test_anchors, *extra_test_anchors],
                                     accept_test=settings.accept_test_pki)


def build_card_service(settings: CardSettings, reader: CardReader, trust: TrustStore,
                       clock: Callable[[], datetime]) -> CardService:
    """The card service as the kiosk runs it (and `kiosk card verify` with it)."""
    from kiosk.card.service import CardService

    return CardService(reader, trust, clock, allow_smartphone=settings.allow_smartphone)


def build_reader(settings: CardSettings) -> CardReader | None:
    if settings.reader == "pcsc":
        from kiosk.card.pcsc_reader import PcscReader

        return PcscReader(name_filter=settings.reader_name)
    if settings.reader == "virtual":
        from kiosk.card.virtual_reader import VirtualReader

        return VirtualReader()
    return None


def open_outbox_for_drain(config: dict) -> tuple[Store, Outbox, Any]:
    """The store, outbox and catalogue alone, for `kiosk sync drain` (raises StoreBusy
    while the kiosk itself holds the store)."""
    from kiosk.store.key_guard import open_device_key
    from kiosk.store.outbox import Outbox

    settings = BackendSettings.from_config(config)
    data_dir = _data_dir(config)
    store = open_store(data_dir / "kiosk.db")
    try:
        key = open_device_key(data_dir / "device.key", store)
    except BaseException:
        store.close()
        raise
    outbox = Outbox(store, key, lambda: datetime.now().astimezone())
    return store, outbox, build_catalogue(settings.catalogue)


def open_services(config: dict) -> Services:
    """The data directory and the store: all the first screen needs (staff switches).
    Every backend's typed settings are built here, once, so a bad combination stops the
    kiosk before anything is opened."""
    settings = BackendSettings.from_config(config)
    data_dir = Path(config["kiosk"]["data_dir"]).expanduser()
    try:
        data_dir = _data_dir(config)
        store = open_store(data_dir / "kiosk.db")
    except (StoreError, OSError) as exc:
        services = Services(config=config, settings=settings, data_dir=data_dir, store=open_scratch_store())
        _store_unusable(services, exc)
        return services
    return Services(config=config, settings=settings, data_dir=data_dir, store=store)


def _store_unusable(services: Services, exc: BaseException) -> None:
    """One clear line, then out of service over a scratch store (never a crash loop, and
    the damaged files are left exactly as they are for recovery)."""
    from kiosk.shell.staff_backend import store_problem_code

    services.store_problem = store_problem_code(exc) if isinstance(exc, Exception) else "journal_write_failed"
    if isinstance(exc, OSError) and not isinstance(exc, StoreError):
        services.store_problem = "data_read_only"
    log_event(log, "store.unusable", level=logging.CRITICAL, problem=services.store_problem,
              reason=str(exc).replace("\n", " "))


class _RefusingJournal:
    """The journal of a kiosk whose store cannot be used: every loan is refused."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def append(self, loan: object) -> None:
        raise StoreError(f"the loan journal cannot be used ({self.problem})")

    def withdraw(self, txn_id: str) -> None:
        pass


def build_backends(services: Services, demo: bool = False) -> None:
    """Everything after the store: sealing key, outbox, link cache, audit, catalogue,
    demo devices, trust anchors, card reader and service, staff backend."""
    from kiosk.core.patron_resolver import PatronResolver
    from kiosk.shell.staff_backend import StaffBackend
    from kiosk.store.audit import Audit
    from kiosk.store.link_cache import LinkCache
    from kiosk.store.key_guard import open_device_key
    from kiosk.store.outbox import Outbox

    config, data_dir, store = services.config, services.data_dir, services.store
    card_settings = services.settings.card
    from kiosk.store.sealed import DeviceKey as _Key, KeyFileError

    if services.store_problem:              # the store never opened: leave the key file alone too
        key = _Key(os.urandom(32))
    else:
        try:
            key = open_device_key(data_dir / "device.key", store)
        except (StoreError, KeyFileError, OSError) as exc:
            # Sealed loans wait under a key we do not have: touch nothing of them.
            _store_unusable(services, exc)
            store.close()
            services.store = store = open_scratch_store()
            key = _Key(os.urandom(32))
    services.key = key
    clock = lambda: datetime.now().astimezone()  # noqa: E731 - wall clock for records
    services.outbox = Outbox(store, key, clock)
    services.links = LinkCache(store, key, clock, max_age_days=card_settings.link_cache_days)
    if services.audit is None or services.store_problem:     # a replaced store needs its own audit
        services.audit = Audit(store, clock, logging.getLogger("kiosk.audit"))
    services.catalogue = catalogue = build_catalogue(services.settings.catalogue)
    services.extras.append(catalogue)
    demo_anchors: list[Path] = []
    if demo:
        from kiosk.shell.demo import DemoDevices

        services.demo = DemoDevices.prepare(data_dir, catalogue)
        demo_anchors.append(Path(services.demo.ca_pem_path))
    trust = build_trust(card_settings, demo_anchors)
    services.reader = reader = build_reader(card_settings)
    if reader is not None:
        services.card = build_card_service(card_settings, reader, trust, clock)
    if services.demo is not None:
        services.demo.attach_reader(reader)
    services.resolver = PatronResolver(catalogue, services.links)
    services.staff_backend = StaffBackend(
        store, services.outbox, services.audit, data_dir, wall=clock,
        config_version=lambda: str(services.applier.version) if services.applier and services.applier.version
        else "site",
        worker_status=lambda: services.worker.status if services.worker else None,
        on_exit=services.request_exit, scanner=config["hardware"]["scanner"])
    services.staff_backend.store_problem = services.store_problem


def build_services(config: dict, demo: bool = False) -> Services:
    """Every service at once (tools and tests; the app builds its backends after its
    first frame, see make_app)."""
    services = open_services(config)
    try:
        build_backends(services, demo)
    except BaseException:
        services.close()
        raise
    return services


@dataclass
class Hardware:
    leds: Any = None
    sounds: Any = None
    scanner: Any = None
    printer: Any = None


def build_hardware(settings: HardwareSettings, services: Services) -> Hardware:
    """LEDs, buzzer, scanner and receipt printer as configured; None where there is none.
    The keyboard-wedge scanner lives in the UI (kiosk/screens/wedge.py)."""
    hw = Hardware()
    if settings.leds is not None or settings.buzzer_pin is not None:
        from kiosk.hardware.leds import build_leds, build_sounds

        hw.leds = build_leds(settings)
        hw.sounds = build_sounds(settings)
    if isinstance(settings.scanner, EvdevScannerSettings):
        from kiosk.hardware.evdev_scanner import build_evdev_scanner

        hw.scanner = build_evdev_scanner(settings.scanner)
    elif isinstance(settings.scanner, SerialScannerSettings):
        from kiosk.hardware.serial_scanner import build_serial_scanner

        hw.scanner = build_serial_scanner(settings.scanner)
    if settings.printer is not None:
        from kiosk.hardware.receipt_printer import build_receipt_printer

        hw.printer = build_receipt_printer(settings.printer)
    for part in (hw.leds, hw.sounds):          # the printer holds nothing open between receipts
        if part is not None:
            services.extras.append(part)
    if hw.scanner is not None:
        services.extras.append(_Stopping(hw.scanner))
    services.scanner = hw.scanner
    return hw


class _Stopping:
    """Adapts stop() to close() for Services.extras."""

    def __init__(self, thing: Any) -> None:
        self.thing = thing

    def close(self) -> None:
        self.thing.stop()


def _new_txn_id() -> str:
    import uuid  # here: uuid pulls in platform, and the first screen needs no id

    return uuid.uuid4().hex


def first_controller(services: Services, view: View, loop: Loop) -> Controller:
    """The session, enough to draw the first screen; `connect_controller` gives the
    controller staff mode and its backends."""
    store, config = services.store, services.config
    session = Session(session_settings(config), new_txn_id=_new_txn_id, wall=lambda: datetime.now().astimezone())
    # Staff switches survive a restart: a kiosk put out of service stays out of service.
    session.out_of_service = bool(remembered(store, "out_of_service", False))
    session.offline_lending = bool(remembered(store, "offline_lending", session.offline_lending))
    session.out_of_service = session.out_of_service or bool(services.store_problem)
    # A kiosk with no card reader says so on its first screen, not only once connected.
    session.reader_ok = services.settings.card.reader != "none"
    if config["kiosk"]["mode"] == "counter":      # the staff's desk: identification, never lending
        from kiosk.shell.counter_controller import CounterController

        return CounterController(session=session, view=view, loop=loop, clock=time.monotonic)
    return Controller(session=session, view=view, loop=loop, clock=time.monotonic)


def connect_controller(services: Services, controller: Controller) -> None:
    """Staff mode, hardware, the outbox worker and every backend into the controller;
    then the demo devices, central IT's management and systemd's readiness and watchdog."""
    from kiosk.core.staff import StaffMode
    from kiosk.core.staff_pins import check_pin
    from kiosk.sync.outbox_worker import OutboxWorker

    config = services.config
    backend = services.staff_backend
    settings = staff_settings(config)
    if settings.birth_date and not getattr(services.catalogue, "checks_birth_date", True):
        from dataclasses import replace

        log_event(log, "registration.birth_date_not_read", level=logging.WARNING, reason="catalogue_cannot_check")
        settings = replace(settings, birth_date=False)
    staff = StaffMode(settings, check_pin, locked_for=backend.signin_locked_for(),
                      now=time.monotonic())
    staff.failures = backend.signin_failures()     # wrong guesses before a restart still count
    hw = build_hardware(services.settings.hardware, services)
    backend.reader_ok = lambda: controller.session.reader_ok
    worker = OutboxWorker(services.outbox, services.catalogue, lambda: datetime.now().astimezone(),
                          on_result=controller.on_loan_result)
    services.worker = worker
    worker.start()
    controller.connect(
        card_reader=services.reader, card_auth=services.card, catalogue=services.catalogue,
        resolver=services.resolver, staff=staff, staff_backend=backend,
        journal=_RefusingJournal(services.store_problem) if services.store_problem else services.outbox,
        leds=hw.leds, sounds=hw.sounds, receipts=hw.printer, wake_outbox=worker.notify,
    )
    from kiosk.core.account import AccountView

    controller.account = AccountView(new_key=_new_txn_id)     # My account, after any sign-in
    desk = build_return_desk(config)
    if desk is not None:
        controller.returns = desk

        controller.loop.call_every(1.0, lambda: controller.set_catalogue_away(worker.status.failures > 0))
        if desk.settings.station:
            controller.loop.call_soon(controller.open_return_desk)
    if services.store_problem:
        controller.post(SetOutOfService(True))      # found after the first frame: the key check
    counter = services.settings.counter
    if counter is not None and counter.keyboard_device is not None and hasattr(controller, "keyboard"):
        from kiosk.hardware.hid_gadget import HidKeyboard

        controller.keyboard = HidKeyboard(counter.keyboard_device, counter.keyboard_layout)
    if hw.scanner is not None:
        hw.scanner.start(lambda code: controller.post(Barcode(code)))
    if services.settings.hardware.reset_button is not None:
        from kiosk.hardware.reset_button import build_reset_button

        button = build_reset_button(services.settings.hardware, lambda: controller.post(StaffOpen()))
        if button is not None:
            services.extras.append(button)
    if services.demo is not None:
        services.demo.attach_controller(controller)
    with services.handoff:
        services.controller = controller
        pending, services.pending_switches = services.pending_switches, []
    if services.effective is not None and services.applier is None:
        start_management(services)
    if services.metrics is not None:
        attach_metrics(services.metrics, services, controller)
    for switch in pending:
        switch(controller)
    notifier = services.notifier
    notifier.ready()
    if services.effective is not None and services.effective.bundle is not None:
        mark_layer_good(services, services.effective.bundle.digest)    # the layer this start runs on
    if services.effective is not None:
        from kiosk.release.status import mark_ready

        mark_ready(services.data_dir)       # the release guard keeps a new release once it gets here
    if notifier.ping_interval():
        controller.loop.call_every(notifier.ping_interval(), notifier.watchdog)


def build_controller(services: Services, view: View, loop: Loop) -> Controller:
    """Wire the session, the outbox worker and every backend into one controller."""
    controller = first_controller(services, view, loop)
    connect_controller(services, controller)
    return controller


def mark_layer_good(services: Services, digest: str | None) -> None:
    """The app is READY (or switched live) on the signed layer `digest`: it becomes the last
    known good one, unless another layer has been stored since."""
    if digest is None:
        return
    from kiosk.config.layer_store import SignedLayerStore

    try:
        if SignedLayerStore(services.data_dir).mark_good(digest):
            log_event(log, "config.layer_good", digest=digest[:16])
    except (StoreError, OSError) as e:
        log_event(log, "config.layer_good_not_stored", level=logging.ERROR, error=type(e).__name__)


def with_controller(services: Services, switch: Callable[[Controller], None]) -> None:
    """Run `switch` with the controller now, or as soon as connect_controller has it: central
    IT's endpoint and polling start before the first frame, so a push may come first."""
    with services.handoff:
        if services.controller is None:
            services.pending_switches.append(switch)
            return
    switch(services.controller)


def start_management(services: Services) -> None:
    """Central IT's signed configuration: the HTTPS endpoint and/or polling, as configured.
    Started before anything a pushed layer can change (fonts, backends, hardware) is built,
    so a fix can always be pushed. A new layer takes effect at the next idle moment: live
    keys in place, others by a restart (systemd starts the kiosk again)."""
    from kiosk.config.applier import ConfigApplier
    from kiosk.config.load import identity_problem
    from kiosk.store.audit import Audit
    from kiosk.sync.config_poll import ConfigPoller

    assert services.effective is not None
    if services.audit is None:
        services.audit = Audit(services.store, lambda: datetime.now().astimezone(), logging.getLogger("kiosk.audit"))

    def on_new_config(new_config: dict, restart_needed: bool) -> None:
        digest = services.applier.digest if services.applier else None     # the layer just stored

        def switch(controller: Controller) -> None:
            if restart_needed:
                controller.when_idle(lambda: services.request_exit("restart"))
            else:
                def live() -> None:
                    controller.apply_settings(session_settings(new_config))
                    mark_layer_good(services, digest)
                controller.when_idle(live)

        with_controller(services, switch)

    applier = ConfigApplier(services.effective, on_new_config=on_new_config, audit=services.audit)
    services.applier = applier
    state = services.effective.state
    if state is not None and state.rolled_back_at_start and state.last_rollback is not None:
        rb = state.last_rollback
        from kiosk.store.audit import log_and_audit

        log_and_audit(log, services.audit, "central_it", "config.rolled_back", failure="config.audit_failed",
                      reason=rb.reason, from_version=rb.from_version, to_version=rb.to_version)
    config = services.config
    started = time.monotonic()

    def health() -> dict:
        from kiosk.sync.management_server import health_document

        outbox, backend, controller = services.outbox, services.staff_backend, services.controller
        stats = outbox.stats() if outbox is not None else None
        worker = services.worker.status if services.worker else None
        doc = health_document(
            reader_ok=controller.session.reader_ok if services.reader is not None and controller else None,
            scanner_ok=None, catalogue_ok=None if worker is None else worker.failures == 0,
            outbox_pending=stats.pending if stats else 0, oldest_pending=stats.oldest_created if stats else None,
            last_sync=stats.last_success if stats else None,
            app_version=__version__, config_version=applier.version, uptime_s=time.monotonic() - started,
            now=datetime.now().astimezone())
        doc = with_outbox_check(doc, stats.damaged if stats else 0, services.store_problem
                                or (backend.store_problem if backend is not None else ""))
        doc.update(applier.layer_state().to_json())
        from kiosk.release.status import release_status

        doc["release"] = release_status().as_dict()
        doc["ready"] = controller is not None and services.worker is not None
        return doc

    problem = identity_problem(config)
    if problem:
        log_event(log, "management.refused", level=logging.CRITICAL, reason=problem)
        return
    if config["management"]["enabled"]:
        # Imported only here: aiohttp and prometheus_client cost a kiosk without the endpoint nothing.
        from kiosk.sync.management_server import ManagementServer, settings_from_config

        metrics = services.metrics = build_metrics(services)
        server = ManagementServer(settings_from_config(config), apply=applier.apply, health=health,
                                  status=applier.status, metrics=metrics.render, audit=services.audit)
        server.start()
        services.extras.append(server)
    if config["management"]["poll_url"]:
        poller = ConfigPoller.from_config(config, applier.apply, known_digest=applier.digest)
        poller.start()
        services.extras.append(poller)
    if config["management"]["release_url"]:
        start_release_poll(services)


def start_release_poll(services: Services) -> None:
    """Central IT's signed releases, over the polling channel: a verified release is staged,
    then the kiosk restarts at the next idle moment and the unit's guard installs it."""
    from kiosk.release.fetch import ReleaseFetcher
    from kiosk.sync.config_poll import ConfigPoller

    from kiosk.config.load import ConfigError

    config = services.config
    try:
        fetcher = ReleaseFetcher(config, on_staged=lambda _v: with_controller(
            services, lambda controller: controller.when_idle(lambda: services.request_exit("restart"))))
    except ConfigError as e:                # an unreadable release key: serve on, take no releases
        log_event(log, "release.poll_off", level=logging.ERROR, reason=str(e))
        return
    poller = ConfigPoller(fetcher.url, fetcher.apply, interval=float(config["management"]["poll_interval"]),
                          ca_bundle=config["management"]["poll_ca"])
    poller.start()
    services.extras.append(poller)


def build_metrics(services: Services) -> KioskMetrics:
    """/metrics, read from the services at scrape time; the controller's events and effects
    feed it once it exists (attach_metrics). Built with the management endpoint, before the
    controller, the hardware and the backends, so it reads them lazily."""
    from kiosk.shell.metrics import KioskMetrics

    def layer_rollbacks() -> tuple[int, float | None]:
        """Both rollback gauges from one read of the layer state (once per scrape)."""
        state = services.applier.layer_state() if services.applier is not None else None
        if state is None or state.last_rollback is None:
            return 0, None
        try:
            at = datetime.fromisoformat(state.last_rollback.at).timestamp()
        except ValueError:
            at = None
        return int(state.rolled_back_at_start), at

    def release_rollback() -> float | None:
        from kiosk.release.status import release_status

        last = release_status().last_rollback
        return datetime.fromisoformat(last["at"]).timestamp() if last else None

    def scanner_ok() -> bool | None:
        return services.scanner.connected.is_set() if services.scanner is not None else None

    return KioskMetrics(
        kiosk_id=services.config["kiosk"]["id"], group=services.config["kiosk"]["group"],
        outbox_stats=lambda: services.outbox.stats() if services.outbox is not None else None,
        config_version=lambda: services.applier.version if services.applier is not None else None,
        scanner_ok=scanner_ok, layer_rollbacks=layer_rollbacks, release_rollback=release_rollback)


def attach_metrics(metrics: KioskMetrics, services: Services, controller: Controller) -> None:
    """The controller's events and effects feed /metrics from now on."""
    if services.reader is not None:                 # the reader's first event may have come already
        metrics.reader_ok = controller.session.reader_ok
        metrics.pcscd_ok = True if controller.session.reader_ok else None
    controller.observers.append(metrics.observe)


def with_outbox_check(doc: dict, damaged: int, store_problem: str) -> dict:
    """/health: damaged rows and an unusable journal are an outbox problem (the catalogue
    may be fine), so a monitor pages the right people."""
    doc["checks"]["outbox"] = damaged == 0 and not store_problem
    doc["outbox_damaged"] = damaged
    doc["store_problem"] = store_problem or None
    return doc


def kivy_environment(config: dict, demo: bool) -> None:
    """Kivy reads these when it is imported: hardening for kiosks, quiet files."""
    data_dir = Path(config["kiosk"]["data_dir"]).expanduser()
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    os.environ.setdefault("KIVY_HOME", str(data_dir / "kivy"))
    # The interrupt clock wakes the UI loop as soon as a worker posts (a scan's row is
    # drawn sooner) instead of at the next frame tick.
    os.environ.setdefault("KCFG_KIVY_KIVY_CLOCK", "interrupt")
    sdl_without_signal_handlers()
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and demo:
        os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    if config["ui"]["kiosk_mode"]:
        os.environ.setdefault("KCFG_KIVY_EXIT_ON_ESCAPE", "0")
        os.environ.setdefault("KCFG_GRAPHICS_SHOW_CURSOR", "0")
        os.environ.setdefault("KCFG_GRAPHICS_BORDERLESS", "1")
        os.environ.setdefault("KCFG_GRAPHICS_ALLOW_SCREENSAVER", "0")
    if config["ui"]["fullscreen"]:
        os.environ.setdefault("KCFG_GRAPHICS_FULLSCREEN", "auto")


def make_app(config: dict, demo: bool = False, demo_panel: bool = False,
             effective: EffectiveConfig | None = None,
             exit_when_ready: bool = False) -> tuple[KioskApp, Services]:
    """The kiosk app as it runs, and its services (close them after `app.run()`).

    Only the store is opened before the first frame; the backends are built and
    connected just after it is drawn, and events wait for them meanwhile. The demo's
    control panel lists the demo cards, so with it the backends come first.
    `exit_when_ready` stops the app once idle is drawn and the backends are connected:
    a smoke test of an installation that needs no one at the screen."""
    kivy_environment(config, demo)
    services = open_services(config)
    services.effective = effective
    backends = None
    try:
        if effective is not None:
            start_management(services)          # before fonts and backends: a fix can always be pushed
        if demo_panel:
            build_backends(services, demo)
        else:
            services.backends = backends = BackgroundBackends(services, demo)
        from kiosk.screens.app import KioskApp

        def first_screen_controller(view: View, loop: Loop) -> Controller:
            controller = first_controller(services, view, loop)
            if backends is not None:
                backends.go()                   # the store is read: build the rest beside the first frame
            return controller

        def after_first_frame(controller: Controller) -> None:
            if backends is not None:
                backends.wait()
            connect_controller(services, controller)
            if exit_when_ready:
                from kivy.clock import Clock

                log_event(log, "kiosk.ready_exit")
                Clock.schedule_once(lambda _dt: app.stop(), 0)

        app = KioskApp(
            build_controller=first_screen_controller,
            after_first_frame=after_first_frame,
            demo_controls=services.demo if demo_panel else None,
            ui_config=config["ui"],
            library_name=config["kiosk"]["library_name"],
            keyboard_wedge=config["hardware"]["scanner"] == "wedge",
        )
    except BaseException:
        services.close()
        raise
    services.stop_app = app.stop
    return app, services


class BackgroundBackends:
    """Builds the backends on a thread of their own while Kivy starts and draws the first
    frame, so the kiosk is ready to serve soon after it (bench/bench_ui.py). The thread
    imports their modules at once, then waits for `go()`: the first screen reads the store
    before build_backends may replace an unusable one. `wait()` (UI thread) joins it and
    raises what it raised, as if it had run there."""

    def __init__(self, services: Services, demo: bool) -> None:
        import threading

        self._go = threading.Event()
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, args=(services, demo), name="backends", daemon=True)
        self._thread.start()

    def _run(self, services: Services, demo: bool) -> None:
        try:
            _prefetch(demo)
            self._go.wait()
            if not self._cancelled:
                build_backends(services, demo)
        except BaseException as e:              # noqa: BLE001 - handed to the UI thread by wait()
            self._error = e

    def go(self) -> None:
        self._go.set()

    def wait(self, reraise: bool = True) -> None:
        """Joins the thread; without `reraise` (closing) backends not yet begun are not built."""
        if not reraise and not self._go.is_set():
            self._cancelled = True
        self._go.set()
        self._thread.join()
        if self._error is not None and reraise:
            raise self._error


def _prefetch(demo: bool) -> None:
    """The modules build_backends and connect_controller need (imports are thread-safe)."""
    import kiosk.core.patron_resolver  # noqa: F401
    import kiosk.core.staff  # noqa: F401
    import kiosk.shell.staff_backend  # noqa: F401
    import kiosk.store.audit  # noqa: F401
    import kiosk.store.key_guard  # noqa: F401
    import kiosk.store.link_cache  # noqa: F401
    import kiosk.store.outbox  # noqa: F401
    import kiosk.sync.outbox_worker  # noqa: F401
    if demo:
        import kiosk.shell.demo  # noqa: F401


def run_app(config: dict | EffectiveConfig, demo: bool, exit_when_ready: bool = False) -> int:
    """The app until it ends: by SIGTERM (SIGINT outside kiosk mode), staff restart or shut down,
    or a new configuration. A staff shutdown leaves a request for the unit's root helper."""
    effective = None if isinstance(config, dict) else config
    config = effective.config if effective else config
    setup_logging(config["logging"]["level"], config["logging"]["format"])
    app, services = make_app(config, demo=demo, demo_panel=demo, effective=effective,
                             exit_when_ready=exit_when_ready)
    clear_power_request(services.data_dir)

    def stop_from_signal() -> None:
        from kivy.clock import Clock

        Clock.schedule_once(lambda _dt: services.request_exit("stop"), 0)

    install_stop_signals(stop_from_signal, kiosk_mode=bool(config["ui"]["kiosk_mode"]))
    try:
        app.run()
    finally:
        services.close()
    after_exit(services)
    return 0


def after_exit(services: Services) -> None:
    """Once the app has closed: what staff asked of systemd, if anything, for the root helper."""
    if services.exit_how is not None and request_power(services.data_dir, services.exit_how):
        log_event(log, "kiosk.exit_for_power", how=services.exit_how)
