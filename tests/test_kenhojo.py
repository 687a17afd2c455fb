"""The 券面事項入力補助AP protocol: tries, one VERIFY, and the birth date without the other items.

Runs over the real stack (virtual reader in counter mode -> allowlist -> virtual card).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.card import kenhojo as kh
from kiosk.card.apdu_allowlist import ApduRefused
from kiosk.card.kenhojo import (
    KenhojoCard,
    KenhojoError,
    SupportPinResult,
    TlvHeader,
    parse_birth_date,
    parse_tlv_header,
)
from kiosk.card.virtual_card import CardProfile, VirtualJpkiCard, basic_info_ef
from kiosk.card.virtual_reader import VirtualReader

H = bytes.fromhex


@pytest.fixture
def counter_reader():
    reader = VirtualReader(mode="counter")
    reader.start(lambda event: None)
    yield reader
    reader.stop()


@pytest.fixture
def open_kenhojo(counter_reader, make_jpki_card, apdu_log):
    """open_kenhojo(name_or_profile, **overrides) -> (KenhojoCard with the AP selected, VirtualJpkiCard)."""
    def open_(name="registered-1", **overrides):
        card = make_jpki_card(name, **overrides)
        counter_reader.insert(card)
        k = KenhojoCard(counter_reader.open())
        assert k.select_ap() is True
        return k, card
    return open_


class Scripted:
    """Answers from a script: status words no virtual card profile produces."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.sent = []

    def transmit(self, apdu):
        self.sent.append(bytes(apdu))
        return self.replies.pop(0)

    def close(self):
        pass


def value_ranges(ef: bytes) -> dict[int, range]:
    """Independent of kiosk.card.kenhojo: where each item's value sits in EF 0002 (FF 20 template)."""
    def header(i):
        tag = int.from_bytes(ef[i:i + 2], "big")
        n = ef[i + 2]
        if n < 0x80:
            return tag, n, i + 3
        k = n & 0x7F
        return tag, int.from_bytes(ef[i + 3:i + 3 + k], "big"), i + 3 + k

    _, outer_len, i = header(0)
    end, out = i + outer_len, {}
    while i < end:
        tag, n, start = header(i)
        out[tag] = range(start, start + n)
        i = start + n
    return out


def reads_of_basic_info(apdu_log) -> list[range]:
    """Byte ranges of EF 0002 that READ BINARYs asked for (SELECT EF 0002 in the kenhojo AP)."""
    out, ap, ef = [], None, None
    for r in apdu_log:
        a = r.apdu
        if a[:4] == H("00A4040C"):
            ap, ef = a[5:15], None
        elif a[:4] == H("00A4020C"):
            ef = int.from_bytes(a[5:7], "big")
        elif a[1] == 0xB0 and ap == kh.KENHOJO_AID and ef == kh.EF_BASIC_INFO:
            off = (a[2] << 8) | a[3]
            out.append(range(off, off + (a[4] or 256)))
    return out


def overlaps(a: range, b: range) -> bool:
    return a.start < b.stop and b.start < a.stop


# -- pure parts --------------------------------------------------------------------------------

@pytest.mark.parametrize("buf, header", [
    (H("DF2408"), TlvHeader(0xDF24, 8, 3)),
    (H("DF24083139"), TlvHeader(0xDF24, 8, 3)),
    (H("FF208158"), TlvHeader(0xFF20, 0x58, 4)),
    (H("FF20820123"), TlvHeader(0xFF20, 0x123, 5)),
    (H("0401"), TlvHeader(0x04, 1, 2)),
    (H("30820100"), TlvHeader(0x30, 0x100, 4)),
])
def test_tlv_header(buf, header):
    assert parse_tlv_header(buf) == header


@pytest.mark.parametrize("buf", [b"", H("DF"), H("DF24"), H("FF2081"), H("FF208201"), H("04")])
def test_tlv_header_needs_more_bytes(buf):
    assert parse_tlv_header(buf) is None


@pytest.mark.parametrize("buf", [H("0000"), H("FFFF01"), H("DF8101"), H("DF0501"), H("DF2483000001"),
                                 H("DF2480")])
def test_tlv_header_refuses_what_ef_0002_never_has(buf):
    with pytest.raises(KenhojoError):
        parse_tlv_header(buf)


