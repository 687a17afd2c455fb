"""Hostile neighbours of the management endpoint: many idle or trickling connections from
one address, kept up for as long as the test runs (each one dropped is opened again).

Loopback only: the attacker binds 127.0.0.1 (or the address given), the server listens on
127.0.0.1; everything stops by itself when the context ends or `seconds` have passed.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field


@dataclass
class HostileStats:
    opened: int = 0               # TCP connections the attacker got accepted
    dropped: int = 0              # ... that the server closed or reset
    tls_done: int = 0             # TLS handshakes the attacker completed
    errors: dict[str, int] = field(default_factory=dict)


def client_hello(server_name: str = "127.0.0.1") -> bytes:
    """The bytes of a real TLS ClientHello, to send one at a time."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Hostile:
    """`count` connections from `source` to 127.0.0.1:`port`, each doing `kind`:

    - "idle": connect and send nothing;
    - "hello": trickle a TLS ClientHello, one byte every `pace` seconds;
    - "headers": complete TLS with `tls` (no client certificate) and trickle an endless
      request header, one byte every `pace` seconds.
    """

    def __init__(self, port: int, kinds: list[str], *, source: str = "127.0.0.1", pace: float = 0.5,
                 tls: ssl.SSLContext | None = None, seconds: float = 60.0, reconnect_pause: float = 0.1) -> None:
        self.port, self.kinds, self.source, self.pace = port, kinds, source, pace
        self.tls = tls
        self.seconds = seconds
        self.reconnect_pause = reconnect_pause
        self.stats = HostileStats()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        # Also a plain flag: Python 3.11's wait_for can swallow a cancellation, so the loops check it.
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="hostile", daemon=True)
        self._hello = client_hello()

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._all())
        finally:
            self._loop.close()

    async def _all(self) -> None:
        self._stop = asyncio.Event()
        tasks = [asyncio.create_task(self._one(kind)) for kind in self.kinds]
        try:
            await asyncio.wait_for(self._stop.wait(), self.seconds)
        except asyncio.TimeoutError:
            pass
        self._stopping = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, kind: str) -> None:
        while not self._stopping:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(self.source, 0),
                    ssl=self.tls if kind == "headers" else None,
                    server_hostname="127.0.0.1" if kind == "headers" else None,
                    ssl_handshake_timeout=30 if kind == "headers" else None)
                self.stats.opened += 1
                if kind == "headers":
                    self.stats.tls_done += 1
                    data = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
                elif kind == "hello":
                    data = self._hello
                else:
                    data = b""
                for i in range(10 ** 6):
                    if reader.at_eof() or self._stopping:
                        break
                    if data:
                        writer.write(data[i % len(data): i % len(data) + 1])
                        await writer.drain()
                    try:
                        got = await asyncio.wait_for(reader.read(4096), self.pace)
                        if not got:
                            break
                    except asyncio.TimeoutError:
                        pass
                self.stats.dropped += 1
            except asyncio.CancelledError:
                raise
            except (OSError, ssl.SSLError, EOFError) as e:
                name = type(e).__name__
                self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
            finally:
                if writer is not None:
                    writer.close()
            await asyncio.sleep(self.reconnect_pause)
