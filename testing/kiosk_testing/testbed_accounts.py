"""One patron with a bit of everything, on every catalogue the tests use (named to load after sip2_server).

The SIP2 peers get it from `FakeLibrary.seeded()` (kiosk_testing.sip2_server); the REST
test server and the demo's local catalogue get the same account here in LocalCatalogue's
seed format, so tests/test_account_backends.py runs one journey against all four.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from kiosk_testing.sip2_server import (
    ACCOUNT_TITLES,
    FINE_LINE,
    HOLD_PENDING_TITLE,
    HOLD_READY_TITLE,
    INSTITUTION,
    ITEM_GINGA,
    ITEM_KOKORO,
    ITEM_MAIHIME,
    ITEM_RASHOMON,
    ITEM_SANSHIRO,
    PATRON_ACCOUNT,
    PATRON_OK,
    TERMINAL_PASSWORD,
    FakeLibrary,
    KohaQuirksAcs,
    run_pysip2_acs,
    sip2_config,
)

__all__ = [
    "ACCOUNT_TITLES", "FINE_LINE", "HOLD_PENDING_TITLE", "HOLD_READY_TITLE", "ITEM_GINGA", "ITEM_KOKORO",
    "ITEM_MAIHIME", "ITEM_RASHOMON", "ITEM_SANSHIRO", "PATRON_ACCOUNT", "OTHER_PATRON", "account_seed",
    "seeded_library", "account_backend",
]

OTHER_PATRON = "2000000088888"
FAR = "2099-01-01"
PAST = "2020-01-01"


def seeded_library() -> FakeLibrary:
    return FakeLibrary.seeded()


def account_seed() -> dict[str, Any]:
    """The same account in LocalCatalogue's seed format (also RestLibrary's)."""
    return {
        "patrons": [
            {"id": PATRON_ACCOUNT, "name": "佐藤 花子", "password": "2468", "limit": 10, "charged": 0,
             "blocked": [], "holds": [{"title": HOLD_READY_TITLE, "ready": True},
                                      {"title": HOLD_PENDING_TITLE, "ready": False}],
             "fines": [{"description": FINE_LINE, "amount": "300"}], "fee_amount": "300", "currency": "JPY"},
            {"id": PATRON_OK, "name": "山田 太郎", "password": "1234", "limit": 10, "charged": 0, "blocked": []},
            {"id": OTHER_PATRON, "name": "Other Patron", "password": "0000", "limit": 10, "charged": 0,
             "blocked": []},
        ],
        "items": [
            {"id": ITEM_KOKORO, "title": ACCOUNT_TITLES[ITEM_KOKORO], "on_loan_to": PATRON_ACCOUNT, "due_date": FAR},
            {"id": ITEM_MAIHIME, "title": ACCOUNT_TITLES[ITEM_MAIHIME], "on_loan_to": PATRON_ACCOUNT,
             "due_date": PAST},
            {"id": ITEM_GINGA, "title": ACCOUNT_TITLES[ITEM_GINGA], "on_loan_to": PATRON_ACCOUNT, "due_date": FAR,
             "on_hold_for": OTHER_PATRON},
            {"id": ITEM_SANSHIRO, "title": ACCOUNT_TITLES[ITEM_SANSHIRO], "on_loan_to": PATRON_ACCOUNT,
             "due_date": FAR, "renewals": 2},
            {"id": ITEM_RASHOMON, "title": ACCOUNT_TITLES[ITEM_RASHOMON], "on_loan_to": OTHER_PATRON,
             "due_date": FAR, "on_hold_for": PATRON_OK},
        ],
    }


class _Peer:
    """What a test may ask of the library behind a backend."""

    def __init__(self, last_no_block: Callable[[], bool]) -> None:
        self.last_checkin_no_block = last_no_block


@contextlib.contextmanager
def account_backend(name: str, tmp_path: Path, clock: Callable[[], datetime] = datetime.now,
                    ) -> Iterator[tuple[Any, _Peer]]:
    """(catalogue, peer) for "pysip2", "koha", "rest" or "local", seeded with the account."""
    if name in ("pysip2", "koha"):
        from kiosk.sync.sip2_backend import Sip2Catalogue
        from kiosk.sync.sip2_client import Sip2Client

        library = seeded_library()
        peer = _Peer(lambda: library.checkins[-1]["no_block"] == "Y")
        with contextlib.ExitStack() as stack:
            if name == "pysip2":
                acs = stack.enter_context(run_pysip2_acs(library))
                host, port = acs.host, acs.port
            else:
                koha = KohaQuirksAcs(library)
                stack.callback(koha.stop)
                host, port = koha.host, koha.port
            client = Sip2Client(sip2_config(host, port), sleep=lambda s: None)
            catalogue = Sip2Catalogue(client, INSTITUTION, TERMINAL_PASSWORD, clock=clock, location="MAIN")
            stack.callback(catalogue.close)
            yield catalogue, peer
        return
    if name == "rest":
        from kiosk_testing.rest_server import CatalogueServer, RestLibrary, fast_catalogue

        rest_library = RestLibrary(account_seed())
        server = CatalogueServer(rest_library)
        rest = fast_catalogue(server, None)
        try:
            yield rest, _Peer(lambda: rest_library.returned[-1][2])
        finally:
            rest.close()
            server.stop()
        violations = server.contract_violations()
        assert not violations, f"requests/answers that break catalogue_api.yaml: {violations}"
        return
    if name == "local":
        from kiosk.sync.local_catalogue import LocalCatalogue

        local = LocalCatalogue(tmp_path / "catalogue.json")
        local.seed(account_seed())

        def last_offline() -> bool:
            return bool(local._db.table("returns").all()[-1]["offline"])

        try:
            yield local, _Peer(last_offline)
        finally:
            local.close()
        return
    raise ValueError(name)
