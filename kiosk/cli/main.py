"""The `kiosk` command: run the kiosk, run the demo, and staff/IT tools.

Subcommands import what they need when they run, so `kiosk config check` works on a
machine with no display and `kiosk card info` without Kivy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kiosk import __version__


def _add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="site configuration (default: $KIOSK_CONFIG or /etc/kiosk/kiosk.toml)")


def _add_exit_when_ready_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exit-when-ready", action="store_true",
                   help="exit 0 once idle is drawn and the devices and catalogue are connected (smoke test)")


def cmd_run(args: argparse.Namespace) -> int:
    from kiosk.shell.launcher import load_site, run_app

    return run_app(load_site(args.config, starting=True), demo=False, exit_when_ready=args.exit_when_ready)


def cmd_demo(args: argparse.Namespace) -> int:
    from kiosk.shell.launcher import demo_config, run_app

    return run_app(demo_config(args.data_dir, windowed=not args.fullscreen), demo=True,
                   exit_when_ready=args.exit_when_ready)


def cmd_config_check(args: argparse.Namespace) -> int:
    from kiosk.config.load import ConfigError, describe, identity_problem, load_config

    try:
        config = load_config(Path(args.file))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    problem = identity_problem(config)
    if problem:
        print(f"error: {args.file}: kiosk.id: {problem}", file=sys.stderr)
        return 1
    m = config["management"]
    if m["release_url"] and not m["release_keys"]:
        print(f"error: {args.file}: management.release_keys: release_url is set, but no key to check a release "
              "with (the kiosk would never install one)", file=sys.stderr)
        return 1
    if args.full:
        try:
            _check_files(config, args.file)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    print(f"{args.file}: OK")
    if not config["kiosk"]["id"]:
        print(f"note: {args.file}: kiosk.id is not set (needed before central IT's management is enabled)")
    if args.verbose:
        for line in describe(config):
            print("  " + line)
    return 0


def _check_files(config: dict, source: str) -> None:
    """What the kiosk builds from the files the configuration names, as at start-up: fonts,
    pictures, secret files, TLS material, patterns, and the pinned config and release keys."""
    from kiosk.config.load import ConfigError
    from kiosk.config.signed import load_public_keys
    from kiosk.config.usable import check_usable

    check_usable(config, None, source)
    for key in ("trusted_keys", "release_keys"):
        try:
            load_public_keys(config["management"][key])
        except ConfigError as e:
            raise ConfigError(source, f"management.{key}", f"{e.source}: {e.reason}") from None


def cmd_staff_hash_pin(args: argparse.Namespace) -> int:
    """Reads a staff PIN from standard input (no echo on a terminal) and prints its scrypt
    hash for [[staff.accounts]] pin_hash. The PIN itself is never stored or printed."""
    import getpass

    from kiosk.core.staff_pins import hash_pin

    if sys.stdin.isatty():
        pin = getpass.getpass("staff PIN (4-8 digits): ")
    else:
        pin = sys.stdin.readline().strip()
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 8):
        print("error: a staff PIN is 4 to 8 digits", file=sys.stderr)
        return 2
    buf = bytearray(pin.encode())
    try:
        print(hash_pin(buf))
    finally:
        for i in range(len(buf)):
            buf[i] = 0
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk", description="Library self-checkout kiosk (自動貸出機)")
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the kiosk with the site configuration")
    _add_config_arg(p)
    _add_exit_when_ready_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the kiosk with simulated devices and a demo catalogue")
    p.add_argument("--data-dir", help="where the demo keeps its data (default: ~/.local/share/kiosk-demo)")
    p.add_argument("--fullscreen", action="store_true", help="full screen, as on a kiosk")
    _add_exit_when_ready_arg(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = csub.add_parser("check", help="validate a site configuration file")
    c.add_argument("file")
    c.add_argument("-v", "--verbose", action="store_true", help="print every resulting setting")
    c.add_argument("--full", action="store_true",
                   help="also load every file it names, as the kiosk will (run it on the kiosk, as its user)")
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("staff", help="staff accounts")
    ssub = p.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    c = ssub.add_parser("hash-pin", help="hash a staff PIN (read from standard input) for the config")
    c.set_defaults(func=cmd_staff_hash_pin)

    from kiosk.cli.card import add_card_commands
    from kiosk.cli.doctor import add_doctor_command
    from kiosk.cli.fleet import add_fleet_commands
    from kiosk.cli.release import add_release_commands
    from kiosk.cli.sync import add_sync_commands

    add_card_commands(sub)
    add_sync_commands(sub)
    add_fleet_commands(sub)             # after `config check`: it adds sign/push to that group
    add_release_commands(sub)
    add_doctor_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
