"""The PC/SC edge: vpcd framing, event rules, and the pyscard reader against real pcscd + vpcd."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time

import pytest
from smartcard import scard

from kiosk.card.apdu_allowlist import AllowlistTransport, ApduRefused
from kiosk.card.pcsc_reader import (
    PCSCD_GONE,
    PcscdGoneError,
    PcscReader,
    Snapshot,
    error_for,
    events_between,
    reader_matches,
)
from kiosk.card.virtual_card import VirtualJpkiCard
from kiosk.card.vpcd_card import VpcdCard, answer, tcp_connector
from kiosk.core.interfaces import CardEvent, CardEventKind, CardGoneError, ReaderGoneError

K = CardEventKind
pcsc = pytest.mark.pcsc
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_KENHOJO = bytes.fromhex("00A4040C0AD3921000310001010408")
SELECT_TOKEN = bytes.fromhex("00A4020C020006")
READ_TOKEN = bytes.fromhex("00B0000014")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")


class TinyCard:
    """The smallest object of the VirtualJpkiCard shape; records what reached it."""

    atr = bytes.fromhex("3BE000FF8131FE4514")

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.power: list[str] = []

    def power_on(self) -> None:
        self.power.append("on")

    def power_off(self) -> None:
        self.power.append("off")

    def reset(self) -> None:
        self.power.append("reset")

    def process(self, apdu: bytes) -> bytes:
        self.seen.append(apdu)
        return bytes(apdu[::-1]) + b"\x90\x00"


class Events:
    """Collects CardEvents from the reader thread; waits for the next one of a kind."""

    def __init__(self) -> None:
        self.q: queue.Queue[CardEvent] = queue.Queue()
        self.all: list[CardEvent] = []

    def __call__(self, event: CardEvent) -> None:
        self.q.put(event)

    def next(self, timeout: float = 10.0) -> CardEvent:
        event = self.q.get(timeout=timeout)
        self.all.append(event)
        return event

    def expect(self, *kinds: CardEventKind, timeout: float = 10.0) -> list[CardEvent]:
        got = [self.next(timeout) for _ in kinds]
        assert [e.kind for e in got] == list(kinds), got
        return got

    def quiet(self, seconds: float) -> list[CardEvent]:
        time.sleep(seconds)
        extra = []
        while not self.q.empty():
            extra.append(self.q.get_nowait())
        return extra


@pytest.fixture
def card(pcsc_demo_pki, tmp_path):
    return VirtualJpkiCard(pcsc_demo_pki.profile("registered-1"), state_path=tmp_path / "card.json")


@pytest.fixture
def reader():
    made: list[PcscReader] = []

    def make(name_filter=None) -> tuple[PcscReader, Events]:
        r = PcscReader(name_filter, poll_interval=0.5, backoff=(0.05, 0.4))
        events = Events()
        r.start(events)
        made.append(r)
        return r, events

    yield make
    for r in made:
        r.stop()


def opened_with_card(pcsc_readers, reader, card):
    """The card on the reader, a started PcscReader that has seen it, and a transport to
    the card: (the served card, reader, events, transport)."""
    served = pcsc_readers.insert(card)
    r, events = reader()
    events.expect(K.READER_AVAILABLE, K.INSERTED)
    return served, r, events, r.open()


# -- vpcd framing, over a real loopback socket, without pcscd -------------------------------------

def _fake_vpcd():
    server = socket.create_server(("127.0.0.1", 0))
    return server, tcp_connector("127.0.0.1", server.getsockname()[1])


def _read_frame(conn: socket.socket) -> bytes:
    head = b""
    while len(head) < 2:
        head += conn.recv(2 - len(head))
    (length,) = struct.unpack(">H", head)
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return body


def test_vicc_answers_split_frames_and_control_codes():
    server, connect = _fake_vpcd()
    tiny = TinyCard()
    served = VpcdCard(tiny, connect)
    served.insert()
    conn, _ = server.accept()
    try:
        conn.sendall(b"\x00")              # a frame split across TCP segments
        time.sleep(0.05)
        conn.sendall(b"\x01\x04")          # get ATR
        assert _read_frame(conn) == tiny.atr
        apdu = bytes.fromhex("00A4040C0AD392F000260100000001")
        conn.sendall(struct.pack(">H", len(apdu)) + apdu[:3])
        time.sleep(0.05)
        conn.sendall(apdu[3:])
        assert _read_frame(conn) == apdu[::-1] + b"\x90\x00"
        conn.sendall(b"\x00\x01\x02\x00\x01\x00\x00\x01\x01")   # reset, off, on: no replies
        conn.sendall(b"\x00\x01\x04")
        assert _read_frame(conn) == tiny.atr
        assert tiny.seen == [apdu]
        assert tiny.power == ["reset", "off", "on"]
        assert (served.stats.apdus, served.stats.bytes_to_card, served.stats.bytes_from_card) == (1, 15, 17)
    finally:
        served.remove()
        conn.close()
        server.close()
    assert tiny.power[-1] == "off"      # leaving the reader powers the card down


def test_vicc_remove_closes_the_connection_and_insert_reconnects():
    server, connect = _fake_vpcd()
    served = VpcdCard(TinyCard(), connect)
    served.insert()
    first, _ = server.accept()
    served.remove()
    first.settimeout(2)
    assert first.recv(1) == b""          # vpcd sees end of stream: the card left
    served.insert()
    second, _ = server.accept()
    second.sendall(b"\x00\x01\x04")
    assert _read_frame(second) == TinyCard.atr
    served.remove()
    first.close(), second.close(), server.close()


def test_vicc_keeps_retrying_until_vpcd_listens():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()                         # nobody listens yet
    served = VpcdCard(TinyCard(), tcp_connector("127.0.0.1", port), retry_interval=0.02)
    served.insert()
    time.sleep(0.1)
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(5)
    conn, _ = server.accept()
    assert served.connected.wait(5)        # the card's side has the connection too (no race with remove)
    served.remove()
    conn.close(), server.close()
    assert served.stats.connections == 1


def test_answer_turns_a_crashing_card_into_a_status_word():
    class Broken(TinyCard):
        def process(self, apdu: bytes) -> bytes:
            raise RuntimeError("boom")

    assert answer(Broken(), b"\x00\xa4\x04\x0c") == b"\x6f\x00"


# -- the pure event rules ----------------------------------------------------------------------

A, B = "Reader A 00 00", "Reader B 00 00"


def test_first_look_reports_availability_then_cards_already_in():
    assert events_between(None, Snapshot(False)) == [CardEvent(K.READER_UNAVAILABLE, "", PCSCD_GONE)]
    assert events_between(None, Snapshot(True, {})) == [CardEvent(K.READER_UNAVAILABLE, "", "no_reader")]
    assert events_between(None, Snapshot(True, {A: True, B: False})) == [
        CardEvent(K.READER_AVAILABLE, A), CardEvent(K.INSERTED, A)]


def test_card_changes_and_nothing_when_nothing_changed():
    empty, full = Snapshot(True, {A: False}), Snapshot(True, {A: True})
    assert events_between(empty, full) == [CardEvent(K.INSERTED, A)]
    assert events_between(full, empty) == [CardEvent(K.REMOVED, A)]
    assert events_between(full, full) == []


def test_pcscd_loss_removes_the_card_first_and_recovery_is_reported_once():
    full = Snapshot(True, {A: True})
    assert events_between(full, Snapshot(False)) == [
        CardEvent(K.REMOVED, A), CardEvent(K.READER_UNAVAILABLE, "", PCSCD_GONE)]
    assert events_between(Snapshot(False), Snapshot(False)) == []
    assert events_between(Snapshot(False), Snapshot(True, {})) == [
        CardEvent(K.READER_UNAVAILABLE, "", "no_reader")]
    assert events_between(Snapshot(True, {}), Snapshot(True, {B: True})) == [
        CardEvent(K.READER_AVAILABLE, B), CardEvent(K.INSERTED, B)]


def test_unplugging_one_of_two_readers_removes_its_card_only():
    before = Snapshot(True, {A: True, B: False})
    assert events_between(before, Snapshot(True, {B: False})) == [CardEvent(K.REMOVED, A)]


def test_reader_filter_and_error_mapping():
    assert reader_matches("SONY FeliCa RC-S300/P 00 00", ["rc-s300"])
    assert not reader_matches("ACS ACR39U 00 00", ["rc-s300"])
    assert reader_matches("anything", [])
    assert isinstance(error_for(scard.SCARD_E_NO_SERVICE, "x"), PcscdGoneError)
    assert str(error_for(scard.SCARD_E_NO_SERVICE, "x")).startswith(PCSCD_GONE)
    gone_reader = error_for(scard.SCARD_E_READER_UNAVAILABLE, "x")
    assert isinstance(gone_reader, ReaderGoneError) and not isinstance(gone_reader, PcscdGoneError)
    assert isinstance(error_for(scard.SCARD_W_REMOVED_CARD, "x"), CardGoneError)
    assert isinstance(error_for(0x80100099, "x"), CardGoneError)


# -- against real pcscd + vpcd -------------------------------------------------------------------

@pcsc
def test_insertion_and_removal_events(pcsc_readers, reader, card):
    r, events = reader()
    (available,) = events.expect(K.READER_AVAILABLE)
    assert available.reader in pcsc_readers.readers
    pcsc_readers.insert(card)
    (inserted,) = events.expect(K.INSERTED)
    assert inserted.reader == pcsc_readers.reader
    pcsc_readers.remove()
    (removed,) = events.expect(K.REMOVED)
    assert removed.reader == pcsc_readers.reader
    assert events.quiet(0.3) == []


@pcsc
def test_card_already_in_the_reader_at_start(pcsc_readers, reader, card):
    pcsc_readers.insert(card)
    r, events = reader()
    assert [e.kind for e in (events.next(), events.next())] == [K.READER_AVAILABLE, K.INSERTED]


@pcsc
def test_transmit_goes_through_the_allowlist(pcsc_readers, reader, card):
    served, r, events, transport = opened_with_card(pcsc_readers, reader, card)
    try:
        assert isinstance(transport, AllowlistTransport)
        assert transport.transmit(SELECT_JPKI) == (b"", 0x9000)
        assert transport.transmit(SELECT_TOKEN) == (b"", 0x9000)
        data, sw = transport.transmit(READ_TOKEN)
        assert sw == 0x9000 and data.rstrip(b" ") == b"JPKIAPICCTOKEN2"
        sent = served.stats.apdus
        with pytest.raises(ApduRefused):
            transport.transmit(SELECT_KENHOJO)            # the My Number AP: never leaves the kiosk
        assert served.stats.apdus == sent
        assert transport.transmit(SELECT_JPKI) == (b"", 0x9000)   # the session goes on
        assert served.stats.apdus == sent + 1
    finally:
        transport.close()


@pcsc
def test_verify_state_does_not_outlive_close(pcsc_readers, reader, card):
    _, r, events, transport = opened_with_card(pcsc_readers, reader, card)
    transport.transmit(SELECT_JPKI)
    transport.transmit(SELECT_AUTH_PIN)
    assert transport.transmit(bytes.fromhex("0020008004") + b"1234") == (b"", 0x9000)
    assert card.verified
    transport.close()
    assert not card.verified                      # closed with a card reset
    assert card.tries_left() == 3


@pcsc
def test_card_is_taken_exclusively(pcsc_readers, reader, card):
    _, r, events, transport = opened_with_card(pcsc_readers, reader, card)
    try:
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        hr, _handle, _proto = scard.SCardConnect(ctx, pcsc_readers.reader, scard.SCARD_SHARE_SHARED,
                                                 scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        scard.SCardReleaseContext(ctx)
        assert hr & 0xFFFFFFFF == scard.SCARD_E_SHARING_VIOLATION & 0xFFFFFFFF
    finally:
        transport.close()


@pcsc
def test_removal_mid_session_is_card_gone(pcsc_readers, reader, card):
    _, r, events, transport = opened_with_card(pcsc_readers, reader, card)
    transport.transmit(SELECT_JPKI)
    pcsc_readers.remove()
    with pytest.raises(CardGoneError):
        transport.transmit(SELECT_TOKEN)
    transport.close()
    events.expect(K.REMOVED)
    with pytest.raises(CardGoneError):
        r.open()


@pcsc
def test_pcscd_killed_and_restarted_while_the_reader_lives(pcsc_readers, reader, card):
    _, r, events, transport = opened_with_card(pcsc_readers, reader, card)
    transport.transmit(SELECT_JPKI)
    pcsc_readers.kill()
    removed, unavailable = events.expect(K.REMOVED, K.READER_UNAVAILABLE)
    assert unavailable.detail == PCSCD_GONE
    with pytest.raises(ReaderGoneError):
        transport.transmit(SELECT_TOKEN)
    transport.close()
    with pytest.raises(ReaderGoneError):
        r.open()
    pcsc_readers.remove(wait=False)
    pcsc_readers.start()
    events.expect(K.READER_AVAILABLE)
    pcsc_readers.insert(card)
    events.expect(K.INSERTED)
    transport = r.open()
    try:
        assert transport.transmit(SELECT_JPKI) == (b"", 0x9000)
    finally:
        transport.close()


@pcsc
def test_pcscd_absent_at_start(pcsc_readers, reader, card):
    pcsc_readers.stop()
    r, events = reader()
    (unavailable,) = events.expect(K.READER_UNAVAILABLE)
    assert unavailable.detail == PCSCD_GONE
    assert events.quiet(0.5) == []                 # retrying quietly, not repeating itself
    pcsc_readers.start()
    events.expect(K.READER_AVAILABLE)
    pcsc_readers.insert(card)
    events.expect(K.INSERTED)


@pcsc
def test_name_filter_watches_only_matching_readers(pcsc_readers, reader, card, pcsc_demo_pki, tmp_path):
    second = pcsc_readers.reader_name(1)
    r, events = reader(name_filter=second[-5:])       # "00 01"
    assert events.expect(K.READER_AVAILABLE)[0].reader == second
    pcsc_readers.insert(card, slot=0)
    assert events.quiet(1.2) == []
    other = VirtualJpkiCard(pcsc_demo_pki.profile("registered-2"), state_path=tmp_path / "other.json")
    pcsc_readers.insert(other, slot=1)
    assert events.expect(K.INSERTED)[0].reader == second
    transport = r.open()
    try:
        transport.transmit(SELECT_JPKI)
        transport.transmit(SELECT_TOKEN)
        assert transport.transmit(READ_TOKEN)[1] == 0x9000
        assert other.stats.apdus == 3 and card.stats.apdus == 0
    finally:
        transport.close()


@pcsc
def test_filter_matching_nothing_is_no_reader(pcsc_readers, reader):
    r, events = reader(name_filter="no such reader")
    (unavailable,) = events.expect(K.READER_UNAVAILABLE)
    assert unavailable.detail == "no_reader"


@pcsc
def test_stop_is_prompt_and_idempotent_and_start_again_reports_afresh(pcsc_readers, reader, card):
    pcsc_readers.insert(card)
    r, events = reader()
    events.expect(K.READER_AVAILABLE, K.INSERTED)
    started = time.monotonic()
    r.stop()
    r.stop()
    assert time.monotonic() - started < 1.0
    assert not any(t.name == "pcsc-reader" and t.is_alive() for t in threading.enumerate())
    again = Events()
    r.start(again)
    again.expect(K.READER_AVAILABLE, K.INSERTED)
