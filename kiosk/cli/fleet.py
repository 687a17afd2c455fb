"""Central IT's tools: `kiosk keys new`, `kiosk config sign`, `kiosk config push`, `kiosk fleet status`.

They run in the office, not on a kiosk. Signing validates the TOML layer against the
kiosk's own schema and push rules first, so a typo is caught before any kiosk sees
it. Push reports every kiosk on its own line (applied, refused with the kiosk's
reason, unreachable) and exits non-zero unless every kiosk applied the bundle, so
it can drive a rollout script. Fleet status asks every kiosk's /health and /metrics at
once and prints one table; it exits non-zero when any kiosk is unreachable or unhealthy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from kiosk.config.load import ConfigError, read_toml

DEFAULT_PORT = 8443


# -- keys new -----------------------------------------------------------------------------

def cmd_keys_new(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kiosk.config.signed import key_id

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / f"{args.name}.key", out / f"{args.name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            print(f"error: {path} exists; not overwriting a key", file=sys.stderr)
            return 1
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    os.chmod(private_path, 0o600)                   # whatever the umask said
    public_path.write_bytes(public_pem)
    print(f"private key: {private_path} (keep it offline; mode 0600)")
    print(f"public key:  {public_path} (list it in management.trusted_keys on each kiosk)")
    print(f"key id:      {key_id(key.public_key())}")
    return 0


# -- config sign --------------------------------------------------------------------------

def _expiry(args: argparse.Namespace, now: datetime) -> datetime:
    if args.expires:
        t = datetime.fromisoformat(args.expires)
        return t if t.tzinfo else t.astimezone()
    return now + timedelta(days=args.valid_days)


def cmd_config_sign(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kiosk.config.signed import BundleRefused, check_layer, key_id, sign_bundle

    try:
        layer = read_toml(Path(args.file))
        check_layer(layer, args.file)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BundleRefused as e:
        print(f"error: {args.file}: {e.reason} ({e.code}); not signed", file=sys.stderr)
        return 1
    try:
        key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        print(f"error: {args.key}: not a readable, unencrypted PEM private key ({type(e).__name__})", file=sys.stderr)
        return 1
    if not isinstance(key, Ed25519PrivateKey):
        print(f"error: {args.key}: not an Ed25519 private key", file=sys.stderr)
        return 1
    now = datetime.now().astimezone().replace(microsecond=0)
    try:
        expires = _expiry(args, now)
    except ValueError:
        print(f"error: --expires {args.expires!r} is not an ISO 8601 date and time", file=sys.stderr)
        return 1
    if expires <= now:
        print(f"error: the bundle would already be expired ({expires.isoformat()})", file=sys.stderr)
        return 1
    raw = sign_bundle(layer, key, args.version, issued_at=now, expires_at=expires,
                      target_kiosk=args.target_kiosk, target_group=args.target_group)
    Path(args.output).write_bytes(raw)
    target = (f"kiosk {args.target_kiosk}" if args.target_kiosk else
              f"group {args.target_group}" if args.target_group else "every kiosk")
    print(f"{args.output}: version {args.version} for {target}, expires {expires.isoformat()}, "
          f"key {key_id(key.public_key())}")
    return 0


# -- config push --------------------------------------------------------------------------

def _url(host: str) -> str:
    """HOST, HOST:PORT, [v6] or [v6]:PORT -> https://.../config."""
    return _base(host) + "/config"


