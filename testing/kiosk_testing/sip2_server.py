"""SIP2 peers for tests: a pysip2 ACS, a Koha-quirks ACS and a fault-injecting proxy.

All listen on 127.0.0.1 ephemeral ports, run in background threads and stop at
fixture teardown. They share one `FakeLibrary`, which records every checkout the
ACS received, so tests can assert "exactly one loan" at the catalogue's side.

The Koha-quirks ACS and the proxy deliberately parse frames with their own few
lines of code (not kiosk.sync.sip2_codec) so the client is tested against an
independent reading of the protocol.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading
import time
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

INSTITUTION = "JPLIB"
SIP_USER, SIP_PASSWORD = "kiosk01", "s3cret-login"
TERMINAL_PASSWORD = "term-pass"

# Seeded patrons and items (library card numbers / item barcodes).
PATRON_OK = "2000000012345"
PATRON_BLOCKED = "2000000099999"
PATRON_AT_LIMIT = "2000000055555"
PATRON_PIPE = "2000000077777"          # name contains '|' (Koha escapes it)
ITEM_NEKO = "1230004567"               # 吾輩は猫である
ITEM_SNOW = "1230000001"
ITEM_HELD = "1230000002"               # waiting on the hold shelf for someone else
ITEM_OUT = "1230000003"                # charged to another patron
ITEM_VIDEO = "1230000004"              # DVD: counter only
ITEM_LONG = "1230000005"               # title longer than 255 UTF-8 bytes
NEKO_TITLE = "吾輩は猫である"
# Decomposed Unicode (NFD), as library systems send from MARC records: 7 code points for 5 characters.
GURI_TITLE = "ぐりとぐら"
ITEM_NFD = "1230000006"
PATRON_NFD = "2000000066666"
PATRON_NFD_NAME = "ぐり ぐら子"
GURI_NOTE = "ご返却は2週間後です"
LONG_TITLE = "長い書名の本" * 20      # 120 characters, 360 UTF-8 bytes

# My account, renewals and returns: a patron with a bit of everything.
PATRON_ACCOUNT = "2000000044444"
ITEM_KOKORO = "1230000101"             # on loan, renewable
ITEM_MAIHIME = "1230000102"            # on loan, overdue
ITEM_GINGA = "1230000103"              # on loan, reserved by another patron
ITEM_SANSHIRO = "1230000104"           # on loan, renewed as often as allowed
ITEM_RASHOMON = "1230000105"           # on loan to PATRON_OK's neighbour; returned with a hold waiting
ACCOUNT_TITLES = {ITEM_KOKORO: "こころ", ITEM_MAIHIME: "舞姫", ITEM_GINGA: "銀河鉄道の夜",
                  ITEM_SANSHIRO: "三四郎", ITEM_RASHOMON: "羅生門"}
HOLD_READY_TITLE = "檸檬"
HOLD_PENDING_TITLE = "山月記"
FINE_LINE = "300 延滞料"


# --------------------------------------------------------------------------- the library


@dataclass
class FakePatron:
    patron_id: str
    name: str
    password: str | None = None
    blocked: bool = False
    limit: int = 10
    holds_ready: list[str] = field(default_factory=list)
    holds_pending: list[str] = field(default_factory=list)
    fines: list[str] = field(default_factory=list)         # AV lines
    fee_amount: str = ""                                   # BV ('' = none)


@dataclass
class FakeItem:
    item_id: str
    title: str
    media: str = "001"
    on_hold_for: str | None = None
    not_for_loan: bool = False
    note: str = ""                # screen message (AF) on a successful loan
    renewals: int = 0
    max_renewals: int = 2


@dataclass(frozen=True)
class Outcome:
    ok: bool
    renewal: bool
    title: str
    due: str                      # Koha style 'YYYYMMDD    HHMMSS' ('' when refused)
    message: str = ""


class FakeLibrary:
    """Patrons, items and loans behind both test ACSs; records every 11 it is sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.patrons: dict[str, FakePatron] = {}
        self.items: dict[str, FakeItem] = {}
        self.loans: dict[str, tuple[str, str]] = {}       # item -> (patron, due)
        self.checkouts: list[dict[str, str]] = []         # every 11 received, in order
        self.checkins: list[dict[str, str]] = []          # every 09 received, in order
        self.renewals: list[dict[str, str]] = []          # every 29 (and each item of a 65), in order
        self.requests: list[str] = []                      # command ids received, in order

    @classmethod
    def seeded(cls) -> "FakeLibrary":
        lib = cls()
        lib.patrons = {p.patron_id: p for p in (
            FakePatron(PATRON_OK, "山田 太郎", password="1234", holds_ready=["9990001", "9990002"]),
            FakePatron(PATRON_BLOCKED, "Blocked Patron", blocked=True),
            FakePatron(PATRON_AT_LIMIT, "Busy Reader", limit=1),
            FakePatron(PATRON_PIPE, "Smith|Jones"),
            FakePatron("2000000088888", "Other Patron"),
            FakePatron(PATRON_NFD, unicodedata.normalize("NFD", PATRON_NFD_NAME)),
            FakePatron(PATRON_ACCOUNT, "佐藤 花子", password="2468", holds_ready=[HOLD_READY_TITLE],
                       holds_pending=[HOLD_PENDING_TITLE], fines=[FINE_LINE], fee_amount="300"),
        )}
        lib.items = {i.item_id: i for i in (
            FakeItem(ITEM_NEKO, NEKO_TITLE),
            FakeItem(ITEM_SNOW, "雪国"),
            FakeItem(ITEM_HELD, "Held Book", on_hold_for="2000000088888"),
            FakeItem(ITEM_OUT, "Borrowed Book"),
            FakeItem(ITEM_VIDEO, "Film", media="005", not_for_loan=True),
            FakeItem(ITEM_LONG, LONG_TITLE),
            FakeItem("1230000099", "Spare Book"),
            FakeItem(ITEM_NFD, unicodedata.normalize("NFD", GURI_TITLE), note=unicodedata.normalize("NFD", GURI_NOTE)),
        )}
        lib.loans[ITEM_OUT] = ("2000000088888", "20990101    235900")
        lib.loans["1230000099"] = (PATRON_AT_LIMIT, "20990101    235900")
        for item_id, title in ACCOUNT_TITLES.items():
            lib.items[item_id] = FakeItem(item_id, title)
        lib.items[ITEM_GINGA].on_hold_for = "2000000088888"
        lib.items[ITEM_RASHOMON].on_hold_for = PATRON_OK
        lib.items[ITEM_SANSHIRO].renewals = 2
        for item_id in (ITEM_KOKORO, ITEM_GINGA, ITEM_SANSHIRO):
            lib.loans[item_id] = (PATRON_ACCOUNT, "20990101    235900")
        lib.loans[ITEM_MAIHIME] = (PATRON_ACCOUNT, "20200101    235900")
        lib.loans[ITEM_RASHOMON] = ("2000000088888", "20990101    235900")
        return lib

    def note(self, command: str) -> None:
        with self.lock:
            self.requests.append(command)

    def loans_of(self, patron_id: str) -> list[str]:
        with self.lock:
            return [item for item, (patron, _) in self.loans.items() if patron == patron_id]

    def circulation_status(self, item_id: str) -> str:
        item = self.items.get(item_id)
        if item is None:
            return "01"
        if item_id in self.loans:
            return "04"
        if item.on_hold_for:
            return "08"
        return "03"

    def checkout(self, patron_id: str, item_id: str, no_block: str, when: str, nb_due: str) -> Outcome:
        with self.lock:
            record = {"patron": patron_id, "item": item_id, "no_block": no_block,
                      "transaction_date": when, "nb_due_date": nb_due}
            outcome = self._checkout(patron_id, item_id, no_block == "Y", when, nb_due)
            record["outcome"] = "renewal" if outcome.renewal else ("loan" if outcome.ok else "refused")
            self.checkouts.append(record)
            return outcome

    def _checkout(self, patron_id: str, item_id: str, no_block: bool, when: str, nb_due: str) -> Outcome:
        patron, item = self.patrons.get(patron_id), self.items.get(item_id)
        if patron is None:
            return Outcome(False, False, "", "", "Invalid patron")
        if item is None:
            return Outcome(False, False, "", "", "Invalid item")
        due = _koha_due(nb_due if no_block else when, 0 if no_block else 14)
        holder = self.loans.get(item_id)
        if holder and holder[0] == patron_id:
            self.loans[item_id] = (patron_id, due)
            return Outcome(True, True, item.title, due, "Item renewed")
        if not no_block:
            if patron.blocked:
                return Outcome(False, False, item.title, "", "Patron blocked")
            if holder:
                return Outcome(False, False, item.title, "", "Item checked out to another patron")
            if item.on_hold_for and item.on_hold_for != patron_id:
                return Outcome(False, False, item.title, "", "Item is on hold for another patron")
            if item.not_for_loan:
                return Outcome(False, False, item.title, "", "Item is not for loan")
            if sum(1 for p, _ in self.loans.values() if p == patron_id) >= patron.limit:
                return Outcome(False, False, item.title, "", "Too many items checked out")
        self.loans[item_id] = (patron_id, due)
        return Outcome(True, False, item.title, due, item.note)


    def overdue_of(self, patron_id: str, today: str) -> list[str]:
        with self.lock:
            return [item for item, (patron, due) in self.loans.items() if patron == patron_id and due[:8] < today]

    def renew(self, patron_id: str, item_id: str, when: str, days: int) -> Outcome:
        """29 (and each item of 65): the rules a Koha-like ILS applies, refusals in its words."""
        with self.lock:
            outcome = self._renew(patron_id, item_id, when, days)
            self.renewals.append({"patron": patron_id, "item": item_id,
                                  "outcome": "renewed" if outcome.ok else outcome.message})
            return outcome

    def _renew(self, patron_id: str, item_id: str, when: str, days: int) -> Outcome:
        holder, item, patron = self.loans.get(item_id), self.items.get(item_id), self.patrons.get(patron_id)
        title = item.title if item else ""
        if not holder or holder[0] != patron_id or item is None or patron is None:
            return Outcome(False, False, title, "", "Item not checked out to this patron")
        if patron.blocked:
            return Outcome(False, False, title, "", "Patron blocked")
        if item.on_hold_for and item.on_hold_for != patron_id:
            return Outcome(False, False, title, "", "Item is on hold for another patron")
        if item.renewals >= item.max_renewals:
            return Outcome(False, False, title, "", "Too many renewals")
        if holder[1][:8] < when[:8]:
            return Outcome(False, False, title, "", "Item is overdue")
        item.renewals += 1
        due = _koha_due(when, days)
        self.loans[item_id] = (patron_id, due)
        return Outcome(True, True, title, due)

    def checkin(self, item_id: str, no_block: str, when: str, return_date: str) -> tuple[bool, bool, str, str]:
        """09: (ok, alert, title, screen message); records the outcome of every 09 received."""
        with self.lock:
            item = self.items.get(item_id)
            record = {"item": item_id, "no_block": no_block, "transaction_date": when, "return_date": return_date}
            if item is None:
                record["outcome"] = "unknown"
                self.checkins.append(record)
                return False, True, "", "Item unknown"
            if item_id not in self.loans:
                record["outcome"] = "not_on_loan"
                self.checkins.append(record)
                return False, False, item.title, "Item not checked out"
            del self.loans[item_id]
            item.renewals = 0
            record["outcome"] = "returned"
            self.checkins.append(record)
            if item.on_hold_for:
                return True, True, item.title, "Item on hold for another patron: hold shelf"
            return True, False, item.title, ""


