"""Draining pending loans to a SIP2 ACS: the kiosk's client against a naive one, in one run.

Run: .venv/bin/python bench/bench_drain_sip2.py [--loans N]
The ACS is pysip2 on 127.0.0.1 (kiosk_testing/sip2_server.py), in a background
thread of this process, first over plain TCP, then over TLS (the kiosk's default;
plain TCP must be configured explicitly). Rows, per transport:
- kiosk client: one persistent, logged-in connection (kiosk/sync/sip2_client.py), as
  the outbox worker uses it;
- naive client: a new TCP connection, login (93) and checkout per loan, then close;
- kiosk worker: the whole durable path — encrypted outbox, mark in flight, send,
  acknowledge and purge with fsyncs — through OutboxWorker.drain_once: what
  "draining 5,000 pending loans" means on a kiosk.
Then the kiosk's own overhead per checkout (journal + seal + fsyncs), beside the
socket round trip it sits on.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from kiosk.core.catalogue import LoanRequest  # noqa: E402
from kiosk.store.database import open_store  # noqa: E402
from kiosk.store.outbox import Outbox  # noqa: E402
from kiosk.store.sealed import DeviceKey  # noqa: E402
from kiosk.sync.outbox_worker import OutboxWorker  # noqa: E402
from kiosk.sync.sip2_backend import Sip2Catalogue  # noqa: E402
from kiosk.sync.sip2_client import Sip2Client  # noqa: E402
from kiosk_testing.sip2_server import (  # noqa: E402
    INSTITUTION,
    PATRON_OK,
    FakeItem,
    FakeLibrary,
    _make_tls_files,
    run_pysip2_acs,
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
    tables: dict[str, list[tuple[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tls").mkdir()
        tls_files = _make_tls_files(Path(tmp) / "tls")
        # plain TCP (only when configured explicitly), then TLS: the kiosk's default.
        for transport, files in (("plain TCP", None), ("TLS", tls_files)):
            TLS = files
            rows = tables[transport] = []
            for name in ("kiosk client", "naive client", "kiosk worker"):
                items = [f"15{i:08d}" for i in range(n)]
                context = files.server_context() if files else None
                with run_pysip2_acs(library(items), ssl_context=context) as acs:
                    pending = loans(items)
                    if name == "kiosk client":
                        rows.append((name, kiosk_client(acs, pending)))
                    elif name == "naive client":
                        rows.append((name, naive_client(acs, pending)))
                    else:
                        work = Path(tmp) / f"worker-{transport.replace(' ', '-')}"
                        work.mkdir()
                        seconds, journal = kiosk_worker(acs, pending, work)
                        rows.append((name, seconds))
    for transport, table in tables.items():
        base = dict(table)["naive client"]
        print(f"Draining {n} loans to pysip2 on 127.0.0.1 over {transport}")
        print(f"{'':16}{'seconds':>10}{'loans/s':>10}{'vs naive':>10}")
        for name, seconds in table:
            print(f"{name:16}{seconds:10.2f}{n / seconds:10.0f}{base / seconds:9.2f}x")
        print()
    plain = dict(tables["plain TCP"])
    round_trip = plain["kiosk client"] / n
    print(f"socket round trip per checkout (kiosk client, plain): {round_trip * 1000:6.2f} ms")
    print(f"journal per checkout (seal + atomic write), median:   {statistics.median(journal) * 1000:6.2f} ms "
          f"(up to {n} pending)")
    print(f"worker bookkeeping per loan beyond the round trip:    {(plain['kiosk worker'] / n - round_trip) * 1000:6.2f} ms "
          f"(mark in flight + settle: two fsynced writes per window)")
    for transport, table in tables.items():
        row = dict(table)
        print(f"{transport:>9}: kiosk client {row['naive client'] / row['kiosk client']:.2f}x, "
              f"kiosk worker (durable drain) {row['naive client'] / row['kiosk worker']:.2f}x the naive client"
              f"  (target >= 5x)")


if __name__ == "__main__":
    main()
