"""Counter registration, card side, end to end: CardService in counter mode over the virtual
reader (and once over real pcscd + vpcd) -> allowlist -> virtual card.

Authentication first (the card holder's own PIN), then the birth date from the
券面事項入力補助AP: the same PIN only while it has at least two tries left, otherwise the
patron is asked. Never the individual number; nothing but a date comes back.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from kiosk.card.apdu_allowlist import ApduRefused, replay
from kiosk.card.demo_pki import DEMO_SUPPORT_PIN_DIFFERENT
from kiosk.card.service import CardService, CounterModeRequired
from kiosk.card.virtual_card import FAKE_MY_NUMBER, KENHOJO_AID, basic_info_ef
from kiosk.core.card import AuthOutcome, CardError

H = bytes.fromhex
SELECT_KENHOJO = H("00A4040C0A") + KENHOJO_AID
SELECT_JPKI = H("00A4040C0AD392F000260100000001")


@pytest.fixture
def reader(jpki_reader):
    return jpki_reader


@pytest.fixture
def service(reader, demo_trust, jpki_now):
    svc = CardService(reader, demo_trust, jpki_now)
    svc.set_mode("counter")
    yield svc
    svc.release()


@pytest.fixture
def insert(reader, make_jpki_card):
    def insert_(name="registered-1", **overrides):
        card = make_jpki_card(name, **overrides)
        reader.insert(card)
        return card
    return insert_


def pin(text="1234") -> bytearray:
    return bytearray(text.encode())


def kenhojo_apdus(apdu_log) -> list[bytes]:
    """APDUs sent while the kenhojo AP was the selected one (the SELECT itself included)."""
    out, inside = [], False
    for r in apdu_log:
        if r.apdu[:4] == H("00A4040C"):
            inside = r.apdu == SELECT_KENHOJO
        if inside:
            out.append(r.apdu)
    return out


def kenhojo_verifies(apdu_log) -> list[bytes]:
    return [a for a in kenhojo_apdus(apdu_log) if a[1] == 0x20 and len(a) > 4]


def register(service, text="1234", birth_date=True):
    service.probe()
    secret = pin(text)
    result = service.authenticate_for_registration(secret, birth_date)
    assert secret == bytearray(len(text))           # zeroed, whatever happened
    return result


# -- the same PIN ---------------------------------------------------------------------------------

def test_same_pin_gives_identity_and_birth_date_with_one_verify_each(service, insert, apdu_log, demo_pki):
    card = insert("registered-1")
    outcome, born, second = register(service)
    assert outcome.ok and outcome.identity.cert_hash == demo_pki.cards["registered-1"].cert_hash
    assert born == dt.date(1985, 4, 12) == demo_pki.cards["registered-1"].birth_date and second is None
    assert type(born) is dt.date
    assert len(kenhojo_verifies(apdu_log)) == 1
    assert card.tries_left() == 3 and card.tries_left("kenhojo/0011") == 3
    assert card.verified == frozenset()             # both VERIFY states dropped again
    assert apdu_log[-1].apdu == SELECT_JPKI
    assert replay(apdu_log) == [] and {r.mode for r in apdu_log} == {"counter"}


def test_without_birth_date_the_kenhojo_ap_is_never_selected(service, insert, apdu_log):
    insert("registered-1")
    outcome, born, second = register(service, birth_date=False)
    assert outcome.ok and born is None and second is None
    assert kenhojo_apdus(apdu_log) == []


def test_same_pin_with_two_tries_left_is_tried(service, insert, apdu_log):
    card = insert("registered-1", support_tries=2)
    outcome, born, second = register(service)
    assert outcome.ok and born == dt.date(1985, 4, 12)
    assert second is None and card.tries_left("kenhojo/0011") == 3       # a right PIN resets it


# -- a different second PIN --------------------------------------------------------------------------

def test_different_pin_costs_one_try_then_the_patron_enters_it(service, insert, apdu_log, demo_pki):
    card = insert("second-pin-differs")
    outcome, born, second = register(service)
    assert outcome.ok and born is None and second == 2
    assert card.tries_left("kenhojo/0011") == 2 and len(kenhojo_verifies(apdu_log)) == 1
    assert service.same_pin_tried                               # staff tell the patron a try went
    secret = pin(DEMO_SUPPORT_PIN_DIFFERENT)
    assert service.read_birth_date(secret) == (demo_pki.cards["second-pin-differs"].birth_date, None)
    assert secret == bytearray(4)
    assert card.tries_left("kenhojo/0011") == 3 and len(kenhojo_verifies(apdu_log)) == 2
    assert card.verified == frozenset()
    assert replay(apdu_log) == []


def test_different_pin_with_two_tries_left_leaves_one(service, insert):
    card = insert("second-pin-differs", support_tries=2)
    outcome, born, second = register(service)
    assert outcome.ok and born is None and second == 1
    assert card.tries_left("kenhojo/0011") == 1                 # never locked by the kiosk's own try


def test_wrong_second_pin_is_sent_once_per_entry_and_reports_tries(service, insert, apdu_log):
    card = insert("second-pin-differs")
    register(service)
    assert service.read_birth_date(pin("0000")) == (None, 1)
    assert card.tries_left("kenhojo/0011") == 1 and len(kenhojo_verifies(apdu_log)) == 2
    assert service.read_birth_date(pin(DEMO_SUPPORT_PIN_DIFFERENT))[0] == dt.date(1964, 11, 24)
    assert card.tries_left("kenhojo/0011") == 3


def test_wrong_second_pin_on_the_last_try_locks_it(service, insert):
    card = insert("second-pin-differs", support_tries=2)
    register(service)
    assert service.read_birth_date(pin("0000")) == (None, 0)
    assert card.tries_left("kenhojo/0011") == 0
    assert service.read_birth_date(pin(DEMO_SUPPORT_PIN_DIFFERENT)) == (None, 0)   # not even sent
    assert card.tries_left() == 3                                                   # auth PIN untouched


# -- one try left: asked, never tried ---------------------------------------------------------------

def test_one_try_left_is_asked_rather_than_tried(service, insert, apdu_log, demo_pki):
    card = insert("second-pin-1-try")
    outcome, born, second = register(service)
    assert outcome.ok and born is None and second == 1
    assert kenhojo_verifies(apdu_log) == [] and card.tries_left("kenhojo/0011") == 1
    assert not service.same_pin_tried
    assert [a for a in kenhojo_apdus(apdu_log) if a[1] == 0x20] == [H("00200080")]   # only the count
    assert service.read_birth_date(pin("1234")) == (demo_pki.cards["second-pin-1-try"].birth_date, None)
    assert card.tries_left("kenhojo/0011") == 3


@pytest.mark.parametrize("blocked_sw", [0x6983, 0x6984])
def test_locked_second_pin_is_reported_and_never_verified(service, insert, apdu_log, blocked_sw):
    card = insert("registered-1", support_tries=0, blocked_sw=blocked_sw)
    outcome, born, second = register(service)
    assert outcome.ok and born is None and second == 0
    assert kenhojo_verifies(apdu_log) == [] and card.tries_left() == 3


def test_malformed_second_pin_is_never_sent(service, insert, apdu_log):
    card = insert("second-pin-differs")
    register(service)
    before = len(kenhojo_verifies(apdu_log))
    assert service.read_birth_date(bytearray(b"12")) == (None, 2)
    assert len(kenhojo_verifies(apdu_log)) == before and card.tries_left("kenhojo/0011") == 2


# -- the first PIN still rules --------------------------------------------------------------------------

def test_wrong_first_pin_never_reaches_the_kenhojo_ap(service, insert, apdu_log):
    card = insert("registered-1")
    outcome, born, second = register(service, "9999")
    assert outcome.error is CardError.PIN_WRONG and outcome.tries_left == 2
    assert born is None and second is None and kenhojo_apdus(apdu_log) == []
    assert card.tries_left("kenhojo/0011") == 3
    assert service.read_birth_date(pin("1234")) == (None, None)         # not authenticated: refused
    assert kenhojo_apdus(apdu_log) == []


@pytest.mark.parametrize("name, error", [("expired", CardError.CERT_EXPIRED), ("pin-locked", CardError.PIN_LOCKED),
                                         ("juki-card", CardError.JUKI_CARD)])
def test_refused_cards_never_reach_the_kenhojo_ap(service, insert, apdu_log, name, error):
    insert(name)
    outcome, born, second = register(service)
    assert outcome.error is error and born is None and kenhojo_apdus(apdu_log) == []


def test_read_birth_date_needs_the_registration_on_this_card(service, insert, reader, apdu_log):
    insert("second-pin-differs")
    assert service.read_birth_date(pin(DEMO_SUPPORT_PIN_DIFFERENT)) == (None, None)   # nothing authenticated
    register(service)
    insert("registered-2")                       # swapped: the old transport is dead
    assert service.read_birth_date(pin(DEMO_SUPPORT_PIN_DIFFERENT)) == (None, None)
    service.probe()                              # a fresh probe forgets the registration
    assert service.read_birth_date(pin("1234")) == (None, None)
    assert len(kenhojo_verifies(apdu_log)) == 1  # only the one same-PIN try of the first card


def test_card_removed_during_the_kenhojo_part(service, insert, reader, apdu_log):
    insert("registered-1")
    service.probe()
    verifies = []

    def pull_at_the_kenhojo_verify(header: bytes) -> bool:
        if header == H("00200080"):
            verifies.append(header)              # auth VERIFY, kenhojo tries, kenhojo VERIFY
        return len(verifies) == 3

    reader.remove_before(pull_at_the_kenhojo_verify)
    outcome, born, second = service.authenticate_for_registration(pin(), True)
    assert outcome == AuthOutcome(error=CardError.CARD_REMOVED) and born is None and second is None
    assert len(verifies) == 3 and SELECT_KENHOJO in [r.apdu for r in apdu_log]   # it was the kenhojo VERIFY


def test_a_card_without_the_kenhojo_ap_cannot_give_a_birth_date(service, insert):
    insert("registered-1", my_number_aps=False)
    outcome, born, second = register(service)
    assert outcome.error is CardError.MUTE_CARD and outcome.identity is None and born is None


def test_unreadable_basic_information_is_an_error(service, insert):
    insert("registered-1", basic_info=b"\x00" * 32)
    outcome, born, second = register(service)
    assert outcome.error is CardError.MUTE_CARD and born is None


def test_the_service_works_on_after_a_registration(service, insert):
    card = insert("registered-1")
    assert register(service)[0].ok
    assert service.authenticate(pin()).ok        # JPKI AP selected again, caches consistent
    assert card.tries_left() == 3


# -- modes -----------------------------------------------------------------------------------------

def test_kiosk_mode_fails_closed_before_touching_the_card(reader, demo_trust, jpki_now, insert, apdu_log):
    svc = CardService(reader, demo_trust, jpki_now)
    assert svc.mode == "kiosk"
    card = insert("registered-1")
    svc.probe()
    sent = len(apdu_log)
    secret = pin()
    with pytest.raises(CounterModeRequired):
        svc.authenticate_for_registration(secret, True)
    assert secret == bytearray(4)
    secret = pin()
    with pytest.raises(CounterModeRequired):
        svc.read_birth_date(secret)
    assert secret == bytearray(4)
    assert len(apdu_log) == sent and card.tries_left() == 3


def test_back_to_kiosk_mode_closes_the_counter_transport(service, reader, insert, apdu_log):
    insert("registered-1")
    assert register(service)[0].ok
    opened = reader.opened
    service.set_mode("kiosk")
    assert reader.mode == "kiosk" and service.mode == "kiosk"
    with pytest.raises(CounterModeRequired):
        service.read_birth_date(pin())
    assert service.authenticate(pin()).ok        # the patron's path opens a kiosk-mode transport
    assert reader.opened == opened + 1 and apdu_log[-1].mode == "kiosk"


def test_set_mode_checks_its_argument_and_sets_the_readers_mode(demo_trust, jpki_now, service):
    """Every CardReader has a mode (kiosk/core/interfaces.py); an unknown mode changes nothing."""
    from kiosk.card.virtual_reader import VirtualReader

    with pytest.raises(ValueError):
        service.set_mode("staff")
    reader = VirtualReader()
    svc = CardService(reader, demo_trust, jpki_now)
    svc.set_mode("counter")
    assert reader.mode == "counter" and svc.mode == "counter"
    with pytest.raises(ValueError):
        svc.set_mode("staff")
    assert reader.mode == "counter" and svc.mode == "counter"
    svc.set_mode("kiosk")
    assert reader.mode == "kiosk" and svc.mode == "kiosk"


def test_a_kiosk_mode_transport_refuses_the_kenhojo_ap_entirely(reader, insert):
    card = insert("registered-1")
    transport = reader.open()
    card.stats.reset()
    for apdu in (SELECT_KENHOJO, H("00A4020C020001"), H("00A4020C020002"), H("00A4020C020011")):
        with pytest.raises(ApduRefused):
            transport.transmit(apdu)
    assert card.stats.apdus == 0


@pytest.mark.parametrize("mode", ["kiosk", "counter"])
def test_the_individual_number_ef_is_refused_in_both_modes(reader, insert, mode):
    card = insert("registered-1")
    reader.mode = mode
    transport = reader.open()
    if mode == "counter":
        assert transport.transmit(SELECT_KENHOJO) == (b"", 0x9000)
    card.stats.reset()
    for apdu in (H("00A4020C020001"), H("00B0810000"), H("00A4020C020003")):
        with pytest.raises(ApduRefused):
            transport.transmit(apdu)
    assert card.stats.apdus == 0
    # after the right PIN too: the card would answer, the allowlist does not let it be asked
    if mode == "counter":
        transport.transmit(H("00A4020C020011"))
        assert transport.transmit(H("0020008004") + b"1234") == (b"", 0x9000)
        with pytest.raises(ApduRefused):
            transport.transmit(H("00A4020C020001"))


# -- nothing else leaves ----------------------------------------------------------------------------

def test_only_a_date_leaves_and_nothing_is_logged(service, insert, caplog, apdu_log):
    caplog.set_level(logging.DEBUG)
    card = insert("second-pin-differs")
    result = register(service)
    result2 = service.read_birth_date(pin(DEMO_SUPPORT_PIN_DIFFERENT))
    insert("registered-1", holder_name="FAKE 秘密 花子", holder_address="FAKE 秘密県秘密市")
    result3 = register(service)
    born = result3[1]
    assert type(result2[0]) is dt.date and type(born) is dt.date
    text = caplog.text + repr(result) + repr(result2) + repr(result3)
    profile = card.profile
    for secret in ("秘密", "FAKE", profile.holder_name, profile.holder_address, "19641124", "1964-11-24",
                   "19850412", "1985-04-12", DEMO_SUPPORT_PIN_DIFFERENT, "1234", FAKE_MY_NUMBER):
        assert secret not in text, secret
    # The EF bytes of name and address never crossed the link at all (READ ranges, test_kenhojo),
    # and no APDU here so much as names the individual-number EF.
    ef = basic_info_ef(profile)
    assert ef  # the card does hold them
    assert not any(r.apdu[:5] == H("00A4020C02") and r.apdu[5:7] in (H("0001"), H("0003"))
                   for r in apdu_log)


# -- over real pcscd + vpcd ---------------------------------------------------------------------------

@pytest.mark.pcsc
def test_registration_over_pcsc(pcsc_readers, pcsc_demo_pki, jpki_now, tmp_path):
    from kiosk.card.identity import TrustStore
    from kiosk.card.pcsc_reader import PcscReader
    from kiosk.card.virtual_card import VirtualJpkiCard

    trust = TrustStore.shipped(test_paths=[pcsc_demo_pki.ca_pem_path], accept_test=True)
    card = VirtualJpkiCard(pcsc_demo_pki.profile("second-pin-differs"), state_path=tmp_path / "c.json")
    pcsc_readers.insert(card)
    reader = PcscReader(poll_interval=0.5, backoff=(0.05, 0.4))
    reader.start(lambda event: None)
    svc = CardService(reader, trust, jpki_now)
    try:
        svc.set_mode("counter")
        outcome, born, second = register(svc)
        assert outcome.ok and born is None and second == 2
        assert svc.read_birth_date(pin(DEMO_SUPPORT_PIN_DIFFERENT)) == (dt.date(1964, 11, 24), None)
        assert card.tries_left("kenhojo/0011") == 3 and card.tries_left() == 3
        svc.set_mode("kiosk")
        assert reader.mode == "kiosk"
    finally:
        svc.release()
        reader.stop()
