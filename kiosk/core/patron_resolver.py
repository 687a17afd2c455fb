"""From an authenticated card to a library card number.

Online, the central catalogue holds the links (MyKey ID / card identity -> library
card number) and is asked first; each answer refreshes the kiosk's encrypted link
cache, which answers alone only when the catalogue cannot be reached. A card the
catalogue does not know (renewed certificate, new card) is never answered from a
stale cache entry: the patron is asked to register again at the counter.
"""

from __future__ import annotations

import logging
from typing import Protocol

from kiosk.core.card import CardIdentity
from kiosk.core.catalogue import Catalogue, CatalogueUnavailable
from kiosk.core.events import PatronResolved
from kiosk.logs import log_event

log = logging.getLogger("kiosk.resolver")


class LinkCacheLike(Protocol):
    def put(self, cert_hash: str, patron_id: str) -> None: ...

    def get(self, cert_hash: str) -> str | None: ...

    def forget(self, cert_hash: str) -> None: ...


class PatronResolver:
    def __init__(self, catalogue: Catalogue, cache: LinkCacheLike | None) -> None:
        self.catalogue = catalogue
        self.cache = cache

    def resolve(self, identity: CardIdentity, serial: int | None = None) -> PatronResolved:
        key = identity.cert_hash
        try:
            patron_id = self.catalogue.resolve_identity(key)
        except CatalogueUnavailable:
            cached = self.cache.get(key) if self.cache is not None else None
            log_event(log, "resolve.offline", cached=cached is not None)
            if cached is None:
                return PatronResolved(None, unavailable=True, serial=serial)
            return PatronResolved(cached, offline=True, serial=serial)
        if self.cache is not None:
            if patron_id is None:
                self.cache.forget(key)
            else:
                self.cache.put(key, patron_id)
        log_event(log, "resolve.online", linked=patron_id is not None)
        return PatronResolved(patron_id, serial=serial)
