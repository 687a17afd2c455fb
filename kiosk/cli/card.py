"""Staff diagnostics for the card reader: `kiosk card info` and `kiosk card verify`.

Why: when a patron's card "does not work", staff need to tell a reader or pcscd problem
from a card problem (expired certificate, locked PIN, not a My Number Card) without the
kiosk UI and without spending a PIN try. `info` never sends VERIFY with data; `verify`
sends it exactly once, after showing the tries left. Output never contains the
certificate's serial or subject, only its SHA-256 (how the kiosk knows a card).

Both decide as the kiosk does: the same site configuration (`--config`, else $KIOSK_CONFIG,
else /etc/kiosk/kiosk.toml when present, plus the stored signed layer), the same trust
anchors, test-PKI acceptance, reader name and smartphone rule (kiosk.shell.launcher builds
them for both), and the same last-try rule (kiosk.core.card.pin_prompt).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from kiosk.core.card import CardError, CardKind, PinPrompt, pin_prompt
from kiosk.core.interfaces import CardEvent, CardEventKind, CardGoneError, CardReader, ReaderGoneError

if TYPE_CHECKING:       # imported where used: `kiosk run` builds this parser too, and starts sooner
    from kiosk.card.identity import TrustStore
    from kiosk.card.jpki import JpkiCard
    from kiosk.config.settings import CardSettings

EXIT_OK = 0
EXIT_CARD = 1           # a card was read, but it cannot sign a patron in
EXIT_USAGE = 2
EXIT_NO_CARD = 3        # no card (or no reader, or no pcscd) within the timeout


def add_card_commands(subparsers) -> None:
    """Register `card info` and `card verify` on an argparse subparsers object."""
    card = subparsers.add_parser("card", help="card reader diagnostics (no PIN try spent by info)")
    actions = card.add_subparsers(dest="card_command", required=True, metavar="ACTION")

    info = actions.add_parser("info", help="show the inserted card; spends no PIN try")
    _common(info)
    info.set_defaults(func=cmd_info)

    verify = actions.add_parser("verify", help="full authentication: PIN (from stdin) + signature + chain")
    _common(verify)
    verify.add_argument("--confirm-last-try", action="store_true",
                        help="the card holder confirms spending the last PIN try (a wrong PIN then "
                             "locks the card), as on the kiosk's last-try screen")
    verify.set_defaults(func=cmd_verify)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="site configuration, for the kiosk's trust anchors, test-PKI setting, reader "
                        "and smartphone rule (default: $KIOSK_CONFIG or /etc/kiosk/kiosk.toml)")
    p.add_argument("--reader", metavar="NAME",
                   help="only readers whose name contains NAME (default: card.reader of the configuration)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for a card (default 30)")
    p.add_argument("--trust-dir", type=Path, metavar="DIR",
                   help="J-LIS CA certificates (*.pem) instead of card.trust_anchors of the configuration")
    p.add_argument("--accept-test-pki", action="store_true",
                   help="also accept test CAs (card.test_anchors and --test-anchor), as if "
                        "card.accept_test_pki were on")
    p.add_argument("--test-anchor", type=Path, action="append", default=[], metavar="PEM",
                   help="a test CA certificate, added to card.test_anchors (used only when test PKI "
                        "is accepted)")


# -- plumbing the commands share ---------------------------------------------------------------

def make_reader(name_filter: str | None) -> CardReader:
    from kiosk.card.pcsc_reader import PcscReader

    return PcscReader(name_filter or None, poll_interval=0.5, backoff=(0.1, 1.0))


def load_card_settings(args: argparse.Namespace) -> CardSettings:
    """The kiosk's card settings (same site file and signed layer as `kiosk run`), with the
    command line's overrides on top. ValueError: the configuration or an override is unusable."""
    from dataclasses import replace

    from kiosk.config.load import ConfigError
    from kiosk.config.settings import CardSettings
    from kiosk.shell.launcher import load_site

    try:
        settings = CardSettings.from_config(load_site(args.config).config)
    except (ConfigError, OSError) as exc:
        raise ValueError(f"configuration: {exc}") from None
    if args.trust_dir is not None:
        settings = replace(settings, trust_anchors=tuple(sorted(Path(args.trust_dir).glob("*.pem"))))
        if not settings.trust_anchors:
            raise ValueError(f"no CA certificates (*.pem) in {args.trust_dir}")
    if args.test_anchor:
        settings = replace(settings, test_anchors=(*settings.test_anchors, *args.test_anchor))
    if args.accept_test_pki:
        if not settings.test_anchors:
            raise ValueError("--accept-test-pki needs at least one --test-anchor PEM "
                             "(or card.test_anchors in the configuration)")
        settings = replace(settings, accept_test_pki=True)
    if args.reader:
        settings = replace(settings, reader_name=args.reader)
    return settings


