"""Central IT's HTTPS endpoint on the kiosk: PUT /config, GET /health, GET /status, GET /metrics.

The kiosk is a public machine on a library network, so the endpoint assumes hostile
neighbours. It is aiohttp's HTTP server on an asyncio loop of its own thread: an idle or
trickling connection costs a few kilobytes, not a thread, so nobody can use up the
workers. Around it, what aiohttp leaves to the application:

- a cap on connections per client address (and a larger one in all), enforced when the
  TCP connection is accepted, before any TLS work: one neighbour cannot crowd out central IT;
- TLS 1.2+ started on the accepted connection (`loop.start_tls`) with a short handshake
  budget; optionally client certificates from central IT's CA (mTLS);
- one request per connection, and a total deadline per connection (handshake, headers and
  body): a slow or silent client gets 408 and is closed, whatever it trickles;
- a per-address token bucket (429) and a body limit checked on Content-Length before any
  byte of the body is read (413).

None of this is what makes a configuration trusted: that is the Ed25519 signature checked
by the injected `apply`. The endpoint only moves bytes and maps outcomes to status codes;
it knows nothing of the kiosk beyond the callables it is given (`apply`, `health`,
`status` and, for /metrics, `metrics`), which run on a small thread pool, never on the loop.

Every request gets an HTTP answer with a JSON body, however it is malformed (aiohttp's own
parse errors included): numbers on the wire are ASCII digits only (`str.isdigit()` also
takes "²", which `int()` then refuses), and nothing in request parsing may raise past the
handler (tests/test_fuzz_management.py). Why aiohttp and not `http.server`: README.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

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


_MAX_LENGTH_DIGITS = 15                 # more is "too large" whatever it says, and int() stays cheap
_LINGER_SECONDS = 1.0                   # after an early answer, unread body bytes are drained this long


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
    max_connections: int = 256          # in all (file descriptors are finite)
    max_per_address: int = 8            # per client address, counted from accept to close
    handshake_timeout: float = 5.0      # TLS handshake budget
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



def _json(status: int, body: dict, extra: dict[str, str] | None = None) -> web.Response:
    """Every answer: JSON, never cached, and the connection closed after it."""
    resp = web.Response(status=status, body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                        content_type="application/json", charset="utf-8",
                        headers={"Cache-Control": "no-store", "Server": "kiosk-management", **(extra or {})})
    resp.force_close()
    return resp


def _refusal(status: int, code: str, reason: str, extra: dict[str, str] | None = None) -> web.Response:
    return _json(status, {"result": "refused", "code": code, "reason": reason}, extra)


def _raw_answer(status: int, phrase: str, code: str, reason: str) -> bytes:
    """An answer written straight to the transport, for a request aiohttp cannot answer
    (it never arrived whole, or aiohttp would say "HTTP/0.9" in the status line)."""
    body = json.dumps({"result": "refused", "code": code, "reason": reason}).encode()
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Cache-Control: no-store\r\nServer: kiosk-management\r\nConnection: close\r\n\r\n"
            % (status, phrase.encode(), len(body)) + body)


class _Handler(RequestHandler):
    """aiohttp's connection handler, with its own parse errors answered as JSON."""

    connection: _Connection

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already on its way")
        code = "bad_request" if status < 500 else "server_error"
        if status >= 500:
            log_event(log, "management.error", level=logging.ERROR, error=type(exc).__name__)
        resp = _refusal(status, code, (message or "bad request").split("\n", 1)[0][:200])
        return resp

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.connection.release()


class _Connection(asyncio.Protocol):
    """One accepted TCP connection, from accept to close: the per-address slot, the TLS
    upgrade under its budget, the deadline, and then aiohttp's handler."""

    def __init__(self, owner: ManagementServer) -> None:
        self.owner = owner
        self.address = ""
        self.transport: asyncio.Transport | None = None
        self.handler: _Handler | None = None
        self.answering = False              # a request reached the application: it answers
        self.deadline = 0.0                 # loop time by which the request must be in
        self._released = True
        self._timer: asyncio.TimerHandle | None = None
        self._tls: asyncio.Transport | None = None
        self._early: list[bytes] = []       # decrypted with the handshake's last flight, before the handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        self.transport = transport
        if not self.owner._take_slot(self.address):
            transport.abort()               # over the cap: dropped at once, no TLS work, no queue
            return
        self._released = False
        self.owner._connections.add(self)
        transport.pause_reading()           # until start_tls has the transport
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.owner.settings.timeout
        self._timer = loop.call_at(self.deadline, self._expired)
        self.owner._tasks.add(task := loop.create_task(self._upgrade(transport)))
        task.add_done_callback(self.owner._tasks.discard)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        budget = min(self.owner.settings.handshake_timeout, self.owner.settings.timeout)
        try:
            tls = await loop.start_tls(transport, self, self.owner._ssl, server_side=True,
                                       ssl_handshake_timeout=budget)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
            log_event(log, "management.tls_refused", level=logging.DEBUG, client=self.address,
                      error=type(e).__name__)
            transport.abort()
            self.release()
            return
        if tls is None or tls.is_closing():
            self.release()
            return
        self._tls = tls
        handler = self.owner._new_handler()
        handler.connection = self
        self.handler = handler
        tls.set_protocol(handler)
        handler.connection_made(tls)
        early, self._early = self._early, []
        for chunk in early:
            handler.data_received(chunk)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)
        elif sum(map(len, self._early)) < 1 << 16:
            self._early.append(data)

    def _expired(self) -> None:
        """The connection's time is up. A request the application has is left to finish (its
        body read is bounded by the same deadline); anything else gets 408 and is closed."""
        self._timer = None
        if self.answering:
            return
        tls = self._tls
        if tls is not None and not tls.is_closing():
            try:
                tls.write(_raw_answer(408, "Request Timeout", "timeout", "the request did not arrive in time"))
            except (OSError, RuntimeError):
                pass
            tls.close()
        elif self.transport is not None:
            self.transport.abort()
        self.release()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.release()                      # before the upgrade (after it, the handler calls release)

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._released:
            self._released = True
            self.owner._connections.discard(self)
            self.owner._free_slot(self.address)


