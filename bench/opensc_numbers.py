"""What OpenSC exchanges with a card for the work of one kiosk authentication.

The work: read the user-authentication certificate, VERIFY the PIN, sign. OpenSC does it
as `pkcs15-tool --read-certificate 01` then `pkcs11-tool --login --sign` (two processes,
so it binds to the card twice, as any PKCS#11 client started per task would). Everything
is counted at the virtual card's vpcd bridge (kiosk/hardware/vpcd_card.py): APDUs and
bytes both ways, nothing else. The kiosk's own numbers, for the same card over the same
pcscd, are measured here too so the printed ratios come from one run.

Run:    /tmp/venv/bin/python bench/opensc_numbers.py
Import: from opensc_numbers import opensc_numbers   (with bench/ on sys.path; bench_auth.py)

Needs what the PC/SC tests need (root for pcscd's private namespaces, pcscd, vpcd, OpenSC);
raises RuntimeError with the reason otherwise. The private pcscd and its namespaces come
from kiosk_testing/pcscd.py (imported, not duplicated).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from kiosk.card.demo_pki import DEMO_AUTH_PIN, ensure_demo_pki  # noqa: E402
from kiosk.card.virtual_card import CardProfile, VirtualJpkiCard  # noqa: E402
from kiosk.card.vpcd_card import VpcdCard  # noqa: E402
from kiosk_testing.pcscd import (  # noqa: E402
    VirtualReaders,
    missing_binaries,
    missing_opensc,
    namespaces_refused,
    opensc_env,
    opensc_read_auth_cert,
    opensc_sign,
)


def _delta(served: VpcdCard, before: tuple[int, int, int], seconds: float) -> dict:
    s = served.stats
    apdus, to_card, from_card = s.apdus - before[0], s.bytes_to_card - before[1], s.bytes_from_card - before[2]
    return {"apdus": apdus, "bytes_to_card": to_card, "bytes_from_card": from_card,
            "bytes": to_card + from_card, "seconds": seconds}


def _mark(served: VpcdCard) -> tuple[int, int, int]:
    return served.stats.apdus, served.stats.bytes_to_card, served.stats.bytes_from_card


def _total(steps: dict[str, dict]) -> dict:
    keys = ("apdus", "bytes_to_card", "bytes_from_card", "bytes", "seconds")
    return {k: sum(step[k] for step in steps.values()) for k in keys}


def _ready(readers: VirtualReaders | None) -> VirtualReaders:
    reason = missing_binaries() or missing_opensc() or (None if readers else namespaces_refused())
    if reason:
        raise RuntimeError(reason)
    if readers is None:
        readers = VirtualReaders()
    readers.start()
    return readers


def opensc_numbers(profile: CardProfile | None = None, pin: str = DEMO_AUTH_PIN,
                   readers: VirtualReaders | None = None) -> dict:
    """OpenSC's APDUs/bytes for read certificate + VERIFY + sign, counted at the card.

    Returns {"apdus", "bytes_to_card", "bytes_from_card", "bytes", "seconds", "processes",
    "steps": {"read_certificate": {...}, "login_sign": {...}}}. "seconds" is wall time of
    the tool runs (process start-up included), so only the counts compare with the kiosk.
    Pass `readers` to reuse a running VirtualReaders; otherwise one is started and stopped.
    """
    own = readers is None
    readers = _ready(readers)
    with tempfile.TemporaryDirectory(prefix="opensc-numbers-") as tmp:
        work = Path(tmp)
        if profile is None:
            profile = ensure_demo_pki(work / "pki").profile("registered-1")
        served = readers.insert(VirtualJpkiCard(profile))
        try:
            env = opensc_env(work / "home")
            steps: dict[str, dict] = {}
            mark, started = _mark(served), time.perf_counter()
            der = opensc_read_auth_cert(env, work / "cert.pem")
            steps["read_certificate"] = _delta(served, mark, time.perf_counter() - started)
            if der != profile.auth_cert:
                raise RuntimeError("OpenSC read a different certificate than the card holds")
            (work / "challenge").write_bytes(os.urandom(32))
            mark, started = _mark(served), time.perf_counter()
            opensc_sign(env, work / "challenge", work / "sig", pin)
            steps["login_sign"] = _delta(served, mark, time.perf_counter() - started)
        finally:
            readers.remove()
            if own:
                readers.close()
    return {**_total(steps), "processes": 2, "steps": steps}


def kiosk_numbers(profile: CardProfile, pin: str = DEMO_AUTH_PIN,
                  readers: VirtualReaders | None = None) -> dict:
    """The kiosk's own exchange for the same work, through PcscReader and the allowlist:
    SELECT AP, token, tries, certificate, VERIFY, sign, re-SELECT (what CardService sends)."""
    from kiosk.card.jpki import JpkiCard
    from kiosk.card.pcsc_reader import PcscReader

    own = readers is None
    readers = _ready(readers)
    served = readers.insert(VirtualJpkiCard(profile))
    reader = PcscReader(readers.reader)
    try:
        mark, started = _mark(served), time.perf_counter()
        transport = reader.open()
        try:
            card = JpkiCard(transport)
            card.select_ap()
            card.read_token()
            card.pin_tries_left()
            card.read_auth_cert()
            secret = bytearray(pin.encode("ascii"))
            try:
                card.verify_pin(secret)
            finally:
                secret[:] = bytes(len(secret))
            card.sign(hashlib.sha256(os.urandom(32)).digest())
            card.select_ap()
        finally:
            transport.close()
        numbers = _delta(served, mark, time.perf_counter() - started)
    finally:
        readers.remove()
        if own:
            readers.close()
    return {**numbers, "processes": 1}


def main() -> int:
    readers = _ready(None)
    try:
        with tempfile.TemporaryDirectory(prefix="opensc-numbers-pki-") as tmp:
            profile = ensure_demo_pki(Path(tmp)).profile("registered-1")
            kiosk = kiosk_numbers(profile, readers=readers)
            opensc = opensc_numbers(profile, readers=readers)
    finally:
        readers.close()
    print("One authentication's card work (read certificate + VERIFY + sign), counted at the card")
    print(f"{'':24}{'kiosk':>10}{'OpenSC':>10}{'OpenSC/kiosk':>14}")
    for key in ("apdus", "bytes_to_card", "bytes_from_card", "bytes"):
        ratio = opensc[key] / kiosk[key] if kiosk[key] else float("nan")
        print(f"{key:24}{kiosk[key]:>10}{opensc[key]:>10}{ratio:>13.1f}x")
    print(f"{'wall seconds (see note)':24}{kiosk['seconds']:>10.2f}{opensc['seconds']:>10.2f}"
          f"{opensc['seconds'] / kiosk['seconds']:>13.1f}x")
    for name, step in opensc["steps"].items():
        print(f"  OpenSC {name:17}{'':10}{step['apdus']:>10} APDUs, {step['bytes']} bytes")
    print("note: OpenSC wall time includes starting two processes; compare the counts.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
