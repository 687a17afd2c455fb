"""Fixtures for the local store, sealing, outbox and outbox worker tests.

Fixture names carry a `store_` prefix (or are specific enough) so they do not clash
with other areas' plugins.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kiosk.core.catalogue import (
    CatalogueUnavailable,
    ItemInfo,
    LoanRequest,
    LoanResult,
    PatronStatus,
    Refusal,
)
from kiosk.store.database import Store, open_store
from kiosk.store.sealed import DeviceKey

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=timezone.utc)

# Canaries: if any of these shows up in a file under the data dir, something is stored in clear.
CANARY_TITLE = "吾輩は猫である・CANARYTITLE"
CANARY_PATRON = "P-CANARY-20250401"
CANARY_ITEM = "ITEMCANARY9784003101018"
CANARY_CERT = "c3a7" * 16


class ManualClock:
    """A clock the test moves by hand; thread-safe enough for reads from a worker."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def make_loan(n: int, *, patron: str = "P0001", offline: bool = False, clock: ManualClock | None = None) -> LoanRequest:
    created = clock() if clock else T0 + timedelta(minutes=n)
    return LoanRequest(
        txn_id=f"txn-{n:04d}",
        patron_id=patron,
        item_id=f"I{n:06d}",
        created_at=created,
        offline=offline,
        due_date=date(2025, 4, 15) if offline else None,
    )


@dataclass
class ScriptedCatalogue:
    """A real in-process Catalogue whose checkout can fail, refuse or be slow on cue.

    `fail_next` CatalogueUnavailable answers come first; `refuse` maps item_id -> Refusal;
    `delay` makes each checkout block (to catch concurrent sends). Records every call.
    """

    fail_next: int = 0
    refuse: dict[str, Refusal] = field(default_factory=dict)
    delay: float = 0.0
    title: str | None = None                                    # title to answer with
    calls: list[str] = field(default_factory=list)
    charged: dict[str, str] = field(default_factory=dict)     # item_id -> patron_id
    in_checkout: int = 0
    max_concurrent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def checkout(self, loan: LoanRequest) -> LoanResult:
        with self._lock:
            self.in_checkout += 1
            self.max_concurrent = max(self.max_concurrent, self.in_checkout)
            self.calls.append(loan.txn_id)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fail_next > 0:
                self.fail_next -= 1
                raise CatalogueUnavailable("connection refused")
            refusal = self.refuse.get(loan.item_id)
            if refusal is not None:
                return LoanResult(loan.txn_id, ok=False, item_id=loan.item_id, refusal=refusal,
                                  message="refused by test catalogue")
            replayed = self.charged.get(loan.item_id) == loan.patron_id
            self.charged[loan.item_id] = loan.patron_id
            return LoanResult(loan.txn_id, ok=True, item_id=loan.item_id,
                              title=self.title or f"title of {loan.item_id}",
                              due_date=date(2025, 4, 15), replayed=replayed)
        finally:
            with self._lock:
                self.in_checkout -= 1

    def patron_status(self, patron_id: str, password: str | None = None) -> PatronStatus:
        return PatronStatus(patron_id=patron_id, valid=True)

    def item_info(self, item_id: str) -> ItemInfo:
        return ItemInfo(item_id=item_id, title=f"title of {item_id}")

    def renew(self, patron_id: str, item_id: str) -> LoanResult:
        raise CatalogueUnavailable("not in this test")

    def end_session(self, patron_id: str) -> None:
        pass

    def resolve_identity(self, cert_hash: str) -> str | None:
        return None

    def link_identity(self, cert_hash: str, patron_id: str, birth_date: date | None = None) -> None:
        pass

    def unlink_identity(self, cert_hash: str) -> None:
        pass


def files_containing(root: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in any file under root, raw or JSON-escaped."""
    hits = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for needle in needles:
            forms = {needle.encode("utf-8"), needle.encode("unicode_escape"),
                     needle.encode("ascii", "backslashreplace")}
            if any(form in data for form in forms):
                hits.append((path.name, needle))
    return hits


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A fresh kiosk data dir (0700) as the real kiosk would use."""
    d = tmp_path / "data"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def store_key(store_dir: Path) -> DeviceKey:
    return DeviceKey.load_or_create(store_dir / "device.key")


@pytest.fixture
def store_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def kiosk_store(store_dir: Path) -> Iterator[Store]:
    store = open_store(store_dir / "kiosk.db")
    yield store
    store.close()


def count_commits(store) -> list[int]:
    """A list that grows by one at every durable commit of `store` (for write-count assertions)."""
    commits: list[int] = []
    real = store._commit
    store._commit = lambda: (commits.append(1), real())[1]
    return commits


def sqlite_rows(path: Path, table: str) -> list[dict]:
    """Every row of `table` in the kiosk DB at `path`, read by a separate connection
    (what a thief with the SD card would see, minus the sealing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
    finally:
        conn.close()


def sqlite_write(path: Path, sql: str, params: tuple = ()) -> None:
    """Change the kiosk DB behind the store's back (tampering, damage), committed."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def disk_bytes(path: Path) -> bytes:
    """The raw bytes of the DB file and its WAL (if any), as on the SD card."""
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")
