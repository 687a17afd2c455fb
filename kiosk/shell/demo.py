"""The demo's simulated devices, driven from the on-screen control panel.

Implements the panel's `DemoControls` (kiosk/screens/demo_panel.py): virtual My
Number Cards from the demo PKI go in and out of the virtual reader, sample barcodes
are "scanned". The demo catalogue's patrons are linked to the registered demo cards
the first time the demo runs, as counter staff would do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiosk.card.demo_pki import DemoPki, ensure_demo_pki
from kiosk.card.virtual_card import VirtualJpkiCard
from kiosk.core.events import Barcode
from kiosk.sync.local_catalogue import LocalCatalogue


class DemoDevices:
    def __init__(self, pki: DemoPki, state_dir: Path, seed: dict) -> None:
        self.pki = pki
        self.state_dir = state_dir
        self.seed = seed
        self.reader: Any = None
        self.controller: Any = None

    @classmethod
    def prepare(cls, data_dir: Path, catalogue: Any) -> "DemoDevices":
        pki = ensure_demo_pki(data_dir / "demo-pki")
        seed = LocalCatalogue.demo_seed()
        # Only the demo's own catalogue gets the counter's links made for it; a real
        # catalogue (a demo pointed at a test ILS) keeps the links its staff made.
        links = seed.get("card_links", {}) if isinstance(catalogue, LocalCatalogue) else {}
        for card_name, patron_id in links.items():
            card = pki.cards.get(card_name)
            if card is not None and card.cert_hash and catalogue.resolve_identity(card.cert_hash) is None:
                catalogue.link_identity(card.cert_hash, patron_id)
        state_dir = data_dir / "demo-cards"
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls(pki, state_dir, seed)

    @property
    def ca_pem_path(self) -> Path:
        return self.pki.ca_pem_path

    def attach_reader(self, reader: Any) -> None:
        self.reader = reader

    def attach_controller(self, controller: Any) -> None:
        self.controller = controller

    # -- DemoControls ---------------------------------------------------------

    def card_names(self) -> list[str]:
        return list(self.pki.cards)

    def card_description(self, name: str) -> str:
        return self.pki.cards[name].description

    def insert_card(self, name: str) -> None:
        card = VirtualJpkiCard(self.pki.profile(name), state_path=self.state_dir / f"{name}.json")
        self.reader.insert(card)

    def remove_card(self) -> None:
        self.reader.remove()

    def reset_cards(self) -> None:
        """Give every demo card its PIN tries back (a real card needs the city office)."""
        for f in self.state_dir.glob("*.json"):
            f.unlink()

    def sample_barcodes(self) -> list[tuple[str, str]]:
        items = [(i["title"], i["id"]) for i in self.seed["items"]]
        cards = [(f"図書館カード {p['id']}", p["id"]) for p in self.seed["patrons"]]
        return cards + items

    def scan(self, code: str) -> None:
        if self.controller is not None:
            self.controller.post(Barcode(code))