def _koha_due(date18: str, days: int) -> str:
    day = dt.datetime.strptime(date18[:8], "%Y%m%d") + dt.timedelta(days=days)
    return day.strftime("%Y%m%d") + "    235900"


def now18() -> str:
    return dt.datetime.now().strftime("%Y%m%d    %H%M%S")


# --------------------------------------------------------------------------- pysip2 ACS


@dataclass
class RunningAcs:
    host: str
    port: int
    library: FakeLibrary


@contextlib.contextmanager
def run_pysip2_acs(library: FakeLibrary, *, login_required: bool = True,
                   online: bool = True, ssl_context: ssl.SSLContext | None = None) -> Iterator[RunningAcs]:
    """pysip2 0.1.0 as the ACS, in-process on a background event loop (utf-8, login first);
    over TLS (anyio's TLSListener in front of pysip2) when given a server context."""
    import pysip2
    from anyio.from_thread import start_blocking_portal
    from pysip2 import models as m

    app = pysip2.SIP2Server(
        encoding="utf-8", login_required=login_required, institution_id=INSTITUTION,
        library_name="Test Library", retries_allowed="003", timeout_period="030",
        # pysip2 reports on-line N only for an "incompatible" SC version: our 2.00 < 9.00.
        min_protocol_version="1.00" if online else "9.00",
    )

    @app.route(pysip2.LOGIN)
    async def _login(req: m.LoginRequest, ctx):
        library.note("93")
        ok = req.login_user_id == SIP_USER and req.login_password == SIP_PASSWORD
        return m.LoginResponse(ok="1" if ok else "0")

    def patron_fields(pid: str, password: str | None):
        patron = library.patrons.get(pid)
        if patron is None:
            return None, dict(patron_status=" " * 14, personal_name="", valid_patron="N")
        status = ("Y" if patron.blocked else " ") + " " * 9 + ("Y" if patron.blocked else " ") + " " * 3
        extra = dict(patron_status=status, personal_name=patron.name, valid_patron="Y")
        if password is not None:
            extra["valid_patron_password"] = "Y" if password == patron.password else "N"
        return patron, extra

    @app.route(pysip2.PATRON_INFORMATION)
    async def _patron_info(req: m.PatronInformationRequest, ctx):
        library.note("63")
        patron, extra = patron_fields(req.patron_identifier, req.patron_password)
        loans = library.loans_of(req.patron_identifier)
        overdue = library.overdue_of(req.patron_identifier, ctx.now_18()[:8])
        holds = patron.holds_ready if patron else []
        pending = patron.holds_pending if patron else []
        fines = patron.fines if patron else []
        asked = {fid: _page(values, req.start_item, req.end_item) if req.summary[pos: pos + 1] == "Y" else []
                 for fid, pos, values in (("AS", 0, holds), ("AT", 1, overdue), ("AU", 2, loans),
                                          ("AV", 3, fines), ("CD", 5, pending))}
        return m.PatronInformationResponse(
            language=req.language, transaction_date=ctx.now_18(),
            hold_items_count=f"{len(holds):04d}", overdue_items_count=f"{len(overdue):04d}",
            charged_items_count=f"{len(loans):04d}", fine_items_count=f"{len(fines):04d}",
            recall_items_count="0000", unavailable_holds_count=f"{len(pending):04d}",
            institution_id=INSTITUTION, patron_identifier=req.patron_identifier,
            charged_items_limit=f"{patron.limit:04d}" if patron else None,
            fee_amount=patron.fee_amount or None if patron else None,
            currency_type="JPY" if patron and patron.fee_amount else None,
            hold_items=tuple(asked["AS"]), overdue_items=tuple(asked["AT"]),
            charged_items=tuple(asked["AU"]), fine_items=tuple(asked["AV"]),
            unavailable_hold_items=tuple(asked["CD"]),
            **extra,
        )

    @app.route(pysip2.PATRON_STATUS)
    async def _patron_status(req: m.PatronStatusRequest, ctx):
        library.note("23")
        _, extra = patron_fields(req.patron_identifier, req.patron_password or None)
        return m.PatronStatusResponse(language=req.language, transaction_date=ctx.now_18(),
                                      institution_id=INSTITUTION,
                                      patron_identifier=req.patron_identifier, **extra)

    @app.route(pysip2.ITEM_INFORMATION)
    async def _item_info(req: m.ItemInformationRequest, ctx):
        library.note("17")
        item = library.items.get(req.item_identifier)
        holder = library.loans.get(req.item_identifier)
        return m.ItemInformationResponse(
            due_date=holder[1] if holder else None,
            circulation_status=library.circulation_status(req.item_identifier),
            security_marker="02", fee_type="01", transaction_date=ctx.now_18(),
            item_identifier=req.item_identifier, title_identifier=item.title if item else "",
            media_type=item.media if item else None,
            screen_message=() if item else ("Item not found",),
        )

    @app.route(pysip2.CHECKOUT)
    async def _checkout(req: m.CheckoutRequest, ctx):
        library.note("11")
        out = library.checkout(req.patron_identifier, req.item_identifier, req.no_block,
                               req.transaction_date, req.nb_due_date)
        return m.CheckoutResponse(
            ok="1" if out.ok else "0", renewal_ok="Y" if out.renewal else "N",
            magnetic_media="N", desensitize="Y" if out.ok else "N",
            transaction_date=ctx.now_18(), institution_id=INSTITUTION,
            patron_identifier=req.patron_identifier, item_identifier=req.item_identifier,
            title_identifier=out.title, due_date=out.due,
            screen_message=(out.message,) if out.message else (),
        )

    @app.route(pysip2.RENEW)
    async def _renew(req: m.RenewRequest, ctx):
        library.note("29")
        out = library.renew(req.patron_identifier, req.item_identifier or "", req.transaction_date, 14)
        return m.RenewResponse(
            ok="1" if out.ok else "0", renewal_ok="Y" if out.ok else "N", magnetic_media="N",
            desensitize="N", transaction_date=ctx.now_18(), institution_id=INSTITUTION,
            patron_identifier=req.patron_identifier, item_identifier=req.item_identifier or "",
            title_identifier=out.title, due_date=out.due,
            screen_message=(out.message,) if out.message else (),
        )

    @app.route(pysip2.RENEW_ALL)
    async def _renew_all(req: m.RenewAllRequest, ctx):
        library.note("65")
        renewed, unrenewed = [], []
        for item_id in library.loans_of(req.patron_identifier):
            out = library.renew(req.patron_identifier, item_id, req.transaction_date, 14)
            (renewed if out.ok else unrenewed).append(item_id)
        return m.RenewAllResponse(
            ok="1", renewed_count=f"{len(renewed):04d}", unrenewed_count=f"{len(unrenewed):04d}",
            transaction_date=ctx.now_18(), institution_id=INSTITUTION,
            renewed_items=tuple(renewed), unrenewed_items=tuple(unrenewed))

    @app.route(pysip2.CHECKIN)
    async def _checkin(req: m.CheckinRequest, ctx):
        library.note("09")
        ok, alert, title, message = library.checkin(req.item_identifier, req.no_block, req.transaction_date,
                                                    req.return_date)
        hold = alert and ok
        return m.CheckinResponse(
            ok="1" if ok else "0", resensitize="Y" if ok else "N", magnetic_media="N",
            alert="Y" if alert else "N", transaction_date=ctx.now_18(), institution_id=INSTITUTION,
            item_identifier=req.item_identifier, permanent_location="MAIN",
            title_identifier=title or None, sort_bin="HOLDS" if hold else None,
            screen_message=(message,) if message else ())

    @app.route(pysip2.END_PATRON_SESSION)
    async def _end(req: m.EndPatronSessionRequest, ctx):
        library.note("35")
        return m.EndSessionResponse(end_session="Y", transaction_date=ctx.now_18(),
                                    institution_id=INSTITUTION, patron_identifier=req.patron_identifier)

    @contextlib.asynccontextmanager
    async def serving():
        # Like app.start(), but closes the listening socket on exit (pysip2 0.1.0 leaves it open).
        import anyio
        from anyio.abc import SocketAttribute

        listener = await app.listen("127.0.0.1", 0)
        port = listener.extra(SocketAttribute.local_port)
        if ssl_context is not None:
            from anyio.streams.tls import TLSListener

            listener = TLSListener(listener, ssl_context, standard_compatible=False)
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, app._handle_connection)
            try:
                yield port
            finally:
                group.cancel_scope.cancel()

    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serving()) as port:
            yield RunningAcs("127.0.0.1", port, library)