class _Dispatch:
    """The application: one async function per resource, the blocking callables on threads."""

    def __init__(self, owner: ManagementServer) -> None:
        self.owner = owner

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = getattr(request.protocol, "connection", None)
        if connection is not None:
            connection.answering = True
        if request.version < (1, 0):
            # aiohttp would answer "HTTP/0.9 400": the answer goes out as HTTP/1.1, the connection
            # closes, and the response returned below finds it closed (aiohttp writes nothing more).
            reason = "HTTP/0.9 request lines are not accepted"
            transport = request.transport
            if transport is not None and not transport.is_closing():
                transport.write(_raw_answer(400, "Bad Request", "bad_request", reason))
                transport.close()
            return _refusal(400, "bad_request", reason)
        if not await self._admit(request):
            owner = self.owner
            return _refusal(429, "rate_limited", "too many requests; slow down",
                            {"Retry-After": str(max(1, round(60 / owner.settings.rate_per_minute)))})
        path = request.rel_url.path
        method = request.method
        if method in ("GET", "HEAD"):
            return await self._get(path)
        if method == "PUT":
            if path != "/config":
                return _refusal(404 if path not in ("/health", "/status", "/metrics") else 405, "not_found",
                                "PUT goes to /config")
            return await self._put(request, connection)
        return _refusal(405, "method_not_allowed", "use GET /health, GET /status, GET /metrics or PUT /config",
                        {"Allow": "GET, HEAD, PUT"})

    async def _admit(self, request: web.BaseRequest) -> bool:
        owner = self.owner
        address = request.remote or "?"
        if owner._buckets.allow(address):
            owner._limited.discard(address)
            return True
        if address not in owner._limited:               # audit once per burst, not once per request
            if len(owner._limited) > 1024:
                owner._limited.clear()
            owner._limited.add(address)
            client = _client(request)
            await self._call(lambda: owner._audit_event("management.rate_limited", client=client))
        return False

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.owner._pool, fn, *args)

    async def _get(self, path: str) -> web.StreamResponse:
        owner = self.owner
        if path == "/health":
            status, doc = await self._call(health_response, owner.health)
            return _json(status, doc)
        if path == "/status":
            def status_doc() -> dict:
                _, doc = health_response(owner.health)
                try:
                    details = dict(owner.status())
                except Exception as e:                      # noqa: BLE001
                    details = {"status_error": type(e).__name__}
                return {"health": doc, **details}
            return _json(200, await self._call(status_doc))
        if path == "/metrics" and owner.metrics is not None:
            try:
                content_type, body = await self._call(owner.metrics)
            except Exception as e:                          # noqa: BLE001 - a broken collector is reported
                return _json(503, {"status": "error", "error": type(e).__name__})
            resp = web.Response(status=200, body=body, headers={"Content-Type": content_type,
                                                                "Cache-Control": "no-store",
                                                                "Server": "kiosk-management"})
            resp.force_close()
            return resp
        if path == "/config":
            return _refusal(405, "method_not_allowed", "use PUT to send a bundle", {"Allow": "PUT"})
        return _refusal(404, "not_found", "no such resource; try /health, /status, /metrics or PUT /config")

    async def _put(self, request: web.BaseRequest, connection: _Connection | None) -> web.StreamResponse:
        owner = self.owner
        headers = request.headers
        if "Transfer-Encoding" in headers:
            return _refusal(411, "length_required", "send the bundle with a Content-Length, not chunked")
        texts = headers.getall("Content-Length", [])
        if not texts:
            return _refusal(411, "length_required", "Content-Length is required")
        length = content_length(texts)
        if length is None:
            return _refusal(400, "malformed", "Content-Length is not a number")
        limit = owner.settings.max_body_bytes
        if length > limit:
            await self._call(lambda: owner._audit_event("config.refused", code="too_large", source="push",
                                                        reason=f"{length} bytes; at most {limit}",
                                                        client=_client(request)))
            return _refusal(413, "too_large", f"{length} bytes; at most {limit} are accepted")
        if headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        loop = asyncio.get_running_loop()
        left = (connection.deadline - loop.time()) if connection is not None else owner.settings.timeout
        try:
            body = await asyncio.wait_for(request.content.readexactly(length), max(0.0, left))
        except asyncio.TimeoutError:
            return _refusal(408, "timeout", "the body did not arrive in time")
        except (asyncio.IncompleteReadError, ConnectionError):
            return _refusal(400, "malformed", "the body ended early")
        outcome = await self._call(owner.apply, body, "push", _client(request))
        status = 200 if outcome.applied else REFUSAL_STATUS.get(outcome.code, 422)
        return _json(status, outcome.to_json())


