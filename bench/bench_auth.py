"""What one JPKI authentication costs: link traffic and the kiosk's own CPU time.

Run: /tmp/venv/bin/python bench/bench_auth.py [--rounds N] [--pki-dir DIR]

Drives the real CardService (probe -> authenticate -> release) over the in-process
virtual reader and counts what crosses the card link (APDUs, bytes both ways) for a
first-seen card and for a returning card (the same card again, same service). The
kiosk decides only on certificate bytes read from the card in the same session, so a
returning card's whole certificate is read again, in as few 256-byte READ BINARYs as
it takes; nothing is cached across sessions. Kiosk CPU is process time around the
kiosk-side calls minus the CPU the virtual card itself spent (its RSA signature,
mostly). One table, one run: every ratio is measured here.

OpenSC is measured as one process: `pkcs11-tool --login --sign` binds to the card once and,
while binding, reads the user-authentication certificate itself, then VERIFY and sign; that
is one whole authentication, the same work as the kiosk's. The two-process figure
(`pkcs15-tool --read-certificate` first, then the signing process) is shown for reference.
Targets: returning card <= 30% of one OpenSC process's bytes; kiosk CPU <= 20 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kiosk.card.demo_pki import DEMO_AUTH_PIN, ensure_demo_pki  # noqa: E402
from kiosk.card.identity import TrustStore  # noqa: E402
from kiosk.card.service import CardService  # noqa: E402
from kiosk.card.virtual_card import CardProfile, VirtualJpkiCard  # noqa: E402
from kiosk.card.virtual_reader import VirtualReader  # noqa: E402

BYTES_TARGET = 0.30         # returning card vs one OpenSC process doing the same authentication
CPU_TARGET_MS = 20.0


def opensc_numbers(profile: CardProfile) -> dict | None:
    """OpenSC's traffic for the same work on the same card, counted at the card over
    pcscd + vpcd (bench/opensc_numbers.py), or None when OpenSC/pcscd cannot run here."""
    try:
        from opensc_numbers import opensc_numbers as measure
        return measure(profile)
    except Exception as exc:       # no pcscd, no vpcd, no namespaces: print n/a, say why
        print(f"OpenSC side not measured: {type(exc).__name__}: {exc}")
        return None


def authenticate_once(service: CardService, reader: VirtualReader, profile: CardProfile) -> dict:
    card = VirtualJpkiCard(profile)
    reader.insert(card)
    pin = bytearray(DEMO_AUTH_PIN.encode("ascii"))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    probe = service.probe()
    outcome = service.authenticate(pin)
    service.release()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    reader.remove()
    if not (probe.usable and outcome.ok):
        raise RuntimeError(f"authentication failed: {probe.error or outcome.error}")
    s = card.stats
    return {"apdus": s.apdus, "bytes": s.bytes_total, "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
            "kiosk_cpu_ms": (cpu - s.cpu_seconds) * 1000, "card_cpu_ms": s.cpu_seconds * 1000,
            "wall_ms": wall * 1000}


def measure(profile: CardProfile, trust: TrustStore, rounds: int) -> dict[str, list[dict]]:
    reader = VirtualReader()
    reader.start(lambda event: None)
    clock = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731
    runs: dict[str, list[dict]] = {"first-seen card": [], "returning card": []}
    for _ in range(rounds):
        service = CardService(reader, trust, clock)
        runs["first-seen card"].append(authenticate_once(service, reader, profile))
        runs["returning card"].append(authenticate_once(service, reader, profile))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--pki-dir", type=Path, help="reuse a demo PKI here (default: a fresh temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        pki = ensure_demo_pki(args.pki_dir or Path(tmp) / "pki")
        profile = pki.profile("registered-1")
        trust = TrustStore.shipped(test_paths=[pki.ca_pem_path], accept_test=True)
        measure(profile, trust, 3)                                  # warm-up: imports, caches
        runs = measure(profile, trust, args.rounds)
        opensc = opensc_numbers(profile)

    first, back = runs["first-seen card"], runs["returning card"]
    one = opensc["steps"]["login_sign"] if opensc else None     # one process: cert + VERIFY + sign
    print(f"JPKI authentication (probe + authenticate + release) over the virtual card, "
          f"{args.rounds} rounds, medians")
    header = f"{'':24}{'APDUs':>7}{'bytes':>8}{'to card':>9}{'from card':>11}{'vs OpenSC bytes':>17}" \
             f"{'kiosk CPU ms':>14}{'card CPU ms':>13}"
    print(header)
    print("-" * len(header))
    for name, rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        vs = f"{med['bytes'] / one['bytes']:.2f}x" if one else "n/a"
        print(f"{name:24}{med['apdus']:>7.0f}{med['bytes']:>8.0f}{med['bytes_in']:>9.0f}{med['bytes_out']:>11.0f}"
              f"{vs:>17}{med['kiosk_cpu_ms']:>14.2f}{med['card_cpu_ms']:>13.2f}")
    if opensc and one:
        print(f"{'OpenSC, one process':24}{one['apdus']:>7}{one['bytes']:>8}{one['bytes_to_card']:>9}"
              f"{one['bytes_from_card']:>11}{'1.00x':>17}")
        print(f"{'OpenSC, two processes':24}{opensc['apdus']:>7}{opensc['bytes']:>8}{opensc['bytes_to_card']:>9}"
              f"{opensc['bytes_from_card']:>11}{opensc['bytes'] / one['bytes']:>16.2f}x")
    else:
        print(f"{'OpenSC':24}{'n/a':>7}{'n/a':>8}   (OpenSC could not be run here)")
    print()
    ratio_bytes = statistics.median(r["bytes"] for r in back) / statistics.median(r["bytes"] for r in first)
    worst_cpu = max(statistics.median(r["kiosk_cpu_ms"] for r in rows) for rows in runs.values())
    print(f"returning / first-seen bytes:             {ratio_bytes:.2f}x")
    if opensc and one:
        ret = statistics.median(r["bytes"] for r in back)
        verdict = "meets" if ret / one["bytes"] <= BYTES_TARGET else "MISSES"
        print(f"returning / OpenSC bytes, one process:    {ret / one['bytes']:.2f}x  "
              f"({verdict} target <= {BYTES_TARGET:.2f}x)")
        print(f"returning / OpenSC bytes, two processes:  {ret / opensc['bytes']:.2f}x")
    else:
        print(f"returning / OpenSC bytes:                 n/a   (target <= {BYTES_TARGET:.2f}x)")
    verdict = "meets" if worst_cpu <= CPU_TARGET_MS else "MISSES"
    print(f"kiosk CPU / target ({CPU_TARGET_MS:.0f} ms):              {worst_cpu / CPU_TARGET_MS:.2f}x  "
          f"({verdict}; {worst_cpu:.2f} ms, this machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