def test_constructed_bit():
    assert TlvHeader(0xFF20, 1, 3).constructed and TlvHeader(0x30, 1, 2).constructed
    assert not TlvHeader(0xDF24, 8, 3).constructed and not TlvHeader(0x04, 1, 2).constructed


@pytest.mark.parametrize("raw, day", [
    (b"19850412", dt.date(1985, 4, 12)),
    (b"20000229", dt.date(2000, 2, 29)),
    (b"19641124  ", dt.date(1964, 11, 24)),
    (b"19641124\x00\x00", dt.date(1964, 11, 24)),
])
def test_birth_date(raw, day):
    got = parse_birth_date(bytearray(raw))
    assert got == day and type(got) is dt.date


@pytest.mark.parametrize("raw", [b"", b"1985041", b"198504120", b"1985-4-12", b"19850230", b"19851301",
                                 b"00000000", "１９８５０４１２".encode(), b"S60.4.12", b" 19850412"])
def test_birth_date_refuses_anything_else(raw):
    with pytest.raises(KenhojoError):
        parse_birth_date(raw)


def test_errors_carry_no_card_data():
    assert str(KenhojoError("birth date is not 8 digits")) == "birth date is not 8 digits"
    assert str(KenhojoError("SELECT EF 0002 failed", 0x6A82)).endswith("(SW 6A82)")


# -- the AP over the real stack ------------------------------------------------------------------

def test_select_and_tries_spend_nothing(open_kenhojo, apdu_log):
    k, card = open_kenhojo()
    assert k.pin_tries_left() == 3 and k.pin_tries_left() == 3
    assert card.tries_left("kenhojo/0011") == 3
    assert [r.apdu.hex().upper() for r in apdu_log] == [
        "00A4040C0AD3921000310001010408", "00A4020C020011", "00200080", "00200080"]


def test_a_card_without_the_ap(counter_reader, make_jpki_card):
    counter_reader.insert(make_jpki_card("juki-card"))
    assert KenhojoCard(counter_reader.open()).select_ap() is False


@pytest.mark.parametrize("sw", [0x6F00, 0x6581, 0x0000])
def test_odd_answers_are_errors(sw):
    with pytest.raises(KenhojoError):
        KenhojoCard(Scripted((b"", sw))).select_ap()


def test_verify_counts_down_and_a_right_pin_resets(open_kenhojo, make_jpki_card):
    k, card = open_kenhojo(support_pin="5678")
    assert k.verify_pin(bytearray(b"1234")) == SupportPinResult(ok=False, tries_left=2)
    assert card.tries_left("kenhojo/0011") == 2 and card.tries_left() == 3     # its own counter
    assert k.pin_tries_left() == 2
    assert k.verify_pin(bytearray(b"5678")) == SupportPinResult(ok=True)
    assert card.tries_left("kenhojo/0011") == 3
    assert k.pin_tries_left() is None                                         # verified now


@pytest.mark.parametrize("blocked_sw", [0x6983, 0x6984])
def test_locked_pin(open_kenhojo, blocked_sw):
    k, card = open_kenhojo(support_tries=0, blocked_sw=blocked_sw)
    assert k.pin_tries_left() == 0
    assert k.verify_pin(bytearray(b"1234")) == SupportPinResult(ok=False, tries_left=0)


def test_last_try_wrong_locks(open_kenhojo):
    k, card = open_kenhojo(support_tries=1)
    assert k.verify_pin(bytearray(b"9999")) == SupportPinResult(ok=False, tries_left=0)
    assert card.tries_left("kenhojo/0011") == 0


@pytest.mark.parametrize("text", [b"", b"123", b"12345", b"12a4", b"\x00\x00\x00\x00"])
def test_malformed_pin_is_never_sent(open_kenhojo, apdu_log, text):
    k, card = open_kenhojo()
    before = len(apdu_log)
    with pytest.raises(ValueError):
        k.verify_pin(bytearray(text))
    assert len(apdu_log) == before and card.tries_left("kenhojo/0011") == 3