def load_card_setup(args: argparse.Namespace) -> tuple[CardSettings, TrustStore]:
    """What `info` and `verify` both start from: the card settings and the trust store the
    kiosk would use. ValueError: the configuration or an override is unusable."""
    settings = load_card_settings(args)
    return settings, load_trust(settings)


def load_trust(settings: CardSettings) -> TrustStore:
    """The very trust store the kiosk builds from these settings."""
    from kiosk.shell.launcher import build_trust

    try:
        trust = build_trust(settings)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load trust anchors: {exc}") from None
    if not trust.active:
        raise ValueError("no usable CA certificates (card.trust_anchors)")
    return trust


def wait_for_card(reader: CardReader, timeout: float) -> tuple[CardEvent | None, str]:
    """Start watching; the INSERTED event, or None and why nothing came (for the message)."""
    events: queue.Queue[CardEvent] = queue.Queue()
    reader.start(events.put)
    deadline = time.monotonic() + timeout
    why = "no card was inserted"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, why
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            return None, why
        if event.kind is CardEventKind.INSERTED:
            return event, ""
        if event.kind is CardEventKind.READER_UNAVAILABLE:
            why = {"pcscd_gone": "pcscd is not running (service pcscd)",
                   "no_reader": "no card reader found"}.get(event.detail, "reader unavailable")
        elif event.kind is CardEventKind.READER_AVAILABLE:
            why = "no card was inserted"


def _emit(args: argparse.Namespace, out: TextIO, result: dict, lines: list[str]) -> None:
    if args.json:
        out.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        out.write("\n".join(lines) + "\n")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# -- card info ---------------------------------------------------------------------------------

def describe_card(card: JpkiCard, trust: TrustStore, now: dt.datetime, allow_smartphone: bool = False) -> dict:
    """Everything `info` shows, read without spending a PIN try (no VERIFY with data).

    `error` is what the kiosk would refuse the card for before the PIN, in the kiosk's order
    (kind, smartphone rule, tries, then the certificate); `pin_prompt` is the last-try rule.
    """
    from kiosk.card.identity import IdentityError, cert_hash, check_certificate

    result: dict = {"kind": None, "tries_left": None, "pin_prompt": None, "error": None, "certificate": None}
    if not card.select_ap():
        result.update(kind=CardKind.NOT_JPKI.value, error=CardError.NOT_JPKI.value)
        return result
    kind = card.read_token()
    result["kind"] = kind.value
    if kind is CardKind.NOT_JPKI:
        result["error"] = CardError.NOT_JPKI.value
        return result
    tries = result["tries_left"] = card.pin_tries_left()
    result["pin_prompt"] = pin_prompt(tries).value
    if kind is CardKind.SMARTPHONE:
        result["certificate"] = {"readable": False}   # only after VERIFY on smartphone JPKI
        cert_verdict = None
    else:
        der = card.read_auth_cert()
        cert: dict = {"readable": True, "sha256": cert_hash(der)}
        try:
            identity = check_certificate(der, trust, now)
            cert.update(verdict="ok", issuer=identity.issuer, test_pki=identity.test_pki,
                        not_before=_iso(identity.not_before), not_after=_iso(identity.not_after))
        except IdentityError as exc:
            cert.update(verdict=exc.kind.value, **_issuer(der, trust))
            cert.update(_validity(der))
        result["certificate"] = cert
        cert_verdict = None if cert["verdict"] == "ok" else cert["verdict"]
    if kind is CardKind.JUKI_CARD:
        result["error"] = CardError.JUKI_CARD.value
    elif kind is CardKind.SMARTPHONE and not allow_smartphone:
        result["error"] = CardError.SMARTPHONE_UNSUPPORTED.value
    elif tries is None:             # "already verified" straight after SELECT: not a sane card
        result["error"] = CardError.MUTE_CARD.value
    elif tries == 0:
        result["error"] = CardError.PIN_LOCKED.value
    else:
        result["error"] = cert_verdict
    return result


