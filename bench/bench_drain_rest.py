"""What keep-alive and batching save when the outbox drains loans over HTTPS.

Run: /tmp/venv/bin/python bench/bench_drain_rest.py [--loans N] [--batch B]
Drains N loans into the test catalogue server (tests/support/rest_server.py: real
TLS on 127.0.0.1, every request validated against catalogue_api.yaml) four ways and
prints one table. Ratios are against one POST per loan on a keep-alive connection,
measured in this run. Loopback has no network latency and the test server spends
most of each request validating it against the contract, so on a real network the
gains from fewer connections and round trips are larger.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.catalogue import LoanRequest  # noqa: E402
from kiosk.sync.rest_backend import MAX_BATCH, RestCatalogue  # noqa: E402
from tests.support.rest_server import (  # noqa: E402
    PATRON_OK, TOKEN, CatalogueServer, RestLibrary, make_tls_files, seed,
)


def library(n: int) -> RestLibrary:
    data = seed()
    data["patrons"][0]["limit"] = None
    data["items"] += [{"id": f"19{i:08d}", "title": f"bench {i}", "media": "book"} for i in range(n)]
    return RestLibrary(data)


def loans(n: int, tag: str) -> list[LoanRequest]:
    now = datetime.now(timezone.utc)
    return [LoanRequest(f"{tag}-{i}", PATRON_OK, f"19{i:08d}", now) for i in range(n)]


def run(tls, n: int, drain: Callable[[RestCatalogue, list[LoanRequest]], None], *,
        keep_alive: bool = True) -> tuple[float, int, int]:
    """(seconds, requests, connections) for draining n fresh loans into a fresh server."""
    server = CatalogueServer(library(n), context=tls.server_context())
    catalogue = RestCatalogue(server.url, token=TOKEN, ca_bundle=tls.ca, timeout=10, retries=0)
    if not keep_alive:
        catalogue._session.headers["Connection"] = "close"
    try:
        pending = loans(n, "b")
        started = time.perf_counter()
        drain(catalogue, pending)
        elapsed = time.perf_counter() - started
        assert len(server.library.lent) == n and not server.contract_violations()
        return elapsed, len(server.requests), server.connections
    finally:
        catalogue.close()
        server.stop()


def one_by_one(catalogue: RestCatalogue, pending: list[LoanRequest]) -> None:
    for loan in pending:
        assert catalogue.checkout(loan).ok


def batched(size: int) -> Callable[[RestCatalogue, list[LoanRequest]], None]:
    def drain(catalogue: RestCatalogue, pending: list[LoanRequest]) -> None:
        for start in range(0, len(pending), size):
            assert all(r.ok for r in catalogue.checkout_many(pending[start:start + size]))
    return drain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tls = make_tls_files(Path(d))
        rows = [
            ("one POST per loan, new TLS connection each", run(tls, args.loans, one_by_one, keep_alive=False)),
            ("one POST per loan, keep-alive (outbox today)", run(tls, args.loans, one_by_one)),
            (f"checkout_many, {args.batch} per POST", run(tls, args.loans, batched(args.batch))),
            (f"checkout_many, {MAX_BATCH} per POST", run(tls, args.loans, batched(MAX_BATCH))),
        ]
    base = rows[1][1][0]
    print(f"{args.loans} loans over HTTPS to 127.0.0.1")
    print(f"{'mode':48} {'seconds':>8} {'loans/s':>8} {'requests':>9} {'conns':>6} {'time vs keep-alive':>19}")
    for label, (seconds, requests, connections) in rows:
        print(f"{label:48} {seconds:8.3f} {args.loans / seconds:8.0f} {requests:9d} {connections:6d} "
              f"{seconds / base:18.2f}x")


if __name__ == "__main__":
    main()
