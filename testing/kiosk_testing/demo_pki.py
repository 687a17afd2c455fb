"""Fixtures for the card layer: the demo PKI (generated once per run), trust stores, virtual cards.

RSA key generation is the slow part, so `demo_pki` is session-scoped: every area
(card layer, PC/SC, demo, UI) shares one test PKI per pytest run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kiosk.card.demo_pki import DemoPki, ensure_demo_pki
from kiosk.card.identity import TrustStore
from kiosk.card.virtual_card import CardProfile, VirtualJpkiCard
from kiosk.card.virtual_reader import VirtualReader


@pytest.fixture(scope="session")
def demo_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPki:
    """The demo PKI: `.cards[name].profile`, `.ca_pem_path`, `.ca_key` (to issue odd certificates)."""
    return ensure_demo_pki(tmp_path_factory.mktemp("demo-pki"))


@pytest.fixture(scope="session")
def demo_trust(demo_pki: DemoPki) -> TrustStore:
    """The shipped J-LIS anchors plus the demo CA, with test anchors accepted."""
    return TrustStore.shipped(test_paths=[demo_pki.ca_pem_path], accept_test=True)


@pytest.fixture
def make_jpki_card(demo_pki: DemoPki, tmp_path: Path) -> Callable[..., VirtualJpkiCard]:
    """make_jpki_card("registered-1", **profile_overrides) -> a fresh VirtualJpkiCard with its own state file."""
    made: dict[str, int] = {}

    def make(name: str | CardProfile = "registered-1", *, state: Path | None = None,
             **overrides) -> VirtualJpkiCard:
        profile = name if isinstance(name, CardProfile) else demo_pki.profile(name)
        if overrides:
            profile = replace(profile, **overrides)
        n = made[profile.name] = made.get(profile.name, 0) + 1
        return VirtualJpkiCard(profile, state_path=state or tmp_path / f"{profile.name}-{n}.json")

    return make


@pytest.fixture
def jpki_reader() -> Iterator[VirtualReader]:
    """An in-process reader; `.events` lists the CardEvents it emitted."""
    reader = VirtualReader()
    events: list = []
    reader.events = events
    reader.start(events.append)
    yield reader
    reader.stop()


@pytest.fixture
def jpki_now() -> Callable[[], dt.datetime]:
    """Now, frozen for the test: demo certificates are valid relative to when the PKI was made."""
    now = dt.datetime.now(dt.timezone.utc)
    return lambda: now