def test_verify_apdu_is_built_in_place_and_redacted(open_kenhojo, apdu_log):
    k, _ = open_kenhojo()
    pin = bytearray(b"1234")
    k.verify_pin(pin)
    assert pin == bytearray(b"1234")            # the caller zeroes its own copy
    verifies = [r for r in apdu_log if r.apdu[1] == 0x20 and len(r.apdu) > 4]
    assert [r.apdu for r in verifies] == [H("0020008004") + b"0000"] and verifies[0].redacted


def test_birth_date_needs_the_pin(open_kenhojo):
    k, _ = open_kenhojo()
    with pytest.raises(KenhojoError) as info:
        k.read_birth_date()
    assert info.value.sw == 0x6982


def test_birth_date_reads_no_byte_of_name_address_or_sex(open_kenhojo, apdu_log, demo_pki):
    k, card = open_kenhojo("registered-1")
    assert k.verify_pin(bytearray(b"1234")).ok
    born = k.read_birth_date()
    assert born == dt.date(1985, 4, 12) == demo_pki.cards["registered-1"].birth_date
    ranges = value_ranges(basic_info_ef(card.profile))
    reads = reads_of_basic_info(apdu_log)
    assert reads and any(r == ranges[0xDF24] for r in reads)
    for tag in (0xDF21, 0xDF22, 0xDF23, 0xDF25):
        assert not any(overlaps(r, ranges[tag]) for r in reads), hex(tag)
    # Never near the individual number: no SELECT of EF 0001/0003/0014/0015 was even tried.
    assert not any(r.apdu[:5] == H("00A4020C02") and r.apdu[5:7] in (H("0001"), H("0003"), H("0014"),
                                                                    H("0015")) for r in apdu_log)


@pytest.mark.parametrize("overrides", [dict(strict_le=True), dict(t0_get_response=True)])
def test_birth_date_on_cards_needing_le_fixes_or_get_response(open_kenhojo, overrides):
    k, _ = open_kenhojo(**overrides)
    assert k.verify_pin(bytearray(b"1234")).ok
    assert k.read_birth_date() == dt.date(1985, 4, 12)


def _profile(**kw) -> CardProfile:
    return replace(CardProfile(name="kenhojo-test"), **kw)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=60), address=st.text(min_size=0, max_size=120),
       day=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
       sex=st.sampled_from(["1", "2", "3", "9"]))
def test_any_holder_only_the_birth_date_is_read(counter_reader, apdu_log, name, address, day, sex):
    profile = _profile(holder_name=name, holder_address=address, birth_date=day.strftime("%Y%m%d"),
                       holder_sex=sex)
    card = VirtualJpkiCard(profile)
    counter_reader.insert(card)
    apdu_log.clear()
    k = KenhojoCard(counter_reader.open())
    assert k.select_ap() and k.verify_pin(bytearray(b"1234")).ok
    assert k.read_birth_date() == day
    ranges = value_ranges(basic_info_ef(profile))
    for r in reads_of_basic_info(apdu_log):
        assert r == ranges[0xDF24] or not any(overlaps(r, ranges[t]) for t in (0xDF22, 0xDF23, 0xDF25))


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    length = bytes([n]) if n < 0x80 else b"\x81" + bytes([n]) if n < 0x100 else b"\x82" + n.to_bytes(2, "big")
    return tag.to_bytes(2, "big") + length + value


def _read_raw(counter_reader, ef: bytes):
    card = VirtualJpkiCard(_profile(basic_info=ef))
    counter_reader.insert(card)
    k = KenhojoCard(counter_reader.open())
    assert k.select_ap() and k.verify_pin(bytearray(b"1234")).ok
    return k.read_birth_date()


ITEMS = _tlv(0xDF21, bytes(8)) + _tlv(0xDF22, "氏名".encode()) + _tlv(0xDF23, "住所".encode())


