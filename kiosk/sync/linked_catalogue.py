"""Circulation from one backend, card-identity links from another.

SIP2 has no message for card-identity (MyKey ID) links, so a SIP2 site keeps its
links in a REST link service (the same OpenAPI contract, kiosk/sync/catalogue_api.yaml)
while loans go over SIP2. Config: `catalogue.identity_links = "rest"`.
"""

from __future__ import annotations

from datetime import date

from kiosk.core.catalogue import (
    Catalogue,
    ItemInfo,
    LoanRequest,
    LoanResult,
    PatronAccount,
    PatronStatus,
    RenewAllResult,
)


class LinkedCatalogue:
    def __init__(self, circulation: Catalogue, links: Catalogue) -> None:
        self.circulation = circulation
        self.links = links

    def patron_status(self, patron_id: str, password: str | None = None) -> PatronStatus:
        return self.circulation.patron_status(patron_id, password)

    def item_info(self, item_id: str) -> ItemInfo:
        return self.circulation.item_info(item_id)

    def checkout(self, loan: LoanRequest) -> LoanResult:
        return self.circulation.checkout(loan)

    def renew(self, patron_id: str, item_id: str, key: str | None = None) -> LoanResult:
        return self.circulation.renew(patron_id, item_id, key)

    def renew_all(self, patron_id: str, key: str | None = None) -> RenewAllResult:
        return self.circulation.renew_all(patron_id, key)

    def patron_account(self, patron_id: str) -> PatronAccount:
        return self.circulation.patron_account(patron_id)

    def checkin(self, request: LoanRequest) -> LoanResult:
        return self.circulation.checkin(request)

    def end_session(self, patron_id: str) -> None:
        self.circulation.end_session(patron_id)

    def checkout_hold(self) -> str | None:
        """The circulation backend's word on checkouts (CheckoutGate), if it has one."""
        gate = getattr(self.circulation, "checkout_hold", None)
        return gate() if gate is not None else None

    def resolve_identity(self, cert_hash: str) -> str | None:
        return self.links.resolve_identity(cert_hash)

    def link_identity(self, cert_hash: str, patron_id: str, birth_date: date | None = None) -> None:
        self.links.link_identity(cert_hash, patron_id, birth_date)

    def unlink_identity(self, cert_hash: str) -> None:
        self.links.unlink_identity(cert_hash)

    def reset(self) -> None:
        self.circulation.reset()
        self.links.reset()

    def close(self) -> None:
        self.circulation.close()
        self.links.close()