def _base(host: str) -> str:
    """HOST, HOST:PORT, [v6] or [v6]:PORT -> https://HOST:PORT."""
    if host.startswith("["):
        end = host.index("]")
        name, rest = host[: end + 1], host[end + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, port = host.split(":")
    else:
        name, port = host, ""
    return f"https://{name}:{port or DEFAULT_PORT}"


def push_one(host: str, raw: bytes, *, ca: str | None, cert: tuple[str, str] | None,
             timeout: float) -> tuple[bool, str]:
    """(applied, one line for people) for one kiosk."""
    import requests

    try:
        url = _url(host)
    except ValueError:
        return False, "unreachable: not HOST[:PORT]"
    try:
        r = requests.put(url, data=raw, headers={"Content-Type": "application/json"},
                         verify=ca or True, cert=cert, timeout=(5.0, timeout), allow_redirects=False)
    except requests.exceptions.SSLError as e:
        return False, f"unreachable: TLS failed ({_brief(e)})"
    except requests.RequestException as e:
        return False, f"unreachable: {type(e).__name__} ({_brief(e)})"
    try:
        doc = r.json()
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    if r.status_code == 200 and doc.get("result") == "applied":
        live, restart = doc.get("live_keys") or [], doc.get("restart_keys") or []
        note = "; the app restarts at the next idle moment" if doc.get("restart_needed") else ""
        return True, (f"applied (version {doc.get('version')}; {len(live)} live, "
                      f"{len(restart)} restart-only settings changed{note})")
    code = doc.get("code") or f"http_{r.status_code}"
    reason = doc.get("reason") or f"HTTP {r.status_code}"
    return False, f"refused: {code}: {reason}"


def _brief(e: Exception) -> str:
    text = str(e)
    if "RemoteDisconnected" in text:
        # TLS 1.3: a kiosk that refuses the client certificate closes after the client's side of
        # the handshake is done, so the refusal shows as a connection closed without an answer.
        return "closed without an answer: client certificate refused?"
    for marker in ("CERTIFICATE_VERIFY_FAILED", "certificate required", "Connection refused", "timed out",
                   "Name or service not known", "No route to host", "handshake failure", "unknown ca"):
        if marker in text:
            return marker
    return text[:160]


def cmd_config_push(args: argparse.Namespace) -> int:
    if args.bundle is None and len(args.to) > 1:     # `--to A B bundle.json`: --to took the bundle too
        args.bundle = args.to.pop()
    if args.bundle is None:
        print("error: which bundle? give BUNDLE.json", file=sys.stderr)
        return 2
    if bool(args.cert) != bool(args.key):
        print("error: --cert and --key go together (client certificate for mTLS)", file=sys.stderr)
        return 2
    try:
        raw = Path(args.bundle).read_bytes()
    except OSError as e:
        print(f"error: {args.bundle}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        json.loads(raw)
    except ValueError:
        print(f"error: {args.bundle} is not JSON; sign it with `kiosk config sign` first", file=sys.stderr)
        return 2
    cert = (args.cert, args.key) if args.cert else None
    with ThreadPoolExecutor(max_workers=min(16, len(args.to))) as pool:
        results = list(pool.map(lambda h: push_one(h, raw, ca=args.ca, cert=cert, timeout=args.timeout), args.to))
    width = max(len(h) for h in args.to)
    for host, (_, line) in zip(args.to, results):
        print(f"{host:<{width}}  {line}")
    failed = sum(1 for ok, _ in results if not ok)
    print(f"{len(results) - failed} of {len(results)} kiosks applied the bundle", file=sys.stderr)
    return 1 if failed else 0


# -- fleet status -------------------------------------------------------------------------

@dataclass
class KioskState:
    """One kiosk as `fleet status` saw it. `problem` is "" for a reachable, healthy kiosk."""

    host: str
    reachable: bool = False
    healthy: bool = False
    kiosk_id: str = ""
    app_version: str = ""
    config_version: int | None = None
    outbox_pending: int | None = None
    oldest_age_s: float | None = None
    reader: str = ""                        # ok, gone, pcscd gone, or "" when not known
    catalogue_age_s: float | None = None    # since the last acknowledged loan
    rollbacks: int | None = None
    last_rollback_age_s: float | None = None
    failing: list[str] = field(default_factory=list)
    problem: str = ""

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _metric_values(text: str) -> dict[tuple[str, tuple], float | dict]:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[tuple[str, tuple], float | dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "kiosk_build_info":
                values[("info", ())] = dict(s.labels)
            else:
                values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


def status_one(host: str, *, ca: str | None, cert: tuple[str, str] | None, timeout: float,
               now: float | None = None) -> KioskState:
    """GET /health and GET /metrics of one kiosk (the same TLS and client certificate as push)."""
    import time

    import requests

    state = KioskState(host)
    try:
        base = _base(host)
    except ValueError:
        state.problem = "unreachable: not HOST[:PORT]"
        return state
    try:
        with requests.Session() as s:
            s.trust_env = False
            s.verify = ca or True
            s.cert = cert
            health = s.get(base + "/health", timeout=(min(5.0, timeout), timeout), allow_redirects=False)
            metrics = s.get(base + "/metrics", timeout=(min(5.0, timeout), timeout), allow_redirects=False)
    except requests.exceptions.SSLError as e:
        state.problem = f"unreachable: TLS failed ({_brief(e)})"
        return state
    except requests.RequestException as e:
        state.problem = f"unreachable: {type(e).__name__} ({_brief(e)})"
        return state
    state.reachable = True
    try:
        doc = health.json()
    except ValueError:
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    state.healthy = health.status_code == 200
    state.failing = [str(f) for f in doc.get("failing") or []]
    if not state.healthy:
        state.problem = (f"unhealthy: {', '.join(state.failing)}" if state.failing
                         else f"unhealthy: HTTP {health.status_code}")
    state.app_version = str(doc.get("app_version") or "")
    if metrics.status_code != 200:
        state.problem = state.problem or f"no metrics: HTTP {metrics.status_code}"
        return state
    try:
        m = _metric_values(metrics.text)
    except ValueError:
        state.problem = state.problem or "no metrics: not the Prometheus text format"
        return state
    info = m.get(("info", ()))
    if isinstance(info, dict):
        state.kiosk_id = info.get("kiosk", "")
        state.app_version = info.get("version", "") or state.app_version

    def number(name: str, labels: tuple = ()) -> float | None:
        value = m.get((name, labels))
        return value if isinstance(value, float) else None

    version = number("kiosk_config_version")
    state.config_version = None if version is None else int(version)
    pending = number("kiosk_outbox_pending")
    state.outbox_pending = None if pending is None else int(pending)
    state.oldest_age_s = number("kiosk_outbox_oldest_age_seconds") if pending else None
    state.catalogue_age_s = number("kiosk_catalogue_seconds_since_success")
    reader = number("kiosk_device_up", (("device", "reader"),))
    pcscd = number("kiosk_device_up", (("device", "pcscd"),))
    state.reader = ("" if reader is None else "ok" if reader == 1 else
                    "pcscd gone" if pcscd == 0 else "gone")
    rollbacks = number("kiosk_rollbacks")
    state.rollbacks = None if rollbacks is None else int(rollbacks)
    at = number("kiosk_last_rollback_timestamp_seconds")
    if at:
        state.last_rollback_age_s = max(0.0, (time.time() if now is None else now) - at)
    return state


def _age(seconds: float | None, never: str = "-") -> str:
    if seconds is None:
        return never
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


STATUS_COLUMNS = ("HOST", "KIOSK", "REACHABLE", "HEALTH", "APP", "CONFIG", "OUTBOX", "OLDEST", "READER",
                  "CATALOGUE OK", "LAST ROLLBACK")


def status_row(k: KioskState) -> tuple[str, ...]:
    if not k.reachable:
        return (k.host, "-", "no", k.problem, "-", "-", "-", "-", "-", "-", "-")
    rollback = ("never" if not k.rollbacks and k.last_rollback_age_s is None
                else f"{_age(k.last_rollback_age_s, '?')} ago ({k.rollbacks or 0})")
    return (k.host, k.kiosk_id or "-", "yes", "ok" if k.healthy else k.problem.removeprefix("unhealthy: "),
            k.app_version or "-", "site" if not k.config_version else str(k.config_version),
            "-" if k.outbox_pending is None else str(k.outbox_pending),
            _age(k.oldest_age_s), k.reader or "-",
            "never" if k.catalogue_age_s is None else f"{_age(k.catalogue_age_s)} ago", rollback)


def cmd_fleet_status(args: argparse.Namespace) -> int:
    if bool(args.cert) != bool(args.key):
        print("error: --cert and --key go together (client certificate for mTLS)", file=sys.stderr)
        return 2
    from concurrent.futures import wait

    cert = (args.cert, args.key) if args.cert else None
    hosts = list(dict.fromkeys(args.hosts))
    pool = ThreadPoolExecutor(max_workers=min(32, len(hosts)))
    futures = [pool.submit(status_one, h, ca=args.ca, cert=cert, timeout=args.timeout) for h in hosts]
    wait(futures, timeout=args.timeout * 2 + 5)     # two requests each; a kiosk that hangs past it is down
    pool.shutdown(wait=False, cancel_futures=True)
    states = [f.result() if f.done() and not f.exception() else
              KioskState(h, problem="unreachable: no answer in time") for h, f in zip(hosts, futures)]
    bad = [k for k in states if not k.reachable or not k.healthy]
    if args.json:
        print(json.dumps([k.to_json() for k in states], ensure_ascii=False, indent=1))
    else:
        rows = [STATUS_COLUMNS] + [status_row(k) for k in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(STATUS_COLUMNS))]
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    unreachable = sum(1 for k in states if not k.reachable)
    print(f"{len(states) - len(bad)} of {len(states)} kiosks reachable and healthy"
          + (f"; {unreachable} unreachable" if unreachable else ""), file=sys.stderr)
    return 1 if bad else 0


# -- registration -------------------------------------------------------------------------

def _config_actions(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `config` group's actions: the existing one (with `config check`) or a new one."""
    parser = sub.choices.get("config")
    if parser is None:
        parser = sub.add_parser("config", help="configuration tools")
        return parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    for action in parser._actions:                  # argparse keeps no public handle on it
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")


def add_fleet_commands(sub: argparse._SubParsersAction) -> None:
    """Adds `keys new`, `config sign` and `config push` (call after `config check` is added)."""
    p = sub.add_parser("keys", help="central IT: configuration signing keys")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = ksub.add_parser("new", help="make an Ed25519 key pair for signing configuration bundles")
    c.add_argument("--out", required=True, metavar="DIR", help="directory for NAME.key (0600) and NAME.pub")
    c.add_argument("--name", default="config-signing", help="file name stem (default: config-signing)")
    c.set_defaults(func=cmd_keys_new)

    csub = _config_actions(sub)
    c = csub.add_parser("sign", help="central IT: sign a TOML configuration layer as a bundle")
    c.add_argument("file", metavar="FILE.toml", help="the settings to push (same keys as the site file)")
    c.add_argument("--key", required=True, metavar="PRIV", help="Ed25519 private key (PEM)")
    c.add_argument("--version", required=True, type=int, metavar="N",
                   help="bundle version; must be higher than any the kiosks have applied")
    target = c.add_mutually_exclusive_group()
    target.add_argument("--target-kiosk", metavar="ID", help="only this kiosk (kiosk.id) may apply it")
    target.add_argument("--target-group", metavar="G", help="only kiosks in this kiosk.group may apply it")
    expiry = c.add_mutually_exclusive_group()
    expiry.add_argument("--expires", metavar="ISO", help="when kiosks stop accepting it, e.g. 2025-05-01T00:00+09:00")
    expiry.add_argument("--valid-days", type=float, default=7.0, metavar="N",
                        help="kiosks accept it for N days (default 7)")
    c.add_argument("-o", "--output", required=True, metavar="BUNDLE.json")
    c.set_defaults(func=cmd_config_sign)

    c = csub.add_parser("push", help="central IT: send a signed bundle to kiosks")
    c.add_argument("bundle", metavar="BUNDLE.json", nargs="?",
                   help="the signed bundle (may also come last, after the --to hosts)")
    c.add_argument("--to", required=True, nargs="+", action="extend", metavar="HOST[:PORT]",
                   help=f"kiosks to send it to (port {DEFAULT_PORT} when not given)")
    c.add_argument("--ca", metavar="FILE", help="CA that issued the kiosks' TLS certificates")
    c.add_argument("--cert", metavar="FILE", help="client certificate for mTLS")
    c.add_argument("--key", metavar="FILE", help="client certificate's key for mTLS")
    c.add_argument("--timeout", type=float, default=20.0, metavar="S", help="seconds per kiosk (default 20)")
    c.set_defaults(func=cmd_config_push)

    p = sub.add_parser("fleet", help="central IT: the fleet at a glance")
    fsub = p.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    c = fsub.add_parser("status", help="one table of many kiosks' health and metrics; exit 1 if any is "
                                       "unreachable or unhealthy")
    c.add_argument("hosts", nargs="+", metavar="HOST[:PORT]", help=f"kiosks (port {DEFAULT_PORT} when not given)")
    c.add_argument("--ca", metavar="FILE", help="CA that issued the kiosks' TLS certificates")
    c.add_argument("--cert", metavar="FILE", help="client certificate for mTLS")
    c.add_argument("--key", metavar="FILE", help="client certificate's key for mTLS")
    c.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds per request (default 10)")
    c.add_argument("--json", action="store_true", help="one JSON object per kiosk instead of the table")
    c.set_defaults(func=cmd_fleet_status)
