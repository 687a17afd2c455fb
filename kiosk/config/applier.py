"""Applying central IT's signed layer: at start-up, and when a push or a poll brings one.

Both paths build the running configuration the same way: defaults, the site file,
then the signed layer (`compose`). A bundle replaces the previous signed layer as a
whole; keys it leaves out fall back to the site file. A new bundle is checked in
full (signature, version, schema, cross-key rules, the files it names) before it is
written, and written before anything is switched, so a bad bundle never touches the
configuration in force and a power cut leaves the old or the new layer, never a mix.
Switching is the controller's job: `on_new_config` gets the new configuration and
whether a restart is needed, and acts at the next idle moment.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.card.identity import load_anchors
from kiosk.config.layer_store import SignedLayerStore, verify_stored
from kiosk.config.push_scope import OutOfScope, check_push_scope
from kiosk.config.rollback import LayerState, Rollback
from kiosk.config.usable import check_usable
from kiosk.config.load import ConfigError, check_combination, load_config, merge
from kiosk.config.schema import field_at
from kiosk.config.signed import (
    MAX_BUNDLE_BYTES,
    PROTECTED,
    Bundle,
    BundleRefused,
    effective_layer,
    live_and_restart_keys,
    load_public_keys,
    verify_bundle,
)
from kiosk.logs import log_event
from kiosk.store.audit import AuditTrail, log_and_audit
from kiosk.store.database import StoreError

log = logging.getLogger("kiosk.config")

APPLIED = "applied"
UNUSABLE = "unusable"               # valid keys, but the result would not run (cross-key rule, missing file)
STORAGE = "storage_failed"          # could not be written; nothing changed
_NEEDS_NO_FILE = {"catalogue.local.path"}     # created on first use


@dataclass(frozen=True)
class ApplyOutcome:
    applied: bool
    code: str                                   # APPLIED or a refusal code
    reason: str = ""
    version: int | None = None                  # the bundle's version, when it got that far
    current_version: int | None = None          # the version in force after this call
    live_keys: tuple[str, ...] = ()             # changed by this bundle, switch at the next idle moment
    restart_keys: tuple[str, ...] = ()          # changed by this bundle, need the app restarted
    restart_needed: bool = False                # the new config differs from the running app's start-up
                                                # config in a restart-only key (this or an earlier bundle)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"result": APPLIED if self.applied else "refused", "code": self.code,
                               "version": self.version, "current_version": self.current_version}
        if self.applied:
            out.update(live_keys=list(self.live_keys), restart_keys=list(self.restart_keys),
                       restart_needed=self.restart_needed)
        else:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class EffectiveConfig:
    """The configuration in force and what it was built from."""

    config: dict                                # defaults + site file + signed layer
    base: dict                                  # defaults + site file
    bundle: Bundle | None                       # the signed layer in force, if any
    keys: dict[str, Ed25519PublicKey] = field(repr=False, default_factory=dict)
    state: LayerState | None = None             # version, high-water mark, last rollback (None: not read)


def compose(base: dict, layer: dict, source: str) -> dict:
    """`base` with the signed `layer` over it; ConfigError when the result breaks a cross-key rule."""
    config = merge(base, effective_layer(layer, base))
    check_combination(config, source)
    return config


def pinned_keys(config: dict) -> dict[str, Ed25519PublicKey]:
    return load_public_keys(config["management"]["trusted_keys"])


def build_layer(base: dict, layer: dict, source: str) -> dict:
    """The configuration `layer` gives over `base`, once everything it changes builds:
    push scope, cross-key rules, files, fonts, secrets, TLS material, patterns.
    ConfigError for the first fault. The one check of a push and of a start-up."""
    check_push_scope(layer, base)
    config = compose(base, layer, source)
    check_files(config, layer)
    check_usable(config, layer, source)
    return config


def load_effective_config(site: Path | None, *, starting: bool = False) -> EffectiveConfig:
    """The site configuration with the stored signed layer, when it still verifies and
    still builds. Raises ConfigError only for the site file itself (as load_config does).

    Last known good: the layer in force is tried first, then the last layer that reached
    READY, then the site file alone. The layer in force is passed over when it does not
    build, or (`starting`, the app itself) when the previous start with it never
    reached READY. A fall-back is recorded on disk (the high-water mark stays), logged
    and reported in `state`; tools (`starting=False`) only read."""
    base = load_config(site)
    keys = pinned_keys(base)
    store = SignedLayerStore(Path(base["kiosk"]["data_dir"]))
    try:
        stored = store.read()
    except (StoreError, OSError) as e:
        log_event(log, "config.signed_layer_unreadable", level=logging.ERROR, error=type(e).__name__)
        stored = None
    if stored is None:
        return EffectiveConfig(base, base, None, keys, LayerState(None, None, None, False))
    kiosk_id = base["kiosk"]["id"]
    candidates: list[tuple[bytes, int | None]] = []
    if stored.raw is not None:
        candidates.append((stored.raw, stored.current_version))
    if stored.good is not None and stored.good != stored.raw:
        candidates.append((stored.good, None))
    chosen: tuple[Bundle, dict] | None = None
    first_fault = ""
    for n, (raw, version) in enumerate(candidates):
        try:
            candidate = verify_stored(raw, keys, kiosk_id, version)
        except BundleRefused as e:
            log_event(log, "config.signed_layer_ignored", level=logging.ERROR, code=e.code, reason=e.reason,
                      version=e.version)
            first_fault = first_fault or f"{e.code}: {e.reason}"
            continue
        if starting and n == 0 and stored.trial == candidate.digest and stored.good_digest != candidate.digest:
            first_fault = "the app did not reach READY with this layer"
            log_event(log, "config.signed_layer_ignored", level=logging.ERROR, code="not_ready",
                      reason=first_fault, version=candidate.version)
            continue
        try:
            chosen = (candidate, build_layer(base, candidate.layer, f"signed layer v{candidate.version}"))
            break
        except ConfigError as e:
            reason = f"{e.key}: {e.reason}" if e.key else e.reason
            log_event(log, "config.signed_layer_ignored", level=logging.ERROR, code=UNUSABLE, reason=reason,
                      version=candidate.version)
            first_fault = first_fault or reason
    bundle: Bundle | None = chosen[0] if chosen is not None else None
    config = chosen[1] if chosen is not None else base
    rollback, now_rolled = stored.rollback, False
    in_force = stored.current_version if stored.raw is not None else None
    if stored.raw is not None and (bundle is None or bundle.raw != stored.raw):
        rollback = Rollback(at=_wall().isoformat(timespec="seconds"), reason=first_fault[:300],
                            from_version=in_force, to_version=None if bundle is None else bundle.version)
        now_rolled = True
        log_event(log, "config.rolled_back", level=logging.CRITICAL, reason=rollback.reason,
                  from_version=rollback.from_version, to_version=rollback.to_version)
        if starting:
            try:
                store.roll_back(bundle, rollback)
            except (StoreError, OSError) as e:
                log_event(log, "config.rollback_not_stored", level=logging.ERROR, error=type(e).__name__)
    elif starting and bundle is not None and stored.good_digest != bundle.digest:
        try:
            store.begin_trial(bundle.digest)
        except (StoreError, OSError) as e:
            log_event(log, "config.trial_not_stored", level=logging.ERROR, error=type(e).__name__)
    if bundle is not None:
        log_event(log, "config.signed_layer_loaded", version=bundle.version, digest=bundle.digest[:16])
    state = LayerState(version=None if bundle is None else bundle.version, high_water=stored.version,
                       last_rollback=rollback, rolled_back_at_start=now_rolled)
    return EffectiveConfig(config, base, bundle, keys, state)


def check_files(config: dict, layer: dict) -> None:
    """The files a layer names must be there and usable, or the kiosk would break at the
    next restart: every path it sets exists, and every trust anchor loads."""
    source = "signed layer"
    for dotted, value in _leaves(layer):
        spec = field_at(dotted)
        if spec is None or spec.kind not in ("path", "paths") or dotted in _NEEDS_NO_FILE:
            continue
        actual = _get(config, dotted)
        for path in actual if isinstance(actual, list) else [actual]:
            if path and not Path(path).is_file():
                raise ConfigError(source, dotted, f"{path} does not exist on this kiosk")
    if "trust_anchors" in layer.get("card", {}):
        for path in config["card"]["trust_anchors"]:
            try:
                if not load_anchors(Path(path)):
                    raise ValueError("no certificate")
            except (OSError, ValueError) as e:
                raise ConfigError(source, "card.trust_anchors", f"{path} is not a usable CA certificate "
                                                                f"({type(e).__name__})") from None


def _leaves(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + key + ".")
        else:
            yield prefix + key, value


def _get(node: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node[part]
    return node


def _wall() -> datetime:
    return datetime.now().astimezone()


class ConfigApplier:
    """Takes raw bundles (from the endpoint or the poller, any thread), one at a time.

    `on_new_config(config, restart_needed)` runs on the caller's thread after the new
    layer is on disk, in the order bundles were accepted; it must only schedule the
    switch (the controller does it at the next idle moment).
    """

    def __init__(
        self,
        effective: EffectiveConfig,
        on_new_config: Callable[[dict, bool], None],
        *,
        audit: AuditTrail | None = None,
        clock: Callable[[], datetime] = _wall,
        build: Callable[[dict, dict, str], dict] = build_layer,
        max_bytes: int = MAX_BUNDLE_BYTES,
    ) -> None:
        self._base = effective.base
        self._started = effective.config            # what the app's restart-only parts run on
        self._config = effective.config
        self._bundle = effective.bundle
        self._keys = effective.keys
        self._store = SignedLayerStore(Path(effective.base["kiosk"]["data_dir"]))
        self._on_new_config = on_new_config
        self._audit = audit
        self._clock = clock
        self._build = build
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._restart_pending = False
        self._applied_at: str | None = None
        self._last_refusal: dict[str, Any] | None = None
        self._state = effective.state or LayerState(self.version, self.version, None, False)

    @property
    def config(self) -> dict:
        return self._config

    @property
    def version(self) -> int | None:
        return None if self._bundle is None else self._bundle.version

    @property
    def digest(self) -> str | None:
        return None if self._bundle is None else self._bundle.digest

    def layer_state(self) -> LayerState:
        """The layer in force, the high-water mark and the last rollback (for /health, metrics)."""
        with self._lock:
            state = self._state
            return LayerState(version=self.version, high_water=state.high_water,
                              last_rollback=state.last_rollback, rolled_back_at_start=state.rolled_back_at_start)

    def apply(self, raw: bytes, source: str = "push", client: str = "") -> ApplyOutcome:
        """Verify, check, persist, then hand over. Never raises for a bad bundle."""
        with self._lock:
            try:
                floor = self._store.highest_version()
            except (StoreError, OSError) as e:
                return self._refused(STORAGE, f"the stored layer cannot be read ({type(e).__name__}); "
                                              "staff must look at the kiosk", None, None, source, client)
            now = self._clock()
            group = self._config["kiosk"]["group"]
            try:
                bundle = verify_bundle(raw, self._keys, self._base["kiosk"]["id"], group, floor, now,
                                       max_bytes=self._max_bytes)
            except BundleRefused as e:
                return self._refused(e.code, e.reason, e.version, floor, source, client)
            try:
                new_config = self._build(self._base, bundle.layer, f"bundle v{bundle.version}")
            except ConfigError as e:
                reason = f"{e.key}: {e.reason}" if e.key else e.reason
                code = PROTECTED if isinstance(e, OutOfScope) else UNUSABLE
                return self._refused(code, reason, bundle.version, floor, source, client)
            try:
                self._store.save(bundle, now)
            except (StoreError, OSError) as e:
                return self._refused(STORAGE, f"the layer could not be written ({type(e).__name__}); "
                                              "the old configuration stays", bundle.version, floor, source, client)
            live, restart = live_and_restart_keys(self._config, new_config)
            restart_needed = bool(live_and_restart_keys(self._started, new_config)[1])
            self._config, self._bundle = new_config, bundle
            self._state = LayerState(bundle.version, bundle.version, self._state.last_rollback,
                                     self._state.rolled_back_at_start)
            self._applied_at = now.isoformat(timespec="seconds")
            self._restart_pending = restart_needed
            outcome = ApplyOutcome(True, APPLIED, version=bundle.version, current_version=bundle.version,
                                   live_keys=live, restart_keys=restart, restart_needed=restart_needed)
            self._record("config.applied", version=bundle.version, digest=bundle.digest[:16], source=source,
                         client=client, live=len(live), restart=len(restart))
            try:
                self._on_new_config(new_config, restart_needed)
            except Exception as e:                      # noqa: BLE001 - the layer is stored; it holds at restart
                log_event(log, "config.switch_failed", level=logging.ERROR, error=type(e).__name__,
                          version=bundle.version)
            return outcome

    def status(self) -> dict:
        """For GET /status: what is in force and what happened last. No secrets, no patron data."""
        with self._lock:
            b = self._bundle
            return {
                "config_version": None if b is None else b.version,
                "config_digest": None if b is None else b.digest,
                "config_expires_at": None if b is None else b.expires_at.isoformat(),
                "applied_at": self._applied_at,
                "restart_pending": self._restart_pending,
                "trusted_keys": sorted(self._keys),
                "last_refusal": None if self._last_refusal is None else dict(self._last_refusal),
            }

    def _refused(self, code: str, reason: str, version: int | None, floor: int | None, source: str,
                 client: str) -> ApplyOutcome:
        current = None if self._bundle is None else self._bundle.version
        self._last_refusal = {"code": code, "reason": reason, "source": source,
                              "at": self._clock().isoformat(timespec="seconds")}
        self._record("config.refused", code=code, reason=reason[:300], version=version, source=source,
                     client=client)
        return ApplyOutcome(False, code, reason, version=version,
                            current_version=current if current is not None else floor)

    def _record(self, action: str, **fields: Any) -> None:
        log_and_audit(log, self._audit, "central_it", action, failure="config.audit_failed", **fields)
