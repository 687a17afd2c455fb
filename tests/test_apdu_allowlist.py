"""The APDU allowlist: exact forms, selection state, modes, observers and the audit replay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.card import apdu_allowlist as al
from kiosk.card.apdu_allowlist import (
    KENHOJO_AID,
    AllowlistTransport,
    ApduRecord,
    ApduRefused,
    ApRule,
    GateState,
    Policy,
    check,
    check_in_state,
    next_state,
    replay,
)
from kiosk.card.virtual_card import FAKE_MY_NUMBER, VirtualJpkiCard

H = bytes.fromhex
JPKI = H("D392F000260100000001")
KENKAKU = H("D3921000310001010402")
JUKI = H("D3921000310001010100")
SELECT_JPKI = H("00A4040C0A") + JPKI
SHA256_DI = H("3031300d060960864801650304020105000420")
SHA1_DI = H("3021300906052b0e03021a05000414")
SIGN = H("802A008033") + SHA256_DI + bytes(range(32)) + b"\x00"


def select_ap(aid: bytes) -> bytes:
    return H("00A4040C0A") + aid


def select_ef(fid: int) -> bytes:
    return H("00A4020C02") + fid.to_bytes(2, "big")


def run(apdus, mode="kiosk"):
    """Feed APDUs through the pure gate as if each succeeded; return the final state."""
    state = GateState()
    for apdu in apdus:
        check_in_state(state, apdu, mode)
        state = next_state(state, apdu, 0x9000)
    return state


# -- what the kiosk needs is allowed ------------------------------------------------------------

def test_the_whole_kiosk_flow_is_allowed_in_both_modes():
    flow = [
        SELECT_JPKI, select_ef(0x0006), H("00B0000014"),
        select_ef(0x000A), H("00B0000040"), H("00B0004000"), H("00B0034033"),
        select_ef(0x000B), H("00B0000004"),
        select_ef(0x0018), H("00200080"), H("0020008004") + b"1234",
        select_ef(0x0017), SIGN, H("00C0000000"),
        SELECT_JPKI,
    ]
    for mode in ("kiosk", "counter"):
        assert run(flow, mode) == GateState(ap=JPKI)


# -- refused by shape, whatever the state --------------------------------------------------------

REFUSED = {
    "kenhojo AP (My Number)": select_ap(KENHOJO_AID),
    "kenkaku AP (My Number)": select_ap(KENKAKU),
    "juki AP": select_ap(JUKI),
    "other D3921000 31 AP": select_ap(H("D3921000310001010401")),
    "unknown AID": select_ap(H("A0000000030000000000")),
    "short AID": H("00A4040C05D392F00026"),
    "SELECT AP with FCI": H("00A404000A") + JPKI,
    "SELECT AP with Le": SELECT_JPKI + b"\x00",
    "SELECT EF 0001 signature cert": select_ef(0x0001),
    "SELECT EF 0002 signature CA": select_ef(0x0002),
    "SELECT EF 001A signature key": select_ef(0x001A),
    "SELECT EF 001B signature PIN": select_ef(0x001B),
    "SELECT EF 0011 support PIN": select_ef(0x0011),
    "SELECT MF by FID": H("00A4000C023F00"),
    "SELECT by path": H("00A4080C04000A0017"),
    "SELECT parent": H("00A4030C"),
    "UPDATE BINARY": H("00D6000004") + b"AAAA",
    "WRITE BINARY": H("00D0000001") + b"A",
    "APPEND RECORD": H("00E2000001") + b"A",
    "ERASE BINARY": H("000E0000"),
    "CHANGE REFERENCE DATA": H("0024018004") + b"9999",
    "CHANGE REFERENCE DATA (old+new)": H("0024008008") + b"12349999",
    "RESET RETRY COUNTER": H("002C0080"),
    "READ BINARY by SFI": H("00B0810000"),
    "READ BINARY odd INS": H("00B1000004"),
    "READ RECORD": H("00B2010400"),
    "GET DATA": H("00CA010000"),
    "MANAGE CHANNEL": H("0070000001"),
    "INTERNAL AUTHENTICATE": H("0088000004") + b"abcd",
    "GET CHALLENGE": H("0084000008"),
    "READ BINARY on channel 1": H("01B0000004"),
    "READ BINARY with SM": H("0CB0000004"),
    "VERIFY 3 digits": H("0020008003") + b"123",
    "VERIFY 5 digits": H("0020008005") + b"12345",
    "VERIFY letters": H("0020008004") + b"12A4",
    "VERIFY other reference": H("00200081"),
    "VERIFY global reference": H("0020000004") + b"1234",
    "VERIFY with Le": H("0020008004") + b"1234" + b"\x00",
    "SIGN with SHA-1 DigestInfo": H("802A008023") + SHA1_DI + bytes(20) + b"\x00",
    "SIGN without Le": SIGN[:-1],
    "SIGN with CLA 00": b"\x00" + SIGN[1:],
    "SIGN other P2": SIGN[:3] + b"\x9a" + SIGN[4:],
    "SIGN raw data": H("802A008020") + bytes(32) + b"\x00",
    "GET RESPONSE other P1": H("00C0010000"),
    "proprietary class": H("80B0000004"),
    "too short": H("00A4"),
}


# Counter mode (staff-assisted registration) allows these in the 券面事項入力補助AP only.
COUNTER_KENHOJO = {"kenhojo AP (My Number)", "SELECT EF 0002 signature CA", "SELECT EF 0011 support PIN"}


@pytest.mark.parametrize("mode", ["kiosk", "counter"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_everywhere(name, mode):
    apdu = REFUSED[name]
    if mode == "counter" and name in COUNTER_KENHOJO:
        for state in (GateState(), GateState(ap=JPKI), GateState(ap=JPKI, ef=0x0018)):
            if apdu[2] == 0x02:             # the EF forms: refused outside the kenhojo AP
                with pytest.raises(ApduRefused):
                    check_in_state(state, apdu, mode)
        return
    with pytest.raises(ApduRefused):
        check(apdu, mode)
    for state in (GateState(), GateState(ap=JPKI), GateState(ap=JPKI, ef=0x0018),
                  GateState(ap=KENHOJO_AID, ef=0x0011)):
        with pytest.raises(ApduRefused):
            check_in_state(state, apdu, mode)


def test_refusal_message_never_carries_the_data():
    with pytest.raises(ApduRefused) as info:
        check(H("0020008005") + b"98765")
    assert "3938" not in str(info.value) and "98765" not in str(info.value)
    assert info.value.header == "00200080"


# -- refused by state ----------------------------------------------------------------------------

@pytest.mark.parametrize("state, apdu", [
    (GateState(), select_ef(0x000A)),                        # EF before the AP
    (GateState(), H("00B0000004")),                          # READ with nothing selected
    (GateState(ap=JPKI), H("00B0000004")),                   # READ with no EF
    (GateState(ap=JPKI, ef=0x0018), H("00B0000004")),        # READ a PIN
    (GateState(ap=JPKI, ef=0x0017), H("00B0000004")),        # READ a key
    (GateState(ap=JPKI, ef=0x000A), H("00200080")),          # VERIFY a certificate
    (GateState(ap=JPKI, ef=0x0017), H("0020008004") + b"1234"),
    (GateState(ap=JPKI, ef=0x0018), SIGN),                   # sign with a PIN EF
    (GateState(ap=JPKI, ef=0x000A), SIGN),
    (GateState(ap=JPKI), SIGN),
    (GateState(ap=KENHOJO_AID, ef=0x0002), H("00B0000004")),  # a state the kiosk can never reach
    (GateState(ap=JPKI, ef=0x0001), H("00B0000004")),
])
def test_refused_in_this_state(state, apdu):
    check(apdu)     # the shape alone is fine...
    with pytest.raises(ApduRefused):
        check_in_state(state, apdu)     # ...but not here


def test_failed_select_forgets_the_selection():
    state = run([SELECT_JPKI, select_ef(0x000A)])
    assert next_state(state, select_ef(0x0017), 0x6A82) == GateState(ap=JPKI, ef=None)
    assert next_state(state, SELECT_JPKI, 0x6A82) == GateState()
    assert next_state(state, H("00B0000004"), None) == GateState()       # link failed: unknown
    assert next_state(state, H("00B0000004"), 0x9000) == state           # reads change nothing


# -- modes and the counter-mode extension point ----------------------------------------------------

def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError):
        check(SELECT_JPKI, "staff")
    with pytest.raises(ValueError):
        AllowlistTransport(inner=None, mode="staff")


@pytest.mark.parametrize("mode", ["kiosk", "counter"])
def test_kenhojo_ef_0001_is_refused_in_both_shipped_modes(mode):
    if mode == "kiosk":
        with pytest.raises(ApduRefused):
            check(select_ap(KENHOJO_AID), mode)
    with pytest.raises(ApduRefused):
        check_in_state(GateState(ap=KENHOJO_AID), select_ef(0x0001), mode)
    with pytest.raises(ApduRefused):
        check_in_state(GateState(ap=KENHOJO_AID, ef=0x0001), H("00B0000000"), mode)


def test_the_kenhojo_ap_is_a_counter_mode_thing_only():
    check(select_ap(KENHOJO_AID), "counter")
    assert al.KIOSK_POLICY.rule(KENHOJO_AID) is None
    assert al.COUNTER_POLICY.rule(KENHOJO_AID) == al.KENHOJO_BIRTH_DATE


def counter_with_kenhojo() -> Policy:
    """A policy that lists the kenhojo rule twice still cannot reach the number."""
    return Policy("counter-twice", al.COUNTER_POLICY.aps + (
        ApRule(aid=KENHOJO_AID, select=frozenset({0x0002, 0x0011}), read=frozenset({0x0002}),
               verify=frozenset({0x0011})),))


@pytest.mark.parametrize("policy", ["counter", counter_with_kenhojo()], ids=["shipped", "twice"])
def test_counter_policy_still_never_reaches_the_number(policy):
    state = run([select_ap(KENHOJO_AID), select_ef(0x0011), H("0020008004") + b"1234",
                 select_ef(0x0002), H("00B0000000")], policy)
    assert state == GateState(ap=KENHOJO_AID, ef=0x0002)
    for apdu in (select_ef(0x0001), select_ef(0x0003), select_ef(0x0014), select_ef(0x0015),
                 H("00B0810000")):
        with pytest.raises(ApduRefused):
            check_in_state(state, apdu, policy)
    with pytest.raises(ApduRefused):
        check_in_state(GateState(ap=KENHOJO_AID, ef=0x0001), H("00B0000000"), policy)
    with pytest.raises(ApduRefused):       # kenhojo EFs do not leak into the JPKI AP or back
        check_in_state(GateState(ap=JPKI), select_ef(0x0011), policy)


@pytest.mark.parametrize("rule", [
    dict(aid=KENHOJO_AID, select=frozenset({0x0001})),
    dict(aid=KENHOJO_AID, select=frozenset({0x0001, 0x0002}), read=frozenset({0x0001})),
    dict(aid=KENHOJO_AID, select=frozenset({0x0003})),
    dict(aid=KENHOJO_AID, select=frozenset({0x0014}), verify=frozenset({0x0014})),
    dict(aid=KENKAKU, select=frozenset({0x0002})),
    dict(aid=JUKI, select=frozenset({0x0002})),
    dict(aid=JPKI, select=frozenset({0x0001})),
    dict(aid=JPKI, select=frozenset({0x001B}), verify=frozenset({0x001B})),
    dict(aid=JPKI, select=frozenset({0x000A}), read=frozenset({0x000A, 0x0006})),
])
def test_no_policy_can_even_be_written_to_allow_these(rule):
    with pytest.raises(ValueError):
        ApRule(**rule)


# -- properties over arbitrary bytes ---------------------------------------------------------------

states = st.sampled_from([GateState(), GateState(ap=JPKI), GateState(ap=KENHOJO_AID)] +
                         [GateState(ap=JPKI, ef=f) for f in (0x0006, 0x000A, 0x000B, 0x0017, 0x0018, 0x0001)] +
                         [GateState(ap=KENHOJO_AID, ef=f) for f in (0x0001, 0x0002, 0x0003, 0x0011, 0x0014)])
headers = st.sampled_from([H("00A4040C0A"), H("00A4020C02"), H("00B0"), H("0020"), H("802A"),
                           H("0024"), H("00D6"), H("00C0"), H("00A4040C0AD392100031"), b""])
apdus = st.one_of(st.binary(max_size=70), st.builds(lambda h, t: h + t, headers, st.binary(max_size=60)))


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(state=states, apdu=apdus, mode=st.sampled_from(["kiosk", "counter"]))
def test_nothing_forbidden_ever_passes(state, apdu, mode):
    try:
        check_in_state(state, apdu, mode)
    except ApduRefused:
        return
    cla, ins = apdu[0], apdu[1]
    assert (cla, ins) in {(0x00, 0xA4), (0x00, 0xB0), (0x00, 0x20), (0x80, 0x2A), (0x00, 0xC0)}
    kenhojo = mode == "counter" and state.ap == KENHOJO_AID
    if ins == 0xA4 and apdu[2] == 0x04:
        assert apdu[5:15] == JPKI or (mode == "counter" and apdu[5:15] == KENHOJO_AID)
    if ins == 0xA4 and apdu[2] == 0x02:
        if kenhojo:
            assert apdu[5:7] in (H("0002"), H("0011"))
        else:
            assert state.ap == JPKI and apdu[5:7] not in (H("0001"), H("0002"), H("001A"), H("001B"))
    if ins == 0xB0:
        assert not apdu[2] & 0x80
        assert state.ef == 0x0002 if kenhojo else state.ap == JPKI and state.ef in (0x0006, 0x000A, 0x000B)
    if ins == 0x20:
        assert len(apdu) == 4 or apdu[5:9].isdigit()
        assert state.ef == 0x0011 if kenhojo else state.ap == JPKI and state.ef == 0x0018
    if ins == 0x2A:
        assert state.ap == JPKI and state.ef == 0x0017 and apdu[5:24] == SHA256_DI


# -- the transport shell, observers and the audit replay ------------------------------------------

class Link:
    """The raw card link under the allowlist (what a reader backend would hand over)."""

    def __init__(self, card: VirtualJpkiCard) -> None:
        self.card = card
        self.seen: list = []
        self.closed = False

    def transmit(self, apdu):
        self.seen.append(apdu)
        r = self.card.process(apdu)
        return r[:-2], int.from_bytes(r[-2:], "big")

    def close(self):
        self.closed = True


def test_transport_blocks_the_my_number_aps_before_the_card_sees_anything(make_jpki_card):
    card = make_jpki_card("registered-1")
    # The card really would hand the (fake) number out: the allowlist is what stops it.
    assert card.process(select_ap(KENKAKU)) == H("9000")
    assert FAKE_MY_NUMBER.encode() in card.process(select_ef(0x0001)) + card.process(H("00B0000000"))
    card.reset()
    card.stats.reset()
    for mode in ("kiosk", "counter"):
        t = AllowlistTransport(Link(card), mode=mode)
        refused = (select_ap(KENKAKU), H("0024018004") + b"9999", H("00D6000001") + b"A", H("002C0080"))
        for apdu in refused + ((select_ap(KENHOJO_AID),) if mode == "kiosk" else ()):
            with pytest.raises(ApduRefused):
                t.transmit(apdu)
        assert t.transmit(SELECT_JPKI) == (b"", 0x9000)
        for fid in (0x0001, 0x001B):
            with pytest.raises(ApduRefused):
                t.transmit(select_ef(fid))
    assert card.stats.apdus == 2            # only the two SELECTs of the JPKI AP ever reached it
    # Counter mode reaches the kenhojo AP, but never its individual-number EF.
    t = AllowlistTransport(Link(card), mode="counter")
    assert t.transmit(select_ap(KENHOJO_AID)) == (b"", 0x9000)
    for apdu in (select_ef(0x0001), select_ef(0x0003), select_ef(0x0014), select_ef(0x0015),
                 H("00B0810000"), H("00B0000000")):
        with pytest.raises(ApduRefused):
            t.transmit(apdu)
    assert card.stats.apdus == 3


def test_transport_tracks_real_card_answers(make_jpki_card):
    card = make_jpki_card("transit-card")
    link = Link(card)
    t = AllowlistTransport(link)
    assert t.transmit(SELECT_JPKI) == (b"", 0x6A82)
    assert t.state == GateState()
    with pytest.raises(ApduRefused):
        t.transmit(select_ef(0x000A))       # the AP was not found, so nothing is selected
    t.close()
    assert link.closed and len(link.seen) == 1


def test_link_failure_resets_the_state(make_jpki_card):
    card = make_jpki_card("registered-1")

    class Flaky(Link):
        def transmit(self, apdu):
            if apdu[1] == 0xB0:
                raise OSError("link down")
            return super().transmit(apdu)

    t = AllowlistTransport(Flaky(card))
    t.transmit(SELECT_JPKI)
    t.transmit(select_ef(0x000A))
    with pytest.raises(OSError):
        t.transmit(H("00B0000004"))
    assert t.state == GateState()
    with pytest.raises(ApduRefused):
        t.transmit(H("00B0000004"))


def test_observers_see_sent_apdus_only_and_never_the_pin(make_jpki_card, apdu_log):
    card = make_jpki_card("registered-1")
    t = AllowlistTransport(Link(card))
    t.transmit(SELECT_JPKI)
    with pytest.raises(ApduRefused):
        t.transmit(select_ap(KENHOJO_AID))
    t.transmit(select_ef(0x0018))
    pin_apdu = bytearray(H("0020008004") + b"1234")
    t.transmit(pin_apdu)
    assert [r.apdu for r in apdu_log] == [SELECT_JPKI, select_ef(0x0018), H("0020008004") + b"0000"]
    assert [r.redacted for r in apdu_log] == [False, False, True]
    assert {r.channel for r in apdu_log} == {t.channel} and apdu_log[0].mode == "kiosk"
    assert not any(b"1234" in r.apdu for r in apdu_log)
    assert replay(apdu_log) == []


def test_observer_removal():
    seen = []
    al.add_observer(seen.append)
    al.remove_observer(seen.append)
    al.remove_observer(seen.append)         # removing twice is harmless
    assert seen.append not in al._observers


def test_replay_finds_forbidden_apdus_and_keeps_channels_apart():
    good = [ApduRecord(1, "kiosk", SELECT_JPKI), ApduRecord(1, "kiosk", select_ef(0x000A)),
            ApduRecord(1, "kiosk", H("00B0000040"))]
    assert replay(good) == []
    bad = good + [
        ApduRecord(2, "kiosk", H("00B0000040")),                # channel 2 never selected anything
        ApduRecord(1, "kiosk", select_ap(KENHOJO_AID)),
        ApduRecord(1, "kiosk", H("0024018004") + b"0000"),
        ApduRecord(1, "nonsense", SELECT_JPKI),
    ]
    problems = replay(bad)
    assert [p.split(":")[0] for p in problems] == [
        "#3 channel 2 mode kiosk", "#4 channel 1 mode kiosk", "#5 channel 1 mode kiosk",
        "#6 channel 1 mode nonsense"]


def test_the_session_audit_fails_a_run_that_sent_a_forbidden_apdu(tmp_path):
    """Runs a tiny pytest session with only the audit plugin; a transport that bypassed the
    allowlist (simulated by calling the observers directly) must fail it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "test_sneaky.py").write_text(
        "from kiosk.card import apdu_allowlist as al\n"
        "def test_sneaky():\n"
        "    for observer in list(al._observers):\n"
        "        observer(al.ApduRecord(999, 'kiosk', bytes.fromhex('00A4040C0AD3921000310001010408')))\n"
    )
    env = dict(os.environ, KIOSK_APDU_AUDIT_FILE=str(tmp_path / "audit.jsonl"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "kiosk_testing.apdu_audit",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_sneaky.py")],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout and "APDU AUDIT FAILED" in result.stdout
    assert "channel 999" in result.stdout
