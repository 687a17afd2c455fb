"""`kiosk release build|fetch|status|guard`: signed software releases.

build   central IT, in the office: the wheel, its lock (and extra wheels for offline
        kiosks) with a signed manifest.json, in a directory to publish as it is.
fetch   on a kiosk, now: what the running kiosk's poller does (check, download,
        stage); the guard installs it at the next start.
status  the running version, the release on trial, the last install and rollback.
guard   what the unit runs before each start (ExecStartPre=+, as root).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path


def cmd_build(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kiosk.release.manifest import MANIFEST, ReleaseRefused, sha256_file, sign_manifest, wheel_version

    wheel, lock = Path(args.wheel), Path(args.lock)
    extra = sorted(Path(args.wheelhouse).glob("*.whl")) if args.wheelhouse else []
    try:
        key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
        version = args.version or wheel_version(wheel.name)
        if wheel_version(wheel.name) != version:
            raise ValueError(f"{wheel.name} is not version {version}")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not isinstance(key, Ed25519PrivateKey):
        print(f"error: {args.key}: not an Ed25519 private key", file=sys.stderr)
        return 1
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} is not empty", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[str, int, str]] = {}
    for path, role in [(wheel, "wheel"), (lock, "lock")] + [(w, "dependency") for w in extra]:
        shutil.copyfile(path, out / path.name)
        files[path.name] = (sha256_file(out / path.name), (out / path.name).stat().st_size, role)
    now = datetime.now().astimezone().replace(microsecond=0)
    try:
        raw = sign_manifest(version, files, key, created_at=now, expires_at=now + timedelta(days=args.valid_days),
                            target_kiosk=args.target_kiosk, target_group=args.target_group)
    except (ValueError, ReleaseRefused) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    (out / MANIFEST).write_bytes(raw)
    print(f"release {version}: {out}/ ({len(files)} files + {MANIFEST}); publish the directory as it is "
          f"and point management.release_url at {MANIFEST}")
    return 0


def _config(args: argparse.Namespace) -> dict:
    from kiosk.shell.launcher import load_site_config

    return load_site_config(args.config)


def cmd_fetch(args: argparse.Namespace) -> int:
    from kiosk.release.fetch import ReleaseFetcher
    from kiosk.sync.config_poll import ConfigPoller

    config = _config(args)
    if args.url:
        config["management"]["release_url"] = args.url
    if not config["management"]["release_url"]:
        print("error: no management.release_url in the site file (or --url)", file=sys.stderr)
        return 1
    from kiosk.config.load import ConfigError

    try:
        fetcher = ReleaseFetcher(config, state_dir=Path(args.state_dir))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result = ConfigPoller(fetcher.url, fetcher.apply, ca_bundle=config["management"]["poll_ca"]).poll_once()
    last = fetcher.last
    if result.state == "applied" and last is not None:
        print(f"staged: {last.version} (installed by the guard at the next start: systemctl restart kiosk)")
        return 0
    print(f"{result.state}: {result.code} {result.reason}".rstrip(), file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    from kiosk.release.status import release_status

    status = release_status(Path(args.state_dir)).as_dict()
    if args.json:
        print(json.dumps(status))
    else:
        for k, v in status.items():
            print(f"{k:14} {json.dumps(v) if isinstance(v, dict) else (v if v is not None else '-')}")
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    from kiosk.release.guard import main

    return main(args.guard_args)


def add_release_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="signed software releases: build, fetch, status, guard")
    rsub = p.add_subparsers(dest="release_command", required=True, metavar="ACTION")
    c = rsub.add_parser("build", help="sign a release (central IT)")
    c.add_argument("--key", required=True, help="the release-signing private key (PEM)")
    c.add_argument("--wheel", required=True)
    c.add_argument("--lock", required=True, help="requirements/kiosk.lock")
    c.add_argument("--wheelhouse", help="extra wheels to carry (offline kiosks, a changed lock)")
    c.add_argument("--out", required=True, help="an empty directory to publish")
    c.add_argument("--version", help="default: the wheel's")
    c.add_argument("--valid-days", type=float, default=30.0)
    c.add_argument("--target-kiosk")
    c.add_argument("--target-group")
    c.set_defaults(func=cmd_build)
    for name, func, text in (("fetch", cmd_fetch, "check, download and stage the published release now"),
                             ("status", cmd_status, "running version, trial, last install and rollback")):
        c = rsub.add_parser(name, help=text)
        c.add_argument("--config", metavar="FILE")
        c.add_argument("--state-dir", default="/var/lib/kiosk-release")
        if name == "fetch":
            c.add_argument("--url", help="the manifest URL (default: management.release_url)")
        else:
            c.add_argument("--json", action="store_true")
        c.set_defaults(func=func)
    c = rsub.add_parser("guard", help="the unit's pre-start step (root): confirm, roll back, install")
    c.add_argument("guard_args", nargs=argparse.REMAINDER)
    c.set_defaults(func=cmd_guard)
