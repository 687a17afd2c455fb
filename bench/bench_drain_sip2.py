"""Draining pending loans to a SIP2 ACS: the kiosk's client against a naive one, in one run.

Run: .venv/bin/python bench/bench_drain_sip2.py [--loans N]
The ACS is pysip2 on 127.0.0.1 (tests/support/sip2_server.py), in a background
thread of this process. Rows:
- kiosk client: one persistent, logged-in connection (kiosk/sync/sip2_client.py), as
  the outbox worker uses it;
- naive client: a new TCP connection, login (93) and checkout per loan, then close;
- kiosk worker: the whole durable path — encrypted outbox, mark sent, send,
  acknowledge and purge with fsyncs — through OutboxWorker.drain_once.
Then the kiosk's own overhead per checkout (journal + seal + fsyncs), beside the
socket round trip it sits on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.catalogue import LoanRequest  # noqa: E402
from kiosk.outbox import Outbox  # noqa: E402
from kiosk.sealed import DeviceKey  # noqa: E402
from kiosk.store import open_store  # noqa: E402
from kiosk.sync.outbox_worker import OutboxWorker  # noqa: E402
from kiosk.sync.sip2_backend import Sip2Catalogue  # noqa: E402
from kiosk.sync.sip2_client import Sip2Client  # noqa: E402
from tests.support.sip2_server import (  # noqa: E402
    INSTITUTION, PATRON_OK, FakeItem, FakeLibrary, KohaQuirksAcs, _make_tls_files, run_pysip2_acs,
    sip2_config,
)


def library(items: list[str]) -> FakeLibrary:
    lib = FakeLibrary.seeded()
    lib.patrons[PATRON_OK].limit = 10 ** 9
    lib.items.update({i: FakeItem(i, f"本 {i[-4:]}") for i in items})
    return lib


def loans(items: list[str]) -> list[LoanRequest]:
    now = datetime.now().astimezone()
    return [LoanRequest(f"t{i}", PATRON_OK, item, now) for i, item in enumerate(items)]


TLS = None        # set in main(): the TLS files when the ACS speaks TLS


def catalogue(host: str, port: int) -> Sip2Catalogue:
    extra = dict(tls=True, ca_file=str(TLS.ca), error_detection=False) if TLS else {}
    return Sip2Catalogue(Sip2Client(sip2_config(host, port, timeout=5.0, **extra)), institution=INSTITUTION)


def kiosk_client(acs, pending: list[LoanRequest]) -> float:
    cat = catalogue(acs.host, acs.port)
    start = time.perf_counter()
    for loan in pending:
        assert cat.checkout(loan).ok
    elapsed = time.perf_counter() - start
    cat.close()
    return elapsed


def naive_client(acs, pending: list[LoanRequest]) -> float:
    start = time.perf_counter()
    for loan in pending:
        cat = catalogue(acs.host, acs.port)
        assert cat.checkout(loan).ok
        cat.close()
    return time.perf_counter() - start


def kiosk_worker(acs, pending: list[LoanRequest], directory: Path) -> tuple[float, list[float]]:
    store = open_store(directory / "kiosk.db")
    key = DeviceKey.load_or_create(directory / "device.key")
    clock = lambda: datetime.now().astimezone()  # noqa: E731
    outbox = Outbox(store, key, clock, capacity=len(pending) + 10)
    journal = []
    for loan in pending:
        t = time.perf_counter()
        outbox.append(loan)
        journal.append(time.perf_counter() - t)
    cat = catalogue(acs.host, acs.port)
    worker = OutboxWorker(outbox, cat, clock, on_result=lambda r: None)
    start = time.perf_counter()
    report = worker.drain_once()
    elapsed = time.perf_counter() - start
    assert report.acknowledged == len(pending) and outbox.stats().pending == 0, report
    cat.close()
    store.close()
    return elapsed, journal


def main() -> None:
    global TLS
    ap = argparse.ArgumentParser()
    ap.add_argument("--loans", type=int, default=5000)
    n = ap.parse_args().loans
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("kiosk client", "naive client", "kiosk worker"):
            items = [f"15{i:08d}" for i in range(n)]
            with run_pysip2_acs(library(items)) as acs:
                pending = loans(items)
                if name == "kiosk client":
                    rows.append((name, kiosk_client(acs, pending)))
                elif name == "naive client":
                    rows.append((name, naive_client(acs, pending)))
                else:
                    seconds, journal = kiosk_worker(acs, pending, Path(tmp))
                    rows.append((name, seconds))
        # The deployed set-up: SIP2 over TLS (kiosk default), a Koha-style ACS.
        (Path(tmp) / "tls").mkdir()
        TLS = _make_tls_files(Path(tmp) / "tls")
        tls_rows = []
        for name, drain in (("kiosk client", kiosk_client), ("naive client", naive_client)):
            items = [f"15{i:08d}" for i in range(n)]
            acs = KohaQuirksAcs(library(items), ssl_context=TLS.server_context())
            try:
                tls_rows.append((name, drain(acs, loans(items))))
            finally:
                acs.stop()
    for title, table in ((f"Draining {n} loans to pysip2 on 127.0.0.1 (plain TCP)", rows),
                         (f"Draining {n} loans to a Koha-style ACS on 127.0.0.1 over TLS", tls_rows)):
        base = dict(table)["naive client"]
        print(title)
        print(f"{'':16}{'seconds':>10}{'loans/s':>10}{'vs naive':>10}")
        for name, seconds in table:
            print(f"{name:16}{seconds:10.2f}{n / seconds:10.0f}{base / seconds:9.2f}x")
        print()
    round_trip = dict(rows)["kiosk client"] / n
    worker = dict(rows)["kiosk worker"] / n
    print(f"socket round trip per checkout (kiosk client):    {round_trip * 1000:7.2f} ms")
    print(f"journal per checkout (seal + atomic write):       {statistics.median(journal) * 1000:7.2f} ms median")
    print(f"worker bookkeeping per loan beyond the round trip: {(worker - round_trip) * 1000:6.2f} ms "
          f"(mark sent + settle, two fsynced writes per window of 32)")
    plain = dict(rows)["naive client"] / dict(rows)["kiosk client"]
    tls = dict(tls_rows)["naive client"] / dict(tls_rows)["kiosk client"]
    print(f"kiosk client / naive client: {plain:.2f}x plain TCP, {tls:.2f}x TLS  (target >= 5x)")


if __name__ == "__main__":
    main()
