"""Serves a virtual card to vsmartcard's vpcd reader driver, so pcscd sees a real reader.

Why: the kiosk's PC/SC code (and OpenSC, as a cross-check) can then be tested end to end
without hardware. The card itself is any object shaped like VirtualJpkiCard (`atr`,
`power_on()`, `power_off()`, `reset()`, `process(apdu) -> bytes`).

vpcd framing (both ways): 2-byte big-endian length + payload. A 1-byte payload from vpcd
is a control code (00 power off, 01 power on, 02 reset, 04 get ATR -> reply the ATR);
anything longer is a command APDU -> reply the response APDU. A connection is a card in
the reader; closing it is the card leaving. An empty answer (a mute card) makes vpcd drop
the connection, so pcscd sees a card that left mid-command.

Which end listens: this module only *connects*; the caller supplies `connect()`. Debian
12's vsmartcard-vpcd 3.3 "reversed mode" (vicc listens, vpcd connects) aborts pcscd the
first time a slot has no card at a presence poll (its vicc_connect() tests the server
socket, -1 in that mode, instead of the host name, and hands it to select(): "bit out of
range 0 - FD_SETSIZE"), so it cannot model removal at all. In the default mode vpcd
listens on 0.0.0.0:35963+slot, so the test harness runs pcscd in a private network
namespace and `connect()` reaches it there (kiosk_testing/pcscd.py). Never install
vsmartcard-vpcd on a kiosk.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from kiosk.worker_thread import WorkerThread

log = logging.getLogger(__name__)

VPCD_PORT = 0x8C7B          # 35963, slot 0; slot n listens on VPCD_PORT + n

CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

_SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"


class VirtualCard(Protocol):
    atr: bytes

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


@dataclass
class VpcdStats:
    """What crossed the wire, for benchmarks. Counts only: APDU contents hold PINs."""

    apdus: int = 0
    bytes_to_card: int = 0       # command APDU bytes
    bytes_from_card: int = 0     # response APDU bytes (data + SW)
    controls: int = 0            # power/reset/ATR frames (pcscd polls presence with ATR)
    connections: int = 0


def frame(payload: bytes) -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError("vpcd frame too long")
    return struct.pack(">H", len(payload)) + payload


def answer(card: VirtualCard, payload: bytes) -> bytes | None:
    """The vicc's reply to one vpcd payload, or None when vpcd expects no reply."""
    try:
        if len(payload) != 1:
            return bytes(card.process(bytes(payload)))
        code = payload[0]
        if code == CTRL_ATR:
            return bytes(card.atr)
        if code == CTRL_OFF:
            card.power_off()
        elif code == CTRL_ON:
            card.power_on()
        elif code == CTRL_RESET:
            card.reset()
        return None
    except Exception:  # a real card answers *something*; keep pcscd's slot alive
        log.exception("virtual card failed on a vpcd frame")
        if len(payload) != 1:
            return _SW_NO_PRECISE_DIAGNOSIS
        return bytes(card.atr) if payload[0] == CTRL_ATR else None


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly `size` bytes (TCP may split frames), or None at end of stream."""
    chunks = bytearray()
    while len(chunks) < size:
        if _QUICKACK is not None:
            # vpcd writes a frame's length and payload in two send()s without TCP_NODELAY:
            # with our ACK delayed (40 ms) Nagle holds the payload back. Linux clears
            # QUICKACK by itself, so it is set again before every read.
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def tcp_connector(host: str = "127.0.0.1", port: int = VPCD_PORT, timeout: float = 1.0
                  ) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        return socket.create_connection((host, port), timeout=timeout)
    return connect


class VpcdCard(WorkerThread):
    """One virtual card in one vpcd slot. insert()/remove() are what pcscd sees.

    While inserted, a thread keeps a connection to vpcd and reconnects if pcscd goes away
    and comes back (the card stays "in the reader" across a pcscd restart, as a real one).
    """

    thread_name = "vpcd-card"

    def __init__(self, card: VirtualCard, connect: Callable[[], socket.socket], *,
                 retry_interval: float = 0.05) -> None:
        super().__init__()
        self.card = card
        self.stats = VpcdStats()
        self._connect = connect
        self._retry = retry_interval
        self._lock = threading.Lock()
        self._wanted = threading.Event()      # set while the card is in the reader
        self._sock: socket.socket | None = None
        self.connected = threading.Event()

    @property
    def inserted(self) -> bool:
        return self._wanted.is_set()

    def insert(self) -> None:
        if self.running:
            return
        self._wanted.set()
        self._start_thread()

    def remove(self, timeout: float = 5.0) -> None:
        if not self._stop_thread(timeout):
            raise RuntimeError("vpcd card thread did not stop")

    def _wake(self) -> None:
        with self._lock:
            self._wanted.clear()
            self._drop_connection()

    close = remove

    def _drop_connection(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes the serving recv()
            except OSError:
                pass

    def _run(self) -> None:
        while self._wanted.is_set():
            try:
                sock = self._connect()
            except OSError:
                if self.stopping.wait(self._retry):
                    return
                continue
            with self._lock:
                if not self._wanted.is_set():
                    sock.close()
                    return
                self._sock = sock
            self.stats.connections += 1
            try:
                self._serve(sock)
            finally:
                with self._lock:
                    self._sock = None
                self.connected.clear()
                sock.close()
                self.card.power_off()   # reader lost: the card's volatile state goes
            if self.stopping.wait(self._retry):
                return

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # small frames, no 40 ms stalls
        self.connected.set()
        try:
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    return
                (length,) = struct.unpack(">H", header)
                payload = _recv_exact(sock, length)
                if payload is None:
                    return
                reply = answer(self.card, payload)
                if len(payload) == 1:
                    self.stats.controls += 1
                else:
                    self.stats.apdus += 1
                    self.stats.bytes_to_card += len(payload)
                    self.stats.bytes_from_card += len(reply or b"")
                if reply is not None:
                    sock.sendall(frame(reply))
        except OSError:
            return