def _issuer(der: bytes, trust: TrustStore) -> dict:
    """Which trusted CA issued a certificate that failed another check (expired, say)."""
    from kiosk.card.identity import IdentityError, find_issuer, parse_certificate

    try:
        anchor = find_issuer(parse_certificate(der), trust)
    except IdentityError:
        return {"issuer": None, "test_pki": None}
    return {"issuer": anchor.label, "test_pki": anchor.test}


def _validity(der: bytes) -> dict:
    from cryptography import x509

    try:
        parsed = x509.load_der_x509_certificate(der)
    except ValueError:
        return {"not_before": None, "not_after": None}
    return {"not_before": _iso(parsed.not_valid_before_utc), "not_after": _iso(parsed.not_valid_after_utc)}


def _info_lines(reader: str, r: dict) -> list[str]:
    tries = r["tries_left"]
    lines = [f"reader:       {reader}",
             f"card:         {r['kind']}",
             f"PIN tries:    {'-' if tries is None else tries} left (user authentication, max 3)"]
    if r.get("pin_prompt") == PinPrompt.CONFIRM_LAST_TRY.value:
        lines.append("              the last try: the kiosk asks the holder to confirm before the PIN")
    cert = r["certificate"]
    if cert is None:
        pass
    elif not cert["readable"]:
        lines.append("certificate:  readable only after the PIN (smartphone JPKI)")
    else:
        issuer = cert["issuer"] or "not a trusted CA"
        if cert.get("test_pki"):
            issuer += " (TEST PKI)"
        lines += [f"certificate:  sha256 {cert['sha256']}",
                  f"  issuer:     {issuer}",
                  f"  valid:      {cert['not_before']} .. {cert['not_after']}",
                  f"  chain:      {cert['verdict']}"]
    lines.append(f"verdict:      {'usable' if r['error'] is None else r['error']}")
    return lines


def cmd_info(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None,
             reader: CardReader | None = None, now: Callable[[], dt.datetime] = _utcnow) -> int:
    from kiosk.card.jpki import JpkiCard, JpkiError

    out, err = out or sys.stdout, err or sys.stderr
    try:
        settings, trust = load_card_setup(args)
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    reader = reader or make_reader(settings.reader_name)
    try:
        event, why = wait_for_card(reader, args.timeout)
        if event is None:
            err.write(f"error: no card within {args.timeout:g}s: {why}\n")
            return EXIT_NO_CARD
        try:
            transport = reader.open()
        except (CardGoneError, ReaderGoneError) as exc:
            err.write(f"error: could not open the card ({_gone_kind(exc)})\n")
            return EXIT_NO_CARD
        try:
            card = JpkiCard(transport)
            result = describe_card(card, trust, now(), allow_smartphone=settings.allow_smartphone)
            card.select_ap()
        except (CardGoneError, ReaderGoneError) as exc:
            err.write(f"error: {_gone_kind(exc)} while reading the card\n")
            return EXIT_NO_CARD
        except JpkiError as exc:
            kind = CardKind.MUTE.value if exc.kind is CardError.MUTE_CARD else None
            result = {"kind": kind, "tries_left": None, "pin_prompt": None, "error": exc.kind.value,
                      "certificate": None}
        finally:
            transport.close()
    finally:
        reader.stop()
    result["reader"] = event.reader
    _emit(args, out, result, _info_lines(event.reader, result))
    return EXIT_OK if result["error"] is None else EXIT_CARD


def _gone_kind(exc: Exception) -> str:
    if isinstance(exc, ReaderGoneError):
        return CardError.PCSCD_GONE.value if str(exc).startswith("pcscd_gone") else CardError.READER_GONE.value
    return CardError.CARD_REMOVED.value


# -- card verify -------------------------------------------------------------------------------