def _client(request: web.BaseRequest) -> str:
    client = request.remote or "?"
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return f"{client} ({value[:64]})"
    return client


class ManagementServer(WorkerThread):
    """The endpoint on its own thread and asyncio loop. `apply(raw, source, client)` is
    ConfigApplier.apply; `health()` returns a dict with "checks" (see health_document);
    `status()` extra details; `metrics()` (content type, bytes) for GET /metrics (404 without)."""

    thread_name = "management-server"

    def __init__(
        self,
        settings: ServerSettings,
        *,
        apply: Callable[[bytes, str, str], Outcome],
        health: Callable[[], dict],
        status: Callable[[], dict] = dict,
        metrics: Callable[[], tuple[str, bytes]] | None = None,
        audit: AuditTrail | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.apply = apply
        self.health = health
        self.status = status
        self.metrics = metrics
        self._audit = audit
        self._ssl = tls_context(settings)
        self._buckets = TokenBuckets(settings.rate_per_minute, clock)
        self._limited: set[str] = set()
        self._per_address: dict[str, int] = {}
        self._open = 0
        self._tasks: set[asyncio.Task] = set()
        self._connections: set[_Connection] = set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="management")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._web: web.Server | None = None
        self._ready = threading.Event()
        self._port = 0
        self.refused_connections = 0            # over a cap (counted; never per address)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._port

    def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.new_event_loop()
        self._start_thread()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        except BaseException:
            self.stop()
            raise
        log_event(log, "management.listening", bind=self.settings.bind, port=self.port,
                  mtls=self.settings.require_client_cert)

    async def _listen(self) -> None:
        self._web = web.Server(_Dispatch(self), loop=self._loop)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), self.settings.bind, self.settings.port, reuse_address=True, backlog=128)
        self._port = self._server.sockets[0].getsockname()[1]

    def _new_handler(self) -> _Handler:
        assert self._web is not None and self._loop is not None
        # No access log (events are logged by name); bodies are read as sent, never inflated
        # (Content-Encoding: gzip must not turn 64 KiB into gigabytes); headers small and few
        # (central IT sends a handful: at most about 130 KB held per connection).
        return _Handler(self._web, loop=self._loop, keepalive_timeout=self.settings.timeout,
                        lingering_time=_LINGER_SECONDS, auto_decompress=False,
                        max_line_size=4096, max_field_size=4096, max_headers=32,
                        access_log=None,  # type: ignore[arg-type]  # None turns it off (aiohttp's own default path)
                        logger=logging.getLogger("kiosk.management.http"))

    def _take_slot(self, address: str) -> bool:
        """Loop thread only, so plain counters do."""
        held = self._per_address.get(address, 0)
        if held >= self.settings.max_per_address or self._open >= self.settings.max_connections:
            self.refused_connections += 1
            return False
        self._per_address[address] = held + 1
        self._open += 1
        return True

    def _free_slot(self, address: str) -> None:
        held = self._per_address.get(address, 0) - 1
        if held > 0:
            self._per_address[address] = held
        else:
            self._per_address.pop(address, None)
        self._open -= 1

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(5)
            except Exception:                               # noqa: BLE001 - stopping anyway
                pass
        self._stop_thread(5)
        loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._loop = None
        self._server = None

    async def _close(self) -> None:
        """Quick, whatever the clients do: the kiosk's whole stop has a budget of about a second."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._web is not None:
            await self._web.shutdown(0.1)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abort()
            connection.release()

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)

    close = stop

    def _audit_event(self, action: str, **fields: Any) -> None:
        """On the pool, never on the loop: the audit trail writes to SQLite."""
        log_and_audit(log, self._audit, "central_it", action, failure="management.audit_failed",
                      level=logging.WARNING, **fields)
