"""Fixtures for central IT's signed configuration push, the management endpoint and polling.

Everything is real: a test CA made here (server certificate for 127.0.0.1, client
certificates from it and from a rogue CA), Ed25519 signing keys, a site file on
disk, the kiosk store and audit trail, and the HTTPS endpoint on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.config.applier import ConfigApplier, EffectiveConfig, load_effective_config
from kiosk.config.signed import sign_bundle
from kiosk.shell.metrics import KioskMetrics
from kiosk.store.audit import Audit
from kiosk.store.database import Store, open_store
from kiosk.store.outbox import OutboxStats
from kiosk.sync.management_server import ManagementServer, ServerSettings

JST = timezone(timedelta(hours=9))
FLEET_NOW = datetime(2025, 4, 1, 9, 0, tzinfo=JST)


# -- PKI ----------------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: Any) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _ca(cn: str) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(cn: str, ca_key: Any, ca_cert: x509.Certificate, *, server: bool) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                         x509.DNSName("localhost")]), critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


@dataclass(frozen=True)
class FleetPki:
    ca: Path                  # issues the kiosk's server certificate and central IT's client certificates
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path          # a client certificate from another CA
    rogue_key: Path

    @property
    def client(self) -> tuple[str, str]:
        return str(self.client_cert), str(self.client_key)


@pytest.fixture(scope="session")
def fleet_pki(tmp_path_factory: pytest.TempPathFactory) -> FleetPki:
    d = tmp_path_factory.mktemp("fleet-pki")
    ca_key, ca = _ca("Test City Central IT CA")
    rogue_ca_key, rogue_ca = _ca("Somebody Else CA")
    files: dict[str, Path] = {}
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for label, (key, cert) in {
        "server": _leaf("kiosk-01.library.test", ca_key, ca, server=True),
        "client": _leaf("central-it-push", ca_key, ca, server=False),
        "rogue": _leaf("central-it-push", rogue_ca_key, rogue_ca, server=False),
    }.items():
        files[label + "_cert"] = d / f"{label}.pem"
        files[label + "_key"] = d / f"{label}.key"
        files[label + "_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files[label + "_key"], key)
    return FleetPki(ca=d / "ca.pem", **files)


# -- signing keys -------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKeys:
    private: Ed25519PrivateKey
    public_pem: Path
    other: Ed25519PrivateKey          # a key no kiosk trusts
    private_pem: Path


@pytest.fixture(scope="session")
def fleet_keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    d = tmp_path_factory.mktemp("fleet-keys")
    key = Ed25519PrivateKey.generate()
    (d / "central.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    _write_key(d / "central.key", key)
    return SigningKeys(private=key, public_pem=d / "central.pub", other=Ed25519PrivateKey.generate(),
                       private_pem=d / "central.key")


def make_bundle(key: Ed25519PrivateKey, layer: dict, version: int, *, now: datetime = FLEET_NOW,
                valid: timedelta = timedelta(days=7), target_kiosk: str | None = None,
                target_group: str | None = None) -> bytes:
    return sign_bundle(layer, key, version, issued_at=now - timedelta(hours=1), expires_at=now + valid,
                       target_kiosk=target_kiosk, target_group=target_group)


# -- a kiosk --------------------------------------------------------------------------------

class FleetClock:
    def __init__(self, now: datetime = FLEET_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FleetKiosk:
    """A kiosk's configuration side, built from a real site file and data dir."""

    site: Path
    data_dir: Path
    effective: EffectiveConfig
    store: Store
    applier: ConfigApplier
    clock: FleetClock
    switched: list[tuple[dict, bool]] = field(default_factory=list)
    server: ManagementServer | None = None
    health: dict = field(default_factory=lambda: {"checks": {"reader": True, "catalogue": True}})
    # what /metrics reports of the outbox (a test sets it); `metrics` observes events like the kiosk's
    outbox: OutboxStats = field(default_factory=lambda: OutboxStats(pending=0, in_flight=0, oldest_created=None,
                                                                    last_success=None, conflicts=0))
    metrics: KioskMetrics | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.port}"

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def audit(self) -> list[dict]:
        return Audit(self.store, self.clock).entries()

    def actions(self) -> list[tuple[str, dict]]:
        """Accountable actions and the recent anonymous refusals, in recorded order."""
        return [(e["action"], e["fields"]) for e in Audit(self.store, self.clock).timeline()]

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.store.close()


def site_text(data_dir: Path, keys: SigningKeys, pki: FleetPki | None, *, kiosk_id: str = "kiosk-01",
              group: str = "chuo", require_client_cert: bool = True, extra: str = "") -> str:
    text = f"""
[kiosk]
id = "{kiosk_id}"
group = "{group}"
data_dir = "{data_dir}"
library_name = "Test City Library"

[timeouts]
scanning = 120

[management]
enabled = true
trusted_keys = ["{keys.public_pem}"]
require_client_cert = {str(require_client_cert).lower()}
"""
    if pki is not None:
        text += f"""tls_cert = "{pki.server_cert}"
tls_key = "{pki.server_key}"
client_ca = "{pki.ca}"
"""
    return text + extra



