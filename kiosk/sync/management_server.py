"""Central IT's HTTPS endpoint on the kiosk: PUT /config, GET /health, GET /status.

The kiosk is a public machine on a library network, so the endpoint assumes hostile
neighbours: TLS 1.2+ only, optionally client certificates from central IT's CA
(mTLS), the TLS handshake done on the connection's own thread with a timeout (a slow
client cannot stall the accept loop), a cap on concurrent connections, a per-address
token bucket (429), and a body limit checked on Content-Length before any byte of
the body is read (413). None of this is what makes a configuration trusted: that is
the Ed25519 signature checked by the injected `apply`. The endpoint only moves bytes
and maps outcomes to status codes; it knows nothing of the kiosk beyond the three
callables it is given.

Every request gets an HTTP answer, however it is malformed: numbers on the wire are
ASCII digits only (`str.isdigit()` also takes "²", which `int()` then refuses), and
nothing in request parsing may raise past the handler (tests/test_fuzz_management.py).
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from kiosk.config.load import ConfigError
from kiosk.logs import log_event
from kiosk.store.audit import AuditTrail, log_and_audit
from kiosk.worker_thread import WorkerThread

log = logging.getLogger("kiosk.management")

# HTTP status for each refusal code of ConfigApplier.apply (kiosk/signed_config.py, config_applier.py).
REFUSAL_STATUS = {
    "malformed": 400, "unsigned": 403, "wrong_key": 403, "bad_signature": 403, "too_large": 413,
    "replayed": 409, "older_version": 409, "expired": 422, "other_target": 422, "schema": 422,
    "protected_key": 422, "unusable": 422, "storage_failed": 503,
}


_LINGER_BYTES = 1 << 20
_MAX_LENGTH_DIGITS = 15                 # more is "too large" whatever it says, and int() stays cheap
_LINGER_SECONDS = 1.0


def content_length(values: list[str] | None) -> int | None:
    """The body length the headers give, or None when it is not one plain number.

    ASCII digits only ("²" and "١٢" are digits to `str.isdigit()`, not on the wire);
    repeated headers must agree (a proxy and this server must not read different
    bodies). A number too long to matter reads as one past any limit."""
    if not values:
        return None
    texts = {v.strip(" \t") for v in values}
    if len(texts) != 1:
        return None
    text = texts.pop()
    if not text or not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_LENGTH_DIGITS else 10 ** _MAX_LENGTH_DIGITS


class Outcome(Protocol):
    applied: bool
    code: str

    def to_json(self) -> dict: ...


@dataclass(frozen=True)
class ServerSettings:
    tls_cert: str
    tls_key: str
    bind: str = "127.0.0.1"
    port: int = 8443                    # 0: any free port (tests)
    client_ca: str = ""
    require_client_cert: bool = True
    max_body_bytes: int = 65536
    rate_per_minute: int = 30
    max_connections: int = 16
    timeout: float = 10.0               # per connection: handshake, headers and body


def settings_from_config(config: dict) -> ServerSettings:
    """The endpoint's settings; ConfigError names the key missing for the endpoint to start."""
    m = config["management"]
    for key in ("tls_cert", "tls_key"):
        if not m[key]:
            raise ConfigError("configuration", f"management.{key}", "is needed when management.enabled is true")
    if not m["trusted_keys"]:
        raise ConfigError("configuration", "management.trusted_keys",
                          "is needed when management.enabled is true (no key: every bundle would be refused)")
    if m["require_client_cert"] and not m["client_ca"]:
        raise ConfigError("configuration", "management.client_ca", "is needed when require_client_cert is true")
    return ServerSettings(tls_cert=m["tls_cert"], tls_key=m["tls_key"], bind=m["bind"], port=m["port"],
                          client_ca=m["client_ca"], require_client_cert=m["require_client_cert"],
                          max_body_bytes=m["max_body_bytes"], rate_per_minute=m["rate_per_minute"])


