"""The SIP2 connection: one persistent socket, login, resends, timeouts and reconnects.

This is the imperative edge around `sip2_codec`. Everything that can go wrong on a
network ends here either in a response message or in CatalogueUnavailable, after a
bounded number of attempts. Logs carry message ids, lengths and outcomes only:
patron ids, titles and passwords are reading records or secrets.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from kiosk.core.catalogue import CatalogueUnavailable, Outage
from kiosk.sync import sip2_codec as codec
from kiosk.sync.outage import outage_of
from kiosk.sync.sip2_codec import AcsStatus, SipChecksumError, SipDecodeError, SipMessage

log = logging.getLogger("kiosk.sync.sip2")


@dataclass(frozen=True)
class Sip2Config:
    """Connection settings. TLS is on unless `tls` is explicitly False (never a silent downgrade)."""

    host: str
    port: int
    tls: bool = True
    ca_file: str | None = None           # None: the system trust store
    client_cert: str | None = None
    client_key: str | None = None
    server_hostname: str | None = None   # certificate name to check; default: host
    login_user: str | None = None        # None: no 93 login
    login_password: str = ""
    location: str | None = None          # CP in the login
    charset: str = "cp850"               # spec default; utf-8 for Japanese text
    terminator: str = "\r"               # "\r\n" for Koha logins configured that way
    error_detection: bool = True         # send AY/AZ (responses are accepted with or without)
    timeout: float = 10.0                # seconds to wait for each response
    connect_timeout: float = 5.0
    retries: int = 3                     # 97/96 resends per request (the ACS may lower it)
    attempts: int = 3                    # connections tried per request before giving up
    backoff: float = 0.5                 # first pause between attempts, doubled each time
    backoff_max: float = 5.0
    status_on_connect: bool = True       # send 99 after login and keep the 98

    def __post_init__(self) -> None:
        if not isinstance(self.tls, bool):
            raise ValueError("tls must be True or False")
        if self.terminator not in ("\r", "\r\n"):
            raise ValueError("terminator must be CR or CRLF")
        codec.charset_ok(self.charset)
        if self.attempts < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("attempts >= 1, retries >= 0 and timeout > 0 are required")


def make_ssl_context(config: Sip2Config) -> ssl.SSLContext:
    """Verifying client context: system or given CA, hostname check, TLS 1.2 or newer."""
    context = ssl.create_default_context(cafile=config.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.client_cert:
        context.load_cert_chain(config.client_cert, config.client_key)
    return context


class _Retry(Exception):
    """This connection is unusable; drop it and try again (counted against `attempts`)."""

    def __init__(self, message: str, reason: Outage) -> None:
        super().__init__(message)
        self.reason = reason


class Sip2Client:
    """A thread-safe SIP2 SC: `request()` sends one message and returns its response."""

    def __init__(
        self,
        config: Sip2Config,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._frames = codec.FrameSplitter()
        self._sequence = -1
        self._ssl = make_ssl_context(config) if config.tls else None
        self.acs_status: AcsStatus | None = None
        self.connections = 0                      # how many sockets were opened (for status pages)
        self._on_wire = False                     # the current request's frame was sent
        self._request_started = False             # past connect/login: frames now belong to the request

    # ------------------------------------------------------------------ public

    def request(self, message: SipMessage, *, once: bool = False) -> SipMessage:
        """Send `message`, return the matching response, or raise CatalogueUnavailable.

        `once`: the message is not repeated on a new connection once it went on the wire
        (a renewal or a return must not reach the ACS twice for one tap or one scan):
        only the spec's resends on the same connection (97/96) may repeat it.
        """
        expect = codec.RESPONSE_FOR[message.command]
        return self._with_attempts(message.command, lambda: self._exchange(message, expect), once=once)

    def status(self) -> AcsStatus:
        """Send 99 now and return the parsed 98 (also kept in `acs_status`)."""
        with self._lock:
            self.acs_status = codec.parse_acs_status(self.request(codec.sc_status()))
            return self.acs_status

    def connect(self) -> None:
        """Open the connection (and log in) now rather than on the first request."""
        self._with_attempts("connect", lambda: None)

    def _with_attempts(self, label: str, action: Callable[[], Any], *, once: bool = False) -> Any:
        """Run `action` on a live connection; reconnect with backoff, at most `attempts` times."""
        cfg = self.config
        with self._lock:
            last_error, last_reason = "no attempt", Outage.OTHER
            for attempt in range(cfg.attempts):
                if attempt:
                    self._sleep(min(cfg.backoff_max, cfg.backoff * 2 ** (attempt - 1)))
                self._on_wire = False
                try:
                    self._ensure_connected()
                    self._request_started = True
                    return action()
                except CatalogueUnavailable:
                    self._drop()
                    raise
                except (_Retry, OSError, SipDecodeError) as exc:
                    last_error = _describe(exc)
                    last_reason = exc.reason if isinstance(exc, _Retry) else outage_of(exc)
                    log.info("sip2 %s attempt %d/%d failed: %s", label, attempt + 1, cfg.attempts, last_error)
                    self._drop()
                    if once and self._on_wire:
                        raise CatalogueUnavailable(f"SIP2 {label} sent, then failed: {last_error}; "
                                                   "not sent again", reason=last_reason) from None
                finally:
                    self._request_started = False
            raise CatalogueUnavailable(f"SIP2 {label} failed after {cfg.attempts} attempts: {last_error}",
                                       reason=last_reason)

    def close(self) -> None:
        with self._lock:
            self._drop()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def security(self) -> str:
        """'plain', the negotiated TLS version, or '' when not connected (for status pages)."""
        sock = self._sock
        if sock is None:
            return ""
        if isinstance(sock, ssl.SSLSocket):
            return sock.version() or ""
        return "plain"

    # ------------------------------------------------------------------ connection

    def _ensure_connected(self) -> None:
        if self._sock is not None:
            self._drain()
        if self._sock is not None:
            return
        cfg = self.config
        raw = socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock: socket.socket = self._ssl.wrap_socket(raw, server_hostname=cfg.server_hostname or cfg.host)
            else:
                sock = raw
        except BaseException:
            raw.close()
            raise
        self._sock = sock
        self._frames = codec.FrameSplitter()
        self.acs_status = None                    # a new connection: the old 98 no longer speaks for it
        self.connections += 1
        log.info("sip2 connected (%s)", "tls " + str(sock.version()) if isinstance(sock, ssl.SSLSocket) else "plain tcp")
        if cfg.login_user is not None:
            reply = self._exchange(codec.login(cfg.login_user, cfg.login_password, cfg.location), "94")
            if reply.flag("ok") != "1":
                log.warning("sip2 login refused")
                raise CatalogueUnavailable("SIP2 login refused: check the SIP user and password",
                                           reason=Outage.LOGIN_REFUSED)
            log.info("sip2 login ok")
        if cfg.status_on_connect:
            self.acs_status = codec.parse_acs_status(self._exchange(codec.sc_status(), "98"))
            if not self.acs_status.online:
                log.warning("sip2 ACS reports off-line")
                raise _Retry("ACS off-line", Outage.HELD)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._frames.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _drain(self) -> None:
        """Discard stale input left on the socket; notice a peer that hung up while idle."""
        sock = self._sock
        assert sock is not None
        stale = self._frames.pending
        self._frames.clear()
        sock.setblocking(False)
        try:
            while True:
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
                    break
                if not data:
                    log.info("sip2 server closed the idle connection")
                    self._drop()
                    return
                stale += len(data.lstrip(b"\n")) if not stale else len(data)
        except OSError as exc:
            log.info("sip2 idle connection broken: %s", _describe(exc))
            self._drop()
            return
        finally:
            if self._sock is not None:
                sock.settimeout(self.config.timeout)
        if stale:
            log.info("sip2 discarded %d stale bytes", stale)

    # ------------------------------------------------------------------ one exchange

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) % 10
        return self._sequence

    def _encode(self, message: SipMessage, sequence: int) -> bytes:
        cfg = self.config
        return codec.encode(message, charset=cfg.charset, error_detection=cfg.error_detection,
                            sequence=sequence, terminator=cfg.terminator.encode("ascii"))

    def _retry_limit(self) -> int:
        acs = self.acs_status.retries if self.acs_status else None
        return self.config.retries if acs is None else min(self.config.retries, acs)

    def _exchange(self, message: SipMessage, expect: str) -> SipMessage:
        sequence = self._next_sequence()
        frame = self._encode(message, sequence)
        resend_frame = self._encode(codec.resend_request(), 0)
        self._send(frame, message.command)
        asked_97 = resent_96 = 0
        last_sent_97 = False
        while True:
            raw = self._read_frame(self._clock() + self.config.timeout)
            try:
                reply = codec.decode(raw, charset=self.config.charset)
            except SipChecksumError:
                if asked_97 >= self._retry_limit():
                    raise _Retry("checksum errors exceeded the retry limit", Outage.PROTOCOL) from None
                asked_97 += 1
                log.info("sip2 bad checksum (%d bytes), sending 97 (%d)", len(raw), asked_97)
                self._send(resend_frame, "97")
                last_sent_97 = True
                continue
            except SipDecodeError:
                log.info("sip2 ignored an unreadable frame (%d bytes)", len(raw))
                continue
            if reply.command == "96":
                if last_sent_97:
                    log.info("sip2 got 96 after our 97; waiting")
                    continue
                if resent_96 >= self._retry_limit():
                    raise _Retry("ACS kept asking for resends (96)", Outage.PROTOCOL)
                resent_96 += 1
                log.info("sip2 ACS asked for a resend (96), resending %s (%d)", message.command, resent_96)
                self._send(frame, message.command)
                continue
            if self.config.error_detection and not _sequence_answers(reply.sequence, sequence, asked_97 > 0):
                log.info("sip2 discarded %s with sequence %d (expected %d)",
                         reply.command, reply.sequence, sequence)
                continue
            if reply.command != expect:
                log.info("sip2 discarded unexpected %s while waiting for %s", reply.command, expect)
                continue
            if not self._same_item(message, reply):
                log.info("sip2 discarded %s for another item", reply.command)
                continue
            log.debug("sip2 received %s (%d bytes)", reply.command, len(raw))
            return reply

    def _same_item(self, request: SipMessage, reply: SipMessage) -> bool:
        """A response about another item is stale (e.g. a late duplicate), never an answer."""
        asked, answered = request.get("AB"), reply.get("AB")
        if not asked or not answered:
            return True
        charset = self.config.charset
        on_wire = codec.truncate_encoded(codec.clean_value(asked), charset).decode(charset)
        return _norm(on_wire) == _norm(answered) or _norm(asked) == _norm(answered)

    def _send(self, frame: bytes, command: str) -> None:
        assert self._sock is not None
        self._sock.settimeout(self.config.timeout)
        if self._request_started:
            self._on_wire = True                  # even a partial send may have reached the ACS
        self._sock.sendall(frame)
        log.debug("sip2 sent %s (%d bytes)", command, len(frame))

    def _read_frame(self, deadline: float) -> bytes:
        while True:
            frame = self._frames.next_frame()
            if frame is not None:
                return frame
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise _Retry("timed out waiting for a response", Outage.TIMEOUT)
            assert self._sock is not None
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                raise _Retry("timed out waiting for a response", Outage.TIMEOUT) from None
            if not data:
                raise _Retry("connection closed by the server", Outage.UNREACHABLE)
            self._frames.feed(data)


def _sequence_answers(received: int | None, sent: int, after_97: bool) -> bool:
    """Whether a response's AY belongs to the request we sent with AY `sent`.

    No AY (error detection off at the ACS) always matches. After our 97 the ACS
    re-sends its last response; the spec gives it no AY of its own, and Koha's and
    Evergreen's SIP servers rebuild it with AY0: so after a 97, 0 answers too.
    Dropping that resend meant a timeout, a reconnect and a second checkout, which
    the ILS booked as a renewal.
    """
    return received is None or received == sent or (after_97 and received == 0)


def _norm(text: str) -> str:
    return text.replace(codec.PIPE_ESCAPE, "|").strip().casefold()


def _describe(exc: BaseException) -> str:
    """Error text without payloads: exception class plus errno/reason where available."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason})"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__} errno={exc.errno}"
    if isinstance(exc, SipDecodeError):
        return f"protocol error ({type(exc).__name__})"
    return str(exc)