@contextmanager
def running_kiosk_with_management(tmp_path: Path, keys: SigningKeys, pki: FleetPki,
                                  management: str = "") -> Iterator[tuple[Any, Any, Any, Any, str]]:
    """A kiosk built by the launcher (demo catalogue, no card reader) with central IT's endpoint on
    a free loopback port, driven by a manual loop: yields (services, controller, view, loop, url).
    `management` adds lines to the site file's [management] table."""
    from kiosk.shell.launcher import build_controller, build_services, load_site
    from kiosk_testing.manual_loop import ManualLoop, RecordingView

    port = free_port()
    site = tmp_path / "kiosk.toml"
    text = site_text(tmp_path / "data", keys, pki)
    text = text.replace("[management]\n", f"[management]\nport = {port}\n{management}")
    text += (f"\n[card]\nbackend = 'none'\n\n[catalogue.local]\npath = '{tmp_path / 'ils.json'}'\n"
             "seed_demo = true\n\n[loans]\nlibrary_card_password = false\n")
    site.write_text(text, encoding="utf-8")
    effective = load_site(str(site))
    services = build_services(effective.config)
    services.effective = effective
    view, loop = RecordingView(), ManualLoop()
    controller = build_controller(services, view, loop)
    try:
        controller.start()
        loop.run_pending()
        yield services, controller, view, loop, f"https://127.0.0.1:{port}"
    finally:
        controller.stop()
        services.close()


@pytest.fixture
def fleet_kiosk(tmp_path: Path, fleet_keys: SigningKeys, fleet_pki: FleetPki) -> Iterator[Callable[..., FleetKiosk]]:
    """Factory: fleet_kiosk(serve=True, require_client_cert=True, rate=600, max_body=65536, ...)."""
    made: list[FleetKiosk] = []

    def build(*, name: str = "k1", kiosk_id: str = "kiosk-01", group: str = "chuo", serve: bool = True,
              require_client_cert: bool = True, rate: int = 600, max_body: int = 65536,
              extra: str = "", clock: FleetClock | None = None, site: Path | None = None,
              timeout: float = 5.0) -> FleetKiosk:
        root = tmp_path / name
        data_dir = root / "data"
        if site is None:
            root.mkdir(exist_ok=True)
            site = root / "kiosk.toml"
            site.write_text(site_text(data_dir, fleet_keys, fleet_pki, kiosk_id=kiosk_id, group=group,
                                      require_client_cert=require_client_cert, extra=extra), encoding="utf-8")
        data_dir.mkdir(parents=True, exist_ok=True)
        effective = load_effective_config(site)
        store = open_store(data_dir / "kiosk.db")
        clock = clock or FleetClock()
        kiosk_box: list[FleetKiosk] = []
        applier = ConfigApplier(effective, lambda cfg, restart: kiosk_box[0].switched.append((cfg, restart)),
                                audit=Audit(store, clock), clock=clock,
                                max_bytes=max_body)
        kiosk = FleetKiosk(site=site, data_dir=data_dir, effective=effective, store=store, applier=applier,
                           clock=clock)
        kiosk_box.append(kiosk)
        if serve:
            m = effective.config["management"]
            settings = ServerSettings(tls_cert=m["tls_cert"], tls_key=m["tls_key"], bind="127.0.0.1", port=0,
                                      client_ca=m["client_ca"], require_client_cert=require_client_cert,
                                      max_body_bytes=max_body, rate_per_minute=rate, timeout=timeout)
            kiosk.metrics = KioskMetrics(kiosk_id=kiosk_id, group=group, outbox_stats=lambda: kiosk.outbox,
                                         config_version=lambda: applier.version,
                                         wall=lambda: datetime.now(timezone.utc))
            kiosk.server = ManagementServer(settings, apply=applier.apply, health=lambda: kiosk.health,
                                            status=applier.status, metrics=kiosk.metrics.render,
                                            audit=Audit(store, clock))
            kiosk.server.start()
        made.append(kiosk)
        return kiosk

    yield build
    for k in made:
        k.close()


# -- clients ------------------------------------------------------------------------------

def https(pki: FleetPki, *, client: bool = True) -> requests.Session:
    s = requests.Session()
    s.trust_env = False                 # else REQUESTS_CA_BUNDLE from the environment beats s.verify
    s.verify = str(pki.ca)
    if client:
        s.cert = pki.client
    return s


def tls_client_context(pki: FleetPki, *, client: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if client:
        ctx.load_cert_chain(*pki.client)
    return ctx


def raw_exchange(port: int, pki: FleetPki, data: bytes, *, timeout: float = 5.0,
                 read_limit: int = 1 << 20) -> bytes:
    """Send raw bytes over TLS, half-close, return everything the server answers."""
    ctx = tls_client_context(pki)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            try:
                tls.sendall(data)
            except OSError:
                pass
            chunks = []
            while sum(map(len, chunks)) < read_limit:
                try:
                    chunk = tls.recv(65536)
                except (OSError, ssl.SSLError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)


# -- a bundle server for polling ----------------------------------------------------------

class BundleServer:
    """central IT's web server, over HTTPS with the test CA: serves `body` at /bundle.json
    with an ETag, answers If-None-Match with 304, counts requests; `status` forces a code."""

    def __init__(self, pki: FleetPki) -> None:
        self.body: bytes | None = None
        self.status: int | None = None
        self.etag = True
        self.requests: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(dict(self.headers))
                body = owner.body
                import hashlib

                tag = None if body is None else '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                if owner.status is not None:
                    self.send_response(owner.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if owner.etag and self.headers.get("If-None-Match") == tag:
                    self.send_response(304)
                    self.send_header("ETag", tag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if owner.etag:
                    self.send_header("ETag", tag)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._httpd.server_address[1]}/bundle.json"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def fleet_bundle_server(fleet_pki: FleetPki) -> Iterator[BundleServer]:
    server = BundleServer(fleet_pki)
    yield server
    server.close()


def free_port() -> int:
    """A port nothing listens on (bound then released; connecting gets 'connection refused')."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