def tls_context(settings: ServerSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.client_ca:
            ctx.load_verify_locations(cafile=settings.client_ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("configuration", "management.tls_cert",
                          f"TLS certificate, key or client CA cannot be loaded ({e})") from None
    if settings.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif settings.client_ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class TokenBuckets:
    """Per-address token buckets: `rate_per_minute` tokens, refilled evenly, burst = rate.

    At most `max_clients` addresses are tracked; when full, the fullest bucket (an
    address that has been quiet) is forgotten, which only ever gives it a fresh bucket.
    """

    def __init__(self, rate_per_minute: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 1024) -> None:
        self._capacity = float(rate_per_minute)
        self._per_second = rate_per_minute / 60.0
        self._clock = clock
        self._max = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}     # address -> (tokens, at)
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(client, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - at) * self._per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            if client not in self._buckets and len(self._buckets) >= self._max:
                quiet = max(self._buckets, key=lambda c: self._buckets[c][0] + (now - self._buckets[c][1]))
                del self._buckets[quiet]
            self._buckets[client] = (tokens, now)
            return allowed


def health_document(*, reader_ok: bool | None, scanner_ok: bool | None, catalogue_ok: bool | None,
                    outbox_pending: int, oldest_pending: datetime | None, last_sync: datetime | None,
                    app_version: str, config_version: int | None, uptime_s: float, now: datetime,
                    max_pending_age_s: float = 4 * 3600) -> dict:
    """What GET /health reports, from plain values. A check is True (fine), False (alert)
    or None (not fitted / not known yet). No patron data: counts and times only."""
    age = None if oldest_pending is None else max(0.0, (now - oldest_pending).total_seconds())
    return {
        "checks": {"reader": reader_ok, "scanner": scanner_ok, "catalogue": catalogue_ok,
                   "outbox_age": None if age is None else age <= max_pending_age_s},
        "outbox_pending": outbox_pending,
        "oldest_pending": None if oldest_pending is None else oldest_pending.isoformat(timespec="seconds"),
        "oldest_pending_age_s": None if age is None else round(age),
        "last_sync": None if last_sync is None else last_sync.isoformat(timespec="seconds"),
        "app_version": app_version,
        "config_version": config_version,
        "uptime_s": round(uptime_s),
    }


def health_response(health: Callable[[], dict]) -> tuple[int, dict]:
    """200 when no check is False, else 503, so a monitor can alert on the status alone."""
    try:
        doc = dict(health())
    except Exception as e:                              # noqa: BLE001 - a broken probe is itself unhealthy
        return 503, {"status": "error", "error": type(e).__name__}
    checks = doc.get("checks") or {}
    failing = sorted(k for k, v in checks.items() if v is False)
    doc["status"] = "degraded" if failing else "ok"
    doc["failing"] = failing
    return (503 if failing else 200), doc


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: ManagementServer

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)     # HTTPServer's would do a reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.owner._slots.acquire(blocking=False):
            self.shutdown_request(request)          # too many at once: drop, do not queue
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.owner._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.owner.settings.timeout)
        try:
            tls = self.owner._ssl.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log_event(log, "management.tls_refused", level=logging.DEBUG, client=client_address[0],
                      error=type(e).__name__)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "kiosk-management"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:    # noqa: A002 - BaseHTTPRequestHandler's name
        pass                                        # events are logged by name below, not as raw lines

    def _send(self, status: int, body: dict, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _refuse(self, status: int, code: str, reason: str, extra: dict[str, str] | None = None) -> None:
        self._send(status, {"result": "refused", "code": code, "reason": reason}, extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, oversized headers) as JSON too."""
        self.close_connection = True
        self.request_version = "HTTP/1.1"           # never answer HTTP/0.9 style (no status line)
        try:
            self._refuse(code, "bad_request", message or "bad request")
        except (OSError, ssl.SSLError):
            pass

    def parse_request(self) -> bool:
        """A two-word request line ("GET /x") is HTTP/0.9 to http.server, which would answer
        with a bare body and no status line: refuse it as a bad request instead."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 request lines are not accepted")
            return False
        return True

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` (curl sends it): refuse an oversized body before it is sent."""
        length = content_length(self.headers.get_all("Content-Length"))
        if self.command == "PUT" and length is not None and self._too_large(length, body_coming=False):
            return False
        return super().handle_expect_100()

    def _too_large(self, length: int, body_coming: bool) -> bool:
        owner = self.server.owner
        limit = owner.settings.max_body_bytes
        if length <= limit:
            return False
        owner._audit_event("config.refused", code="too_large", reason=f"{length} bytes; at most {limit}",
                           source="push", client=self._client())
        self._refuse(413, "too_large", f"{length} bytes; at most {limit} are accepted")
        if body_coming:
            self._discard_unread(min(length, _LINGER_BYTES))
        return True

    def _discard_unread(self, budget: int) -> None:
        """Closing with unread bytes makes the kernel send a reset, and a client still
        sending its body would lose our answer. So: stop writing, then read and drop at
        most `budget` bytes for at most a second (never buffered, never parsed)."""
        conn = self.connection
        deadline = time.monotonic() + _LINGER_SECONDS
        try:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(0.2)
            while budget > 0 and time.monotonic() < deadline:
                chunk = conn.recv(min(65536, budget))
                if not chunk:
                    break
                budget -= len(chunk)
        except (OSError, ValueError):
            pass

    def _client(self) -> str:
        client = self.client_address[0]
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return f"{client} ({value[:64]})"
        return client

    def _admit(self) -> bool:
        owner = self.server.owner
        address = self.client_address[0]
        if owner._buckets.allow(address):
            owner._limited.discard(address)
            return True
        if address not in owner._limited:               # audit once per burst, not once per request
            if len(owner._limited) > 1024:
                owner._limited.clear()
            owner._limited.add(address)
            owner._audit_event("management.rate_limited", client=self._client())
        self._refuse(429, "rate_limited", "too many requests; slow down",
                     {"Retry-After": str(max(1, round(60 / owner.settings.rate_per_minute)))})
        return False

    def _path(self) -> str:
        try:
            return urlsplit(self.path).path
        except ValueError:                  # "http://[": urlsplit reads a broken IPv6 host; no such resource
            return self.path

    # -- methods ----------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._admit():
            return
        owner = self.server.owner
        path = self._path()
        if path == "/health":
            status, doc = health_response(owner.health)
            self._send(status, doc)
        elif path == "/status":
            _, doc = health_response(owner.health)
            try:
                details = dict(owner.status())
            except Exception as e:                      # noqa: BLE001
                details = {"status_error": type(e).__name__}
            self._send(200, {"health": doc, **details})
        elif path == "/config":
            self._refuse(405, "method_not_allowed", "use PUT to send a bundle", {"Allow": "PUT"})
        else:
            self._refuse(404, "not_found", "no such resource; try /health, /status or PUT /config")

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        if not self._admit():
            return
        if self._path() != "/config":
            self._refuse(404 if self._path() not in ("/health", "/status") else 405, "not_found",
                         "PUT goes to /config")
            return
        owner = self.server.owner
        if "Transfer-Encoding" in self.headers:
            self._refuse(411, "length_required", "send the bundle with a Content-Length, not chunked")
            self._discard_unread(owner.settings.max_body_bytes)
            return
        length_texts = self.headers.get_all("Content-Length")
        if not length_texts:
            self._refuse(411, "length_required", "Content-Length is required")
            return
        length = content_length(length_texts)
        if length is None:
            self._refuse(400, "malformed", "Content-Length is not a number")
            return
        if self._too_large(length, body_coming=True):
            return
        body = self.rfile.read(length)
        if len(body) != length:
            return                                       # the client went away mid-body; nothing to answer
        outcome = owner.apply(body, "push", self._client())
        status = 200 if outcome.applied else REFUSAL_STATUS.get(outcome.code, 422)
        self._send(status, outcome.to_json())

    def _not_allowed(self) -> None:
        if self._admit():
            self._refuse(405, "method_not_allowed", "use GET /health, GET /status or PUT /config",
                         {"Allow": "GET, HEAD, PUT"})

    do_POST = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


class ManagementServer(WorkerThread):
    """The endpoint on its own thread. `apply(raw, source, client)` is ConfigApplier.apply;
    `health()` returns a dict with "checks" (see health_document); `status()` extra details."""

    thread_name = "management-server"

    def __init__(
        self,
        settings: ServerSettings,
        *,
        apply: Callable[[bytes, str, str], Outcome],
        health: Callable[[], dict],
        status: Callable[[], dict] = dict,
        audit: AuditTrail | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.apply = apply
        self.health = health
        self.status = status
        self._audit = audit
        self._ssl = tls_context(settings)
        self._buckets = TokenBuckets(settings.rate_per_minute, clock)
        self._limited: set[str] = set()
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._httpd: _Server | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return self._httpd.server_address[1]

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("already started")
        cls = _Server6 if ":" in self.settings.bind else _Server
        httpd = cls((self.settings.bind, self.settings.port), _Handler, bind_and_activate=False)
        httpd.owner = self
        try:
            httpd.server_bind()
            httpd.server_activate()
        except OSError:
            httpd.server_close()
            raise
        self._httpd = httpd
        self._start_thread()
        log_event(log, "management.listening", bind=self.settings.bind, port=self.port,
                  mtls=self.settings.require_client_cert)

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._stop_thread(5)
        httpd.server_close()
        self._httpd = None

    def _run(self) -> None:
        assert self._httpd is not None, "started with a bound server"
        self._httpd.serve_forever(poll_interval=0.1)

    def _wake(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()          # returns once serve_forever has

    close = stop

    def _audit_event(self, action: str, **fields: Any) -> None:
        log_and_audit(log, self._audit, "central_it", action, failure="management.audit_failed",
                      level=logging.WARNING, **fields)