# --------------------------------------------------------------------------- Koha-quirks ACS

_REQUEST_FIXED = {"93": 2, "99": 8, "63": 31, "23": 21, "17": 18, "11": 38, "29": 38, "35": 18, "09": 37,
                  "65": 18}
_TRAILER = re.compile(rb"AY\dAZ[0-9A-Fa-f]{4}\Z|AZ[0-9A-Fa-f]{4}\Z")


class _ThreadedServer:
    """Accept loop plus one thread per connection; stops by itself at `stop()`."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        self.tls_failures = 0
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self.connections += 1
                self._socks.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(2.0)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                try:
                    conn = self._ssl.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    with self._lock:
                        self.tls_failures += 1
                    return
                with self._lock:
                    self._socks.append(conn)
            conn.settimeout(0.1)
            self.handle(conn)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def handle(self, conn: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def recv(self, conn: socket.socket) -> bytes | None:
        """Bytes, b'' at EOF, or None when nothing arrived yet (poll the stop flag)."""
        try:
            return conn.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            return None
        except OSError:
            return b""

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        self._accept_thread.join(2)
        for t in threads:
            t.join(2)


class KohaQuirksAcs(_ThreadedServer):
    """An ACS that answers the way Koha's C4::SIP does with its common settings.

    CRLF after every response, no AY/AZ (error detection off), protocol version
    '2.0E' as seen in the wild, Koha-style due dates, '|' escaped as '&#124;',
    extension fields (PB, PC, CR ...) and fields longer than 255 bytes. Accepts CR
    or CRLF requests and ignores AY/AZ on them.

    With `error_detect=True` (Koha's `error-detect="enabled"` login) every response
    carries the request's AY and an AZ, and a 97 is answered the way Koha's and
    Evergreen's `handle_request_acs_resend` do: the last response again, its AY/AZ cut
    out and rebuilt with **AY0**. `corrupt(*commands)` spoils the AZ of the next
    response to each listed request command (once per entry), so the SC sends a 97.
    """

    def __init__(self, library: FakeLibrary, *, ssl_context: ssl.SSLContext | None = None,
                 terminator: bytes = b"\r\n", error_detect: bool = False) -> None:
        self.library = library
        self.terminator = terminator
        self.error_detect = error_detect
        self.frames: list[bytes] = []          # every request frame received (terminator cut)
        self.raw = bytearray()                  # every byte received
        self.sent: list[bytes] = []             # every response frame sent (terminator cut)
        self.resends = 0                        # 97s answered with the last response
        self.resend_sequence: str | None = "0"  # AY of a re-sent response; None: the original one (spec-like)
        self.online = True                      # 98 on-line status
        self.checkout_ok = True                 # 98 checkout ok; while False every 11 is refused
        self._corrupt: list[str] = []
        super().__init__(ssl_context)

    def corrupt(self, *commands: str) -> None:
        """Send the next response to each of these request commands with a bad AZ."""
        with self._lock:
            self._corrupt.extend(commands)

    def _take_corrupt(self, command: str) -> bool:
        with self._lock:
            if command in self._corrupt:
                self._corrupt.remove(command)
                return True
            return False

    def _trailer(self, body: bytes, sequence: str, spoil: bool = False) -> bytes:
        """AY + AZ the way Koha writes them: checksum over the encoded bytes, 4 upper-case hex digits."""
        prefix = body + b"AY" + sequence.encode("ascii") + b"AZ"
        value = (-sum(prefix)) & 0xFFFF
        if spoil:
            value = (value + 1) & 0xFFFF
        return prefix + f"{value:04X}".encode("ascii")

    def handle(self, conn: socket.socket) -> None:
        buffer = b""
        logged_in = False
        last: bytes | None = None               # last response body, without AY/AZ (Koha keeps it per connection)
        last_sequence = "0"
        while not self.stopping:
            data = self.recv(conn)
            if data is None:
                continue
            if not data:
                return
            buffer += data
            with self._lock:
                self.raw += data
            while b"\r" in buffer:
                frame, buffer = buffer.split(b"\r", 1)
                frame = frame.lstrip(b"\n")
                with self._lock:
                    self.frames.append(frame)
                if self.error_detect and frame.startswith(b"97"):
                    if last is not None:
                        with self._lock:
                            self.resends += 1
                        self._send(conn, self._trailer(last, self.resend_sequence or last_sequence))
                    continue
                reply = self.respond(frame, logged_in)
                if reply is None:
                    continue
                if reply.startswith("941"):
                    logged_in = True
                body = reply.encode("utf-8")
                if self.error_detect:
                    last = body
                    seq = re.search(rb"AY(\d)AZ[0-9A-Fa-f]{4}\Z", frame)
                    last_sequence = seq.group(1).decode() if seq else "0"
                    body = self._trailer(body, last_sequence,
                                         spoil=self._take_corrupt(frame[:2].decode("ascii", "replace")))
                self._send(conn, body)

    def _send(self, conn: socket.socket, frame: bytes) -> None:
        with self._lock:
            self.sent.append(frame)
        conn.sendall(frame + self.terminator)

    def respond(self, frame: bytes, logged_in: bool) -> str | None:
        body = _TRAILER.sub(b"", frame).decode("utf-8", errors="replace")
        command = body[:2]
        width = _REQUEST_FIXED.get(command)
        if width is None:
            return None
        fixed = body[2: 2 + width]
        fields: dict[str, str] = {}
        for part in body[2 + width:].split("|"):
            if len(part) >= 2:
                fields.setdefault(part[:2], part[2:])
        self.library.note(command)
        lib, esc, now = self.library, _koha_escape, now18()
        if command == "93":
            ok = fields.get("CN") == SIP_USER and fields.get("CO") == SIP_PASSWORD
            return "941" if ok else "940"
        if command == "99":
            yn = {True: "Y", False: "N"}
            return (f"98{yn[self.online]}Y{yn[self.checkout_ok]}YNN020003{now}2.0EAO{INSTITUTION}|AMKoha Test|"
                    f"BXYYYYYYYYYYYNNNNN|AN|")
        pid = fields.get("AA", "")
        patron = lib.patrons.get(pid)
        if command in ("63", "23"):
            status = (("Y" if patron.blocked else " ") + " " * 13) if patron else "Y" * 4 + " " * 10
            name = esc(patron.name) if patron else ""
            valid = "Y" if patron else "N"
            tail = f"AO{INSTITUTION}|AA{pid}|AE{name}|BL{valid}|"
            if fields.get("AD"):
                tail += "CQ" + ("Y" if patron and fields["AD"] == patron.password else "N") + "|"
            if command == "23":
                return f"24{status}000{now}{tail}"
            loans = lib.loans_of(pid)
            overdue = lib.overdue_of(pid, now[:8])
            holds = patron.holds_ready if patron else []
            pending = patron.holds_pending if patron else []
            fines = patron.fines if patron else []
            summary = fixed[21:31]
            detail = ""
            for fid, pos, values in (("AS", 0, holds), ("AT", 1, overdue), ("AU", 2, loans),
                                     ("AV", 3, fines), ("CD", 5, pending)):
                if summary[pos: pos + 1] == "Y":
                    detail += "".join(f"{fid}{esc(v)}|" for v in _page(values, fields.get("BP"), fields.get("BQ")))
            limit = f"CB{patron.limit:04d}|" if patron else ""
            fee = f"BV{patron.fee_amount}.00|BHJPY|" if patron and patron.fee_amount else ""
            # Koha sends counts, the limit, details and its own extension fields.
            return (f"64{status}000{now}{len(holds):04d}{len(overdue):04d}{len(loans):04d}{len(fines):04d}0000"
                    f"{len(pending):04d}{tail}{limit}{fee}{detail}PB19800101|PCADULT|PIY|AFGreetings from Koha|")
        item_id = fields.get("AB", "")
        item = lib.items.get(item_id)
        if command == "17":
            if item is None:
                return f"18010101{now}AB{item_id}|AJ|AFItem unknown|"
            holder = lib.loans.get(item_id)
            due = f"AH{holder[1]}|" if holder else ""
            return (f"18{lib.circulation_status(item_id)}0001{now}{due}AB{item_id}|AJ{esc(item.title)}|"
                    f"CK{item.media}|AQMAIN|APMAIN|")
        if command == "11" and not (self.online and self.checkout_ok):
            with lib.lock:
                lib.checkouts.append({"patron": pid, "item": item_id, "outcome": "refused"})
            return (f"120NUN{now}AO{INSTITUTION}|AA{pid}|AB{item_id}|AJ|AH|"
                    f"AFCheckout not allowed at this time|")
        if command == "11":
            out = lib.checkout(pid, item_id, fixed[1:2], fixed[2:20], fixed[20:38])
            msg = f"AF{out.message}|" if out.message else ""
            return (f"12{'1' if out.ok else '0'}{'Y' if out.renewal else 'N'}U{'Y' if out.ok else 'N'}{now}"
                    f"AO{INSTITUTION}|AA{pid}|AB{item_id}|AJ{esc(out.title)}|AH{out.due}|{msg}")
        if command == "29":
            out = lib.renew(pid, item_id, fixed[2:20], 28)
            msg = f"AF{out.message}|" if out.message else ""
            return (f"30{'1' if out.ok else '0'}{'Y' if out.ok else 'N'}UN{now}AO{INSTITUTION}|AA{pid}|AB{item_id}|"
                    f"AJ{esc(out.title)}|AH{out.due}|{msg}")
        if command == "65":
            renewed, unrenewed = [], []
            for loan in lib.loans_of(pid):
                (renewed if lib.renew(pid, loan, fixed[:18], 28).ok else unrenewed).append(loan)
            return (f"661{len(renewed):04d}{len(unrenewed):04d}{now}AO{INSTITUTION}|"
                    + "".join(f"BM{i}|" for i in renewed) + "".join(f"BN{i}|" for i in unrenewed))
        if command == "09":
            ok, alert, title, message = lib.checkin(item_id, fixed[:1], fixed[1:19], fixed[19:37])
            hold = "CV01|CLHOLDS|" if ok and alert else ""          # Koha: alert type 01 = hold here
            msg = f"AF{message}|" if message else ""
            return (f"10{'1' if ok else '0'}{'Y' if ok else 'N'}U{'Y' if alert else 'N'}{now}AO{INSTITUTION}|"
                    f"AB{item_id}|AQMAIN|AJ{esc(title)}|{hold}{msg}")
        if command == "35":
            return f"36Y{now}AO{INSTITUTION}|AA{pid}|"
        return None


def _page(values: list[str], start: str | None, end: str | None) -> list[str]:
    """BP/BQ paging (1-based, inclusive); missing or junk bounds mean the whole list."""
    first = int(start) if start and start.isdigit() else 1
    last = int(end) if end and end.isdigit() else len(values)
    return values[max(first, 1) - 1: last]


def _koha_escape(text: str) -> str:
    return text.replace("|", "&#124;")


# --------------------------------------------------------------------------- fault proxy

RESPONSE_FAULTS = ("drop", "delay", "garbage", "noise", "corrupt", "crlf", "split", "stale", "ask_resend",
                   "duplicate", "other_item")
REQUEST_FAULTS = ("drop", "corrupt")


class FaultProxy(_ThreadedServer):
    """TCP proxy in front of an ACS that damages frames on demand.

    Response faults (applied to the next frames from the ACS, one each):
      drop        close both sides instead of delivering (the ACS did the work)
      delay       deliver after `delay` seconds (longer than the client's timeout)
      garbage     a junk frame before the real one
      noise       junk bytes glued in front of the real frame (checksum fails)
      corrupt     one byte inside the frame flipped (checksum fails -> 97)
      crlf        LF after the CR
      split       one byte per send
      stale       a valid frame with another AY first (must be discarded)
      ask_resend  a 96 instead of the response (the ACS then replays it on the resend)
      duplicate   the response twice (a late copy is waiting when the next request goes out)
      other_item  first a well-formed answer about another item, same AY (must be discarded)
    Request faults (applied to the next frames from the client):
      drop        close both sides before the ACS sees the request
      corrupt     one byte flipped (the ACS answers 96)
    With `ssl_context`, the proxy terminates TLS in front of a plain ACS.
    """

    def __init__(self, upstream: tuple[str, int], *, ssl_context: ssl.SSLContext | None = None,
                 delay: float = 1.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self.response_faults: deque[str] = deque()
        self.request_faults: deque[str] = deque()
        self.client_frames: list[bytes] = []
        self.server_frames: list[bytes] = []
        super().__init__(ssl_context)

    def fail_responses(self, *faults: str) -> None:
        assert all(f in RESPONSE_FAULTS for f in faults), faults
        with self._lock:
            self.response_faults.extend(faults)

    def fail_requests(self, *faults: str) -> None:
        assert all(f in REQUEST_FAULTS for f in faults), faults
        with self._lock:
            self.request_faults.extend(faults)

    def hang_up(self) -> None:
        """Close every open connection, like an ACS dropping idle terminals."""
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _take(self, queue: deque[str]) -> str | None:
        with self._lock:
            return queue.popleft() if queue else None

    def handle(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            return
        upstream.settimeout(0.1)
        with self._lock:
            self._socks.append(upstream)
        closed = threading.Event()
        pump = threading.Thread(target=self._pump_responses, args=(upstream, client, closed), daemon=True)
        with self._lock:
            self._threads.append(pump)
        pump.start()
        try:
            self._pump_requests(client, upstream, closed)
        finally:
            closed.set()
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            pump.join(3)
            upstream.close()

    def _frames(self, source: socket.socket, closed: threading.Event) -> Iterator[bytes]:
        buffer = b""
        while not (self.stopping or closed.is_set()):
            data = self.recv(source)
            if data is None:
                continue
            if not data:
                return
            buffer += data
            while b"\r" in buffer:
                frame, buffer = buffer.split(b"\r", 1)
                yield frame + b"\r"

    def _pump_requests(self, client: socket.socket, upstream: socket.socket, closed: threading.Event) -> None:
        for frame in self._frames(client, closed):
            with self._lock:
                self.client_frames.append(frame.lstrip(b"\n"))
            fault = self._take(self.request_faults)
            if fault == "drop":
                return
            if fault == "corrupt":
                frame = _flip(frame)
            upstream.sendall(frame)

    def _pump_responses(self, upstream: socket.socket, client: socket.socket, closed: threading.Event) -> None:
        try:
            for frame in self._frames(upstream, closed):
                with self._lock:
                    self.server_frames.append(frame)
                fault = self._take(self.response_faults)
                if fault == "drop":
                    closed.set()
                    client.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "delay":
                    time.sleep(self.delay)
                elif fault == "garbage":
                    client.sendall(b"\xff\xfe\x00garbage frame\r")
                elif fault == "noise":
                    frame = b"#!~" + frame
                elif fault == "corrupt":
                    frame = _flip(frame)
                elif fault == "crlf":
                    frame += b"\n"
                elif fault == "stale":
                    client.sendall(_other_sequence(frame))
                elif fault == "ask_resend":
                    frame = b"96AZFEF6\r"
                elif fault == "duplicate":
                    frame += frame
                elif fault == "other_item":
                    client.sendall(_other_item(frame))
                if fault == "split":
                    for i in range(len(frame)):
                        client.sendall(frame[i: i + 1])
                else:
                    client.sendall(frame)
        except OSError:
            pass
        finally:
            closed.set()


def _flip(frame: bytes) -> bytes:
    """Change one byte in the first field so the checksum no longer verifies."""
    i = min(6, len(frame) - 2)
    return frame[:i] + bytes([frame[i] ^ 0x01]) + frame[i + 1:]


def _other_item(frame: bytes) -> bytes:
    """The same answer about item 0000000000 titled 'STALE', checksum redone if there is one."""
    from pysip2 import calculate_checksum

    body = re.sub(rb"\|AB[^|]*\|", b"|AB0000000000|", frame.rstrip(b"\r"), count=1)
    body = re.sub(rb"AB[^|]*\|AJ[^|]*\|", b"AB0000000000|AJSTALE|", body, count=1)
    m = re.search(rb"AZ[0-9A-F]{4}\Z", body)
    if m:
        prefix = body[: m.start() + 2]
        body = prefix + calculate_checksum(prefix).encode()
    return body + b"\r"


def _other_sequence(frame: bytes) -> bytes:
    """A believable late frame: other AY, title 'STALE', correct checksum (pysip2's own function)."""
    from pysip2 import calculate_checksum

    m = re.search(rb"AY(\d)AZ[0-9A-F]{4}\r\Z", frame)
    assert m, "stale fault needs a checksummed frame"
    body = re.sub(rb"\|AJ[^|]*\|", b"|AJSTALE|", frame[: m.start()], count=1)
    other = str((int(m.group(1)) + 5) % 10).encode()
    prefix = body + b"AY" + other + b"AZ"
    return prefix + calculate_checksum(prefix).encode() + b"\r"


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path                 # a CA that did not sign the server certificate

    def server_context(self, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        if maximum is not None:
            ctx.maximum_version = maximum
        return ctx


def _make_tls_files(directory: Path) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca("Test SIP2 CA")
    _, other_cert = ca("Unrelated CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("sip.test")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                     directory / "other-ca.pem")
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.other_ca.write_bytes(other_cert.public_bytes(pem))
    files.cert.write_bytes(cert.public_bytes(pem))
    files.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def sip2_library() -> FakeLibrary:
    return FakeLibrary.seeded()


@pytest.fixture
def pysip2_acs(sip2_library: FakeLibrary) -> Iterator[RunningAcs]:
    with run_pysip2_acs(sip2_library) as acs:
        yield acs


@pytest.fixture
def koha_acs(sip2_library: FakeLibrary) -> Iterator[KohaQuirksAcs]:
    acs = KohaQuirksAcs(sip2_library)
    yield acs
    acs.stop()


@pytest.fixture
def sip2_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: `sip2_proxy((host, port), ssl_context=None, delay=1.0)` -> running FaultProxy."""
    proxies: list[FaultProxy] = []

    def make(upstream: tuple[str, int], **kwargs) -> FaultProxy:
        proxy = FaultProxy(upstream, **kwargs)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture(scope="session")
def sip2_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return _make_tls_files(tmp_path_factory.mktemp("sip2-tls"))


def sip2_config(host: str, port: int, **overrides):
    """A fast test configuration: plain TCP (explicit), utf-8, short timeouts, login on."""
    from kiosk.sync.sip2_client import Sip2Config

    settings = dict(host=host, port=port, tls=False, charset="utf-8", login_user=SIP_USER,
                    login_password=SIP_PASSWORD, location="MAIN", timeout=1.0, connect_timeout=1.0,
                    attempts=3, backoff=0.01, backoff_max=0.02)
    settings.update(overrides)
    return Sip2Config(**settings)