@pytest.mark.parametrize("ef, day", [
    (_tlv(0xFF20, ITEMS + _tlv(0xDF24, b"19700101") + _tlv(0xDF25, b"2")), dt.date(1970, 1, 1)),
    (_tlv(0xFF20, ITEMS + _tlv(0xDF24, b"19700101") + _tlv(0xDF25, b"2")) + b"\xff" * 40, dt.date(1970, 1, 1)),
    (ITEMS + _tlv(0xDF24, b"19700101") + b"\x00" * 8, dt.date(1970, 1, 1)),           # no template
    (_tlv(0xFF20, _tlv(0xDF24, b"20240229")), dt.date(2024, 2, 29)),                   # birth date first
    (_tlv(0xFF20, ITEMS + _tlv(0xDF24, b"19700101  ")), dt.date(1970, 1, 1)),          # padded value
    (_tlv(0xFF20, _tlv(0xDF22, "長".encode() * 100) + _tlv(0xDF24, b"19991231")), dt.date(1999, 12, 31)),
])
def test_birth_date_in_any_sane_layout(counter_reader, ef, day):
    assert _read_raw(counter_reader, ef) == day


@pytest.mark.parametrize("ef", [
    _tlv(0xFF20, ITEMS + _tlv(0xDF25, b"1")),                                  # no birth date
    _tlv(0xFF20, ITEMS + _tlv(0xDF24, b"1970")),                               # too short
    _tlv(0xFF20, ITEMS + _tlv(0xDF24, b"19700132")),                           # not a date
    _tlv(0xFF20, ITEMS + _tlv(0xDF24, b"1" * 40)),                             # far too long
    _tlv(0xFF20, ITEMS)[:-2],                                                  # truncated
    H("FF2010") + _tlv(0xDF22, b"x" * 20) + _tlv(0xDF24, b"19700101"),          # item runs past template
    b"\x00" * 64,                                                              # blank EF
    H("DF8101") + b"x",                                                        # odd tag form
])
def test_broken_ef_0002_is_an_error_never_a_guess(counter_reader, ef):
    with pytest.raises(KenhojoError):
        _read_raw(counter_reader, ef)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ef=st.binary(min_size=1, max_size=300))
def test_garbage_never_crashes_or_loops(counter_reader, ef):
    try:
        got = _read_raw(counter_reader, ef)
    except KenhojoError:
        return
    assert type(got) is dt.date


def test_the_individual_number_ef_is_out_of_reach_even_after_verify(open_kenhojo, apdu_log):
    """The card would hand the fake number out after VERIFY; the allowlist stops the APDU."""
    k, card = open_kenhojo()
    assert k.verify_pin(bytearray(b"1234")).ok
    for fid in (0x0001, 0x0003, 0x0014, 0x0015):
        with pytest.raises(ApduRefused):
            k._select_ef(fid)
    card.stats.reset()
    with pytest.raises(ApduRefused):
        k.transport.transmit(H("00B0810000"))       # READ BINARY by short EF id 01
    assert card.stats.apdus == 0


def test_the_module_knows_only_the_pin_and_basic_information_efs():
    assert {getattr(kh, n) for n in dir(kh) if n.startswith("EF_")} == {0x0002, 0x0011}


def test_kenhojo_counter_persists_like_the_others(make_jpki_card, counter_reader, tmp_path, demo_pki):
    state = tmp_path / "card.json"
    card = make_jpki_card("second-pin-differs", state=state)
    counter_reader.insert(card)
    k = KenhojoCard(counter_reader.open())
    k.select_ap()
    assert k.verify_pin(bytearray(b"1234")).tries_left == 2
    again = VirtualJpkiCard(demo_pki.profile("second-pin-differs"), state_path=state)   # power cycle
    assert again.tries_left("kenhojo/0011") == 2 and again.tries_left() == 3
    assert VirtualJpkiCard(demo_pki.profile("second-pin-1-try")).tries_left("kenhojo/0011") == 1


def test_demo_cards_have_birth_dates_and_their_second_pins(demo_pki):
    cards = demo_pki.cards
    assert cards["registered-1"].birth_date == dt.date(1985, 4, 12)
    assert cards["second-pin-differs"].profile.support_pin != cards["second-pin-differs"].profile.auth_pin
    assert cards["registered-1"].profile.support_pin == cards["registered-1"].profile.auth_pin
    assert cards["second-pin-1-try"].profile.support_tries == 1
    assert not cards["second-pin-differs"].registered and not cards["second-pin-1-try"].registered
    assert cards["juki-card"].birth_date is None and cards["transit-card"].birth_date is None
    assert all(c.birth_date for c in cards.values() if c.profile.jpki and c.profile.my_number_aps)
