"""Draining pending loans to the REST catalogue: the kiosk against a naive client, in one run.

Run: .venv/bin/python bench/bench_drain_rest.py [--loans N]
The server is kiosk_testing/rest_server.py (real TLS on 127.0.0.1, ThreadingHTTPServer,
the same in-memory library the tests use). Rows, each draining N fresh loans into a
fresh server:
- naive client: one POST per loan on a new TLS connection each (`Connection: close`);
- keep-alive, one POST per loan: the kiosk's session, without batches;
- kiosk client: RestCatalogue.checkout_many, MAX_BATCH loans per POST, keep-alive;
- kiosk worker: the whole durable path — encrypted outbox, mark in flight, batched
  send, acknowledge and purge with fsyncs — through OutboxWorker.drain_once: what
  "draining N pending loans" means on a kiosk.
The table is printed twice: with the server checking every request and answer against
catalogue_api.yaml (as in the tests; openapi-core costs milliseconds per request and
per loan, and dominates every row), and without that check (the server's own work
only), which shows what the client saves. Ratios are against the naive client of the
same table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from kiosk.core.catalogue import LoanRequest  # noqa: E402
from kiosk.store.database import open_store  # noqa: E402
from kiosk.store.outbox import Outbox  # noqa: E402
from kiosk.store.sealed import DeviceKey  # noqa: E402
from kiosk.sync.outbox_worker import OutboxWorker  # noqa: E402
from kiosk.sync.rest_backend import MAX_BATCH, RestCatalogue  # noqa: E402
from kiosk_testing.rest_server import (  # noqa: E402
    PATRON_OK,
    TOKEN,
    CatalogueServer,
    RestLibrary,
    make_tls_files,
    seed,
)


def library(n: int) -> RestLibrary:
    data = seed()
    data["patrons"][0]["limit"] = None
    data["items"] += [{"id": f"19{i:08d}", "title": f"bench {i}", "media": "book"} for i in range(n)]
    return RestLibrary(data)


def loans(n: int) -> list[LoanRequest]:
    now = datetime.now(timezone.utc)
    return [LoanRequest(f"b-{i}", PATRON_OK, f"19{i:08d}", now) for i in range(n)]


Drain = Callable[[RestCatalogue, list[LoanRequest]], None]


def run(tls, n: int, drain: Drain, *, keep_alive: bool = True, check_contract: bool) -> tuple[float, int, int]:
    """(seconds, requests, connections) for draining n fresh loans into a fresh server."""
    server = CatalogueServer(library(n), context=tls.server_context(), check_contract=check_contract)
    catalogue = RestCatalogue(server.url, token=TOKEN, ca_bundle=tls.ca, timeout=30, retries=0)
    if not keep_alive:
        catalogue._session.headers["Connection"] = "close"
    try:
        started = time.perf_counter()
        drain(catalogue, loans(n))
        elapsed = time.perf_counter() - started
        assert len(server.library.lent) == n and not server.contract_violations()
        return elapsed, len(server.requests), server.connections
    finally:
        catalogue.close()
        server.stop()


def one_by_one(catalogue: RestCatalogue, pending: list[LoanRequest]) -> None:
    for loan in pending:
        assert catalogue.checkout(loan).ok


def batched(catalogue: RestCatalogue, pending: list[LoanRequest]) -> None:
    for start in range(0, len(pending), MAX_BATCH):
        assert all(r.ok for r in catalogue.checkout_many(pending[start:start + MAX_BATCH]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=5000)
    n = parser.parse_args().loans
    tables = {}
    with tempfile.TemporaryDirectory() as d:
        tls = make_tls_files(Path(d))
        for checked in (True, False):
            rows = []
            for label, drain, keep_alive in (
                ("naive: new TLS connection per loan", one_by_one, False),
                ("keep-alive, one POST per loan", one_by_one, True),
                (f"kiosk client: {MAX_BATCH} loans per POST", batched, True),
                ("kiosk worker (durable drain)", None, True),
            ):
                if drain is None:
                    work = Path(d) / f"worker-{len(tables)}"
                    rows.append((label, run_worker(tls, n, work, check_contract=checked)))
                else:
                    rows.append((label, run(tls, n, drain, keep_alive=keep_alive, check_contract=checked)))
            tables["server checks the contract" if checked else "server without contract checks"] = rows
    for title, rows in tables.items():
        base = rows[0][1][0]
        print(f"Draining {n} loans over HTTPS to 127.0.0.1, {title}")
        print(f"{'':40} {'seconds':>8} {'loans/s':>8} {'requests':>9} {'conns':>6} {'vs naive':>9}")
        for label, (seconds, requests, connections) in rows:
            print(f"{label:40} {seconds:8.2f} {n / seconds:8.0f} {requests:9d} {connections:6d} {base / seconds:8.2f}x")
        print()
    for title, rows in tables.items():
        base = rows[0][1][0]
        print(f"{title}: kiosk client {base / rows[2][1][0]:.1f}x, kiosk worker {base / rows[3][1][0]:.1f}x "
              f"the naive client  (target >= 5x)")


def run_worker(tls, n: int, work: Path, *, check_contract: bool) -> tuple[float, int, int]:
    """The outbox worker draining n journaled loans; the journaling is not timed."""
    work.mkdir()
    store = open_store(work / "kiosk.db")
    clock = lambda: datetime.now().astimezone()  # noqa: E731
    outbox = Outbox(store, DeviceKey.load_or_create(work / "device.key"), clock, capacity=n + 10)
    with outbox.batch():
        for loan in loans(n):
            outbox.append(loan)
    server = CatalogueServer(library(n), context=tls.server_context(), check_contract=check_contract)
    catalogue = RestCatalogue(server.url, token=TOKEN, ca_bundle=tls.ca, timeout=30, retries=0)
    try:
        drainer = OutboxWorker(outbox, catalogue, clock, on_result=lambda r: None)
        started = time.perf_counter()
        report = drainer.drain_once()
        elapsed = time.perf_counter() - started
        assert report.acknowledged == n and outbox.count() == 0, report
        assert len(server.library.lent) == n and not server.contract_violations()
        return elapsed, len(server.requests), server.connections
    finally:
        catalogue.close()
        server.stop()
        store.close()


if __name__ == "__main__":
    main()