def read_pin(stream: TextIO | None = None, prompt: TextIO | None = None) -> bytearray:
    """One line from stdin into a bytearray (never a str, so it can be zeroed).

    On a terminal echo is turned off; otherwise (a pipe, CI) a plain line is read.
    Bytes are read one at a time straight from the file descriptor: single-byte bytes
    objects are shared singletons in CPython, so no copy of the PIN is left behind.
    """
    stream, prompt = stream or sys.stdin, prompt or sys.stderr
    fd = stream.fileno()
    pin = bytearray()
    restore = None
    if os.isatty(fd):
        import termios

        prompt.write("User-authentication PIN (4 digits): ")
        prompt.flush()
        old = termios.tcgetattr(fd)
        new = termios.tcgetattr(fd)
        new[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        restore = (termios, old)
    try:
        while len(pin) <= 16:
            byte = os.read(fd, 1)
            if not byte or byte in (b"\n", b"\r"):
                break
            pin += byte
    finally:
        if restore is not None:
            termios_mod, old = restore
            termios_mod.tcsetattr(fd, termios_mod.TCSAFLUSH, old)
            prompt.write("\n")
    return pin


def _valid_pin(pin: bytearray) -> bool:
    return len(pin) == 4 and all(0x30 <= b <= 0x39 for b in pin)


def cmd_verify(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None,
               reader: CardReader | None = None, pin_source: Callable[[], bytearray] | None = None,
               now: Callable[[], dt.datetime] = _utcnow) -> int:
    from kiosk.shell.launcher import build_card_service

    out, err = out or sys.stdout, err or sys.stderr
    pin_source = pin_source or read_pin
    try:
        settings, trust = load_card_setup(args)
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    reader = reader or make_reader(settings.reader_name)
    service = build_card_service(settings, reader, trust, now)
    try:
        event, why = wait_for_card(reader, args.timeout)
        if event is None:
            err.write(f"error: no card within {args.timeout:g}s: {why}\n")
            return EXIT_NO_CARD
        probe = service.probe()
        result: dict = {"reader": event.reader, "kind": probe.kind.value, "tries_left": probe.tries_left,
                        "authenticated": False, "error": None, "certificate": None}
        if probe.error is not None:
            result["error"] = probe.error.value
            _emit(args, out, result, _verify_lines(result))
            return EXIT_NO_CARD if probe.error in _GONE else EXIT_CARD
        prompt = pin_prompt(probe.tries_left)
        if prompt is PinPrompt.LOCKED:
            result["error"] = CardError.PIN_LOCKED.value
            _emit(args, out, result, _verify_lines(result))
            return EXIT_CARD
        if prompt is PinPrompt.CONFIRM_LAST_TRY and not args.confirm_last_try:
            # The kiosk's rule: the last try only after the holder confirms (its last-try screen).
            result["error"] = "last_try"
            _emit(args, out, result, _verify_lines(result))
            err.write("error: only 1 PIN try left; a wrong PIN locks the card until the municipal office "
                      "unblocks it. If the card holder confirms, run again with --confirm-last-try\n")
            return EXIT_CARD
        err.write(f"{probe.tries_left} PIN tries left.\n")
        pin = pin_source()
        try:
            if not _valid_pin(pin):
                err.write("error: the PIN is 4 digits; nothing was sent to the card\n")
                return EXIT_USAGE
            outcome = service.authenticate(pin)     # zeroes pin
        finally:
            pin[:] = bytes(len(pin))
        if outcome.ok:
            identity = outcome.identity
            result.update(authenticated=True, tries_left=outcome.tries_left,
                          certificate={"sha256": identity.cert_hash, "issuer": identity.issuer,
                                       "test_pki": identity.test_pki,
                                       "not_before": _iso(identity.not_before),
                                       "not_after": _iso(identity.not_after)})
        else:
            result.update(error=outcome.error.value if outcome.error else "unknown",
                          tries_left=outcome.tries_left)
        _emit(args, out, result, _verify_lines(result))
        return EXIT_OK if outcome.ok else EXIT_CARD
    finally:
        service.release()
        reader.stop()


_GONE = (CardError.CARD_REMOVED, CardError.READER_GONE, CardError.PCSCD_GONE)


def _verify_lines(r: dict) -> list[str]:
    lines = [f"reader:       {r['reader']}", f"card:         {r['kind']}"]
    if r["authenticated"]:
        cert = r["certificate"]
        issuer = cert["issuer"] + (" (TEST PKI)" if cert["test_pki"] else "")
        lines += ["result:       authenticated (PIN + signature + chain)",
                  f"certificate:  sha256 {cert['sha256']}",
                  f"  issuer:     {issuer}",
                  f"  valid:      {cert['not_before']} .. {cert['not_after']}"]
    else:
        tries = r["tries_left"]
        lines += [f"result:       {r['error']}",
                  f"PIN tries:    {'-' if tries is None else tries} left"]
    return lines


# -- stand-alone use: python -m kiosk.cli.card info|verify ... ---------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiosk", description="card reader diagnostics")
    add_card_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["card"]:
        argv.insert(0, "card")
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
