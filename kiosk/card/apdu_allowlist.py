"""The APDU allowlist: the lowest layer every card transport goes through.

Nothing above this module can reach the individual number (My Number), write to
the card or change a PIN, because only APDUs listed here are ever sent, and only
in the right place: READ BINARY, VERIFY and signing are allowed on specific EFs
of the JPKI AP, so the allowlist tracks which AP/EF is selected per transport.
Kiosk mode allows the JPKI AP only; counter mode (staff-assisted registration)
also the birth-date EF of the 券面事項入力補助AP, never its individual-number EF.

Pure core: `check()` (shape only), `check_in_state()` and `next_state()` over a
`GateState`; `AllowlistTransport` is the small stateful shell around them.
Observers see every APDU that passed, right before it is sent (PIN digits
redacted), so tests can audit the whole run.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from kiosk.core.interfaces import Transport

JPKI_AID = bytes.fromhex("D392F000260100000001")
KENHOJO_AID = bytes.fromhex("D3921000310001010408")    # 券面事項入力補助AP
MY_NUMBER_AID_PREFIX = bytes.fromhex("D392100031")      # every AP that holds the individual number

EF_TOKEN, EF_AUTH_CERT, EF_AUTH_CA, EF_AUTH_KEY, EF_AUTH_PIN = 0x0006, 0x000A, 0x000B, 0x0017, 0x0018

SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

INS_SELECT, INS_READ_BINARY, INS_VERIFY, INS_SIGN, INS_GET_RESPONSE = 0xA4, 0xB0, 0x20, 0x2A, 0xC0


class ApduRefused(Exception):
    """An APDU that is not on the allowlist. Carries only the header, never data (PINs)."""

    def __init__(self, reason: str, apdu: bytes | bytearray = b"") -> None:
        header = bytes(apdu[:4]).hex().upper()
        super().__init__(f"{reason} [{header}]" if header else reason)
        self.reason = reason
        self.header = header


# -- rules that no mode may relax --------------------------------------------------------------

# Where the individual number lives, or data derived from it (hashes of a 12-digit number are
# reversible), or PINs whose value *is* the number/birth date. See reference jpki.md §2.
NEVER_EFS: dict[bytes, frozenset[int]] = {
    KENHOJO_AID: frozenset({0x0001, 0x0003, 0x0014, 0x0015}),
    # The signature side: personal data in the certificate, a 5-try PIN, no use at a kiosk.
    JPKI_AID: frozenset({0x0001, 0x0002, 0x001A, 0x001B}),
}
# Of the My Number APs, only 券面事項入力補助 may ever appear in a policy (counter mode).
SELECTABLE_MY_NUMBER_APS = frozenset({KENHOJO_AID})


def _pin_digits_ok(apdu: bytes | bytearray) -> bool:
    """VERIFY data is exactly 4 ASCII digits. Indexes in place: a slice would copy the PIN."""
    return len(apdu) == 9 and apdu[4] == 4 and all(0x30 <= apdu[i] <= 0x39 for i in range(5, 9))


@dataclass(frozen=True)
class ApRule:
    """What a mode may do inside one AP."""

    aid: bytes
    select: frozenset[int]
    read: frozenset[int] = frozenset()
    verify: frozenset[int] = frozenset()        # PIN EFs; data must be exactly 4 ASCII digits
    sign: frozenset[int] = frozenset()          # key EFs for COMPUTE DIGITAL SIGNATURE

    def __post_init__(self) -> None:
        if self.aid.startswith(MY_NUMBER_AID_PREFIX) and self.aid not in SELECTABLE_MY_NUMBER_APS:
            raise ValueError("this AP holds the individual number and may never be selected")
        forbidden = NEVER_EFS.get(self.aid, frozenset())
        used = self.select | self.read | self.verify | self.sign
        if used & forbidden:
            raise ValueError(f"EFs {sorted(used & forbidden)} may never be allowed in this AP")
        if not (self.read | self.verify | self.sign) <= self.select:
            raise ValueError("every EF used must also be selectable")


@dataclass(frozen=True)
class Policy:
    name: str
    aps: tuple[ApRule, ...]

    def rule(self, aid: bytes | None) -> ApRule | None:
        return next((r for r in self.aps if r.aid == aid), None)


JPKI_USER_AUTH = ApRule(
    aid=JPKI_AID,
    select=frozenset({EF_TOKEN, EF_AUTH_CERT, EF_AUTH_CA, EF_AUTH_KEY, EF_AUTH_PIN}),
    read=frozenset({EF_TOKEN, EF_AUTH_CERT, EF_AUTH_CA}),
    verify=frozenset({EF_AUTH_PIN}),
    sign=frozenset({EF_AUTH_KEY}),
)

KIOSK_POLICY = Policy("kiosk", (JPKI_USER_AUTH,))

EF_SUPPORT_BASIC_INFO, EF_SUPPORT_PIN = 0x0002, 0x0011

# Counter registration (staff signed in) may read the holder's birth date from the
# 券面事項入力補助AP: SELECT it, SELECT/VERIFY its PIN EF 0011, SELECT/READ its basic-information
# EF 0002. NEVER_EFS still refuses EF 0001 (the number), 0003, 0014 and 0015 there, both when
# the rule is built and for every APDU, whatever the policy says.
KENHOJO_BIRTH_DATE = ApRule(
    aid=KENHOJO_AID,
    select=frozenset({EF_SUPPORT_BASIC_INFO, EF_SUPPORT_PIN}),
    read=frozenset({EF_SUPPORT_BASIC_INFO}),
    verify=frozenset({EF_SUPPORT_PIN}),
)

COUNTER_POLICY = Policy("counter", (JPKI_USER_AUTH, KENHOJO_BIRTH_DATE))

MODES: dict[str, Policy] = {"kiosk": KIOSK_POLICY, "counter": COUNTER_POLICY}


def policy_for(mode: str | Policy) -> Policy:
    if isinstance(mode, Policy):
        return mode
    try:
        return MODES[mode]
    except KeyError:
        raise ValueError(f"unknown allowlist mode {mode!r}") from None


# -- the pure core -----------------------------------------------------------------------------

@dataclass(frozen=True)
class GateState:
    """What the card has selected, as far as the allowlist knows. None = nothing (or unknown)."""

    ap: bytes | None = None
    ef: int | None = None


@dataclass(frozen=True)
class _Command:
    kind: str               # select_ap | select_ef | read | verify | sign | get_response
    target: bytes | int | None = None


def _classify(apdu: bytes | bytearray, policy: Policy) -> _Command:
    """The shape check: exact byte layouts only; anything else is refused here."""
    n = len(apdu)
    if n < 4:
        raise ApduRefused("too short", apdu)
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if cla == 0x80 and ins == INS_SIGN:
        if (p1, p2) == (0x00, 0x80) and n == 57 and apdu[4] == 0x33 and apdu[-1] == 0x00 \
                and bytes(apdu[5:24]) == SHA256_DIGEST_INFO_PREFIX:
            return _Command("sign")
        raise ApduRefused("COMPUTE DIGITAL SIGNATURE must be 80 2A 00 80 33 <SHA-256 DigestInfo> 00", apdu)
    if cla != 0x00:
        raise ApduRefused("class byte not allowed (no channels, no secure messaging)", apdu)
    if ins == INS_SELECT:
        if (p1, p2) == (0x04, 0x0C) and n == 15 and apdu[4] == 0x0A:
            aid = bytes(apdu[5:15])
            if aid.startswith(MY_NUMBER_AID_PREFIX) and aid not in SELECTABLE_MY_NUMBER_APS:
                raise ApduRefused("AP holding the individual number", apdu)
            if policy.rule(aid) is None:
                raise ApduRefused("AP not allowed in this mode", apdu)
            return _Command("select_ap", aid)
        if (p1, p2) == (0x02, 0x0C) and n == 7 and apdu[4] == 0x02:
            fid = int.from_bytes(apdu[5:7], "big")
            if not any(fid in r.select for r in policy.aps):
                raise ApduRefused("EF not allowed", apdu)
            return _Command("select_ef", fid)
        raise ApduRefused("SELECT form not allowed (only by AID, or EF id under the AP, P2=0C)", apdu)
    if ins == INS_READ_BINARY:
        if n == 5 and not p1 & 0x80:
            return _Command("read")
        raise ApduRefused("READ BINARY must be 00 B0 <15-bit offset> <Le> (no short EF ids)", apdu)
    if ins == INS_VERIFY:
        if (p1, p2) == (0x00, 0x80) and (n == 4 or _pin_digits_ok(apdu)):
            return _Command("verify")
        raise ApduRefused("VERIFY must be 00 20 00 80 [04 <4 ASCII digits>]", apdu)
    if ins == INS_GET_RESPONSE:
        if (p1, p2) == (0x00, 0x00) and n == 5:
            return _Command("get_response")
        raise ApduRefused("GET RESPONSE must be 00 C0 00 00 <Le>", apdu)
    raise ApduRefused("instruction not allowed", apdu)


def check(apdu: bytes | bytearray, mode: str | Policy = "kiosk") -> None:
    """Refuse (ApduRefused) any APDU whose bytes are not on the list for `mode`, in any state."""
    _classify(apdu, policy_for(mode))


def check_in_state(state: GateState, apdu: bytes | bytearray, mode: str | Policy = "kiosk") -> None:
    """`check()` plus: is this APDU allowed with what is selected now?"""
    policy = policy_for(mode)
    cmd = _classify(apdu, policy)
    if cmd.kind in ("select_ap", "get_response"):
        return
    rule = policy.rule(state.ap)
    if rule is None:
        raise ApduRefused("no allowed AP is selected", apdu)
    if cmd.kind == "select_ef":
        if cmd.target not in rule.select or cmd.target in NEVER_EFS.get(rule.aid, ()):
            raise ApduRefused("EF not allowed in the selected AP", apdu)
        return
    if state.ef is None or state.ef in NEVER_EFS.get(rule.aid, ()):
        raise ApduRefused("no allowed EF is selected", apdu)
    allowed = {"read": rule.read, "verify": rule.verify, "sign": rule.sign}[cmd.kind]
    if state.ef not in allowed:
        raise ApduRefused(f"{cmd.kind} not allowed on the selected EF", apdu)


def next_state(state: GateState, apdu: bytes | bytearray, sw: int | None) -> GateState:
    """State after an allowed APDU got status `sw` (None = unknown, e.g. the link failed)."""
    if sw is None:
        return GateState()
    ok = sw == 0x9000 or (sw >> 8) == 0x61
    if len(apdu) >= 4 and apdu[0] == 0x00 and apdu[1] == INS_SELECT:
        if apdu[2] == 0x04:
            return GateState(ap=bytes(apdu[5:15])) if ok else GateState()
        return GateState(ap=state.ap, ef=int.from_bytes(apdu[5:7], "big") if ok else None)
    return state


def redact(apdu: bytes | bytearray) -> bytes:
    """The APDU as observers may see it: VERIFY data (the PIN) replaced by '0' digits."""
    if len(apdu) > 5 and apdu[1] == INS_VERIFY:
        return bytes(apdu[:5]) + b"0" * (len(apdu) - 5)
    return bytes(apdu)


# -- observers (tests audit every APDU actually sent) --------------------------------------------

@dataclass(frozen=True)
class ApduRecord:
    channel: int            # one per AllowlistTransport, so a replay can rebuild its state
    mode: str
    apdu: bytes             # redacted
    redacted: bool = False


_observers: list[Callable[[ApduRecord], None]] = []
_channels = itertools.count(1)


def add_observer(observer: Callable[[ApduRecord], None]) -> None:
    _observers.append(observer)


def remove_observer(observer: Callable[[ApduRecord], None]) -> None:
    if observer in _observers:
        _observers.remove(observer)


def replay(records: Iterable[ApduRecord]) -> list[str]:
    """Re-check a recorded run channel by channel; returns one line per violation (empty = clean).

    SELECTs are assumed to have succeeded, which only widens what a replay allows over the live
    check, so a clean live run always replays clean and a forbidden APDU never does.
    """
    states: dict[int, GateState] = {}
    problems = []
    for i, rec in enumerate(records):
        state = states.get(rec.channel, GateState())
        try:
            check_in_state(state, rec.apdu, rec.mode)
        except (ApduRefused, ValueError) as exc:
            problems.append(f"#{i} channel {rec.channel} mode {rec.mode}: {exc}")
            continue
        states[rec.channel] = next_state(state, rec.apdu, 0x9000)
    return problems


# -- the shell -----------------------------------------------------------------------------------

@dataclass
class AllowlistTransport:
    """Checks every APDU against the allowlist (with selection state), then forwards it."""

    inner: Transport
    mode: str = "kiosk"
    state: GateState = field(default_factory=GateState)
    channel: int = field(default_factory=lambda: next(_channels))

    def __post_init__(self) -> None:
        self._policy = policy_for(self.mode)
        self._lock = threading.Lock()

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        with self._lock:
            check_in_state(self.state, apdu, self._policy)
            if _observers:
                record = ApduRecord(self.channel, self._policy.name, redact(apdu),
                                    redacted=len(apdu) > 5 and apdu[1] == INS_VERIFY)
                for observer in list(_observers):
                    observer(record)
            try:
                data, sw = self.inner.transmit(apdu)
            except BaseException:
                self.state = GateState()        # the card's state is unknown now: re-SELECT first
                raise
            self.state = next_state(self.state, apdu, sw)
            return data, sw

    def close(self) -> None:
        self.state = GateState()
        self.inner.close()
