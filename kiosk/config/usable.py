"""Build what a configuration layer changes, before it is trusted: the one check a pushed
layer passes before it is stored and a stored layer passes again at every start-up.

The schema says a value has the right shape; this says the kiosk can actually run on
it: fonts load, secret files decode as one line of UTF-8 text, certificate/key pairs
load into a TLS context, CA files hold certificates, patterns compile under the
linear-time matcher, and every backend's typed settings build. A layer that fails is
refused before it is stored (push) or set aside for the last good one (start-up), so a
valid signature can never crash-loop a kiosk.

Never a byte of a secret in a reason: errors name the key, the path and the kind of
fault only.
"""

from __future__ import annotations

import ssl
import struct
from pathlib import Path
from typing import Any, Iterator

from kiosk.config.load import ConfigError, read_secret_file
from kiosk.config.settings import BackendSettings
from kiosk.core.patterns import pattern_error

_FONT_KEYS = ("ui.font", "hardware.printer_font")
_CA_KEYS = ("catalogue.sip2.ca_file", "catalogue.rest.ca_bundle")
# (certificate, key): a key is only usable with its own certificate.
_PAIRS = (("catalogue.sip2.client_cert", "catalogue.sip2.client_key"),
          ("catalogue.rest.client_cert", "catalogue.rest.client_key"))
_SECRET_TEXT_KEYS = ("catalogue.sip2.password_file", "catalogue.sip2.terminal_password_file",
                     "catalogue.rest.token_file")
_PATTERN_KEYS = ("loans.item_pattern", "loans.patron_pattern", "loans.offline_refused_patterns",
                 "staff.badge_pattern")
_SFNT_MAGIC = (b"\x00\x01\x00\x00", b"OTTO", b"true", b"typ1", b"ttcf")
_PICTURE_KEYS = ("ui.scan_picture",)
_PICTURE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
MAX_PICTURE_BYTES = 8 * 1024 * 1024
MAX_PICTURE_SIDE = 4096          # a Pi's texture limit; larger would be decoded to fail on screen


def _head(path: str, n: int) -> tuple[bytes, int] | str:
    """The first `n` bytes of `path` and its size, or why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(n), f.seek(0, 2)
    except OSError as e:
        return f"cannot be read ({e.strerror})"


def check_font(path: str) -> str | None:
    """Why `path` is not a font the kiosk can draw with, or None. An sfnt table directory
    that fits the file, then FreeType (through Pillow, where installed) opens it."""
    read = _head(path, 12)
    if isinstance(read, str):
        return read
    head, size = read
    if len(head) < 12 or head[:4] not in _SFNT_MAGIC:
        return "not a TrueType/OpenType font"
    if head[:4] != b"ttcf":
        tables = struct.unpack(">H", head[4:6])[0]
        if tables == 0 or 12 + 16 * tables > size:
            return "not a TrueType/OpenType font (damaged table directory)"
    try:
        from PIL import ImageFont
    except ImportError:
        return None
    try:
        ImageFont.truetype(path, 24)
    except (OSError, ValueError) as e:
        return f"FreeType cannot open it ({type(e).__name__})"
    return None


def check_picture(path: str) -> str | None:
    """Why `path` is not a picture the scanning screen can show, or None: a PNG or JPEG of
    sensible size that Pillow decodes (a damaged one would leave a blank where the patron
    looks for the scanner)."""
    read = _head(path, 8)
    if isinstance(read, str):
        return read
    head, size = read
    if not any(head.startswith(m) for m in _PICTURE_MAGIC):
        return "not a PNG or JPEG picture"
    if size > MAX_PICTURE_BYTES:
        return f"larger than {MAX_PICTURE_BYTES // (1024 * 1024)} MB"
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_PICTURE_SIDE:
                return f"larger than {MAX_PICTURE_SIDE} pixels on a side"
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"cannot be decoded ({type(e).__name__})"
    return None


def _ca_error(path: str) -> str | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError, ValueError) as e:
        return f"not a usable CA certificate file ({type(e).__name__})"
    if not context.cert_store_stats()["x509"]:
        return "holds no certificate"
    return None


def _pair_error(cert: str, key: str) -> str | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError, ValueError) as e:
        return f"certificate and key do not load together ({type(e).__name__})"
    return None


def _get(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _leaves(node: dict, prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + key + ".")
        else:
            yield prefix + key


def check_usable(config: dict, layer: dict | None, source: str) -> None:
    """Build what `layer` changes in `config` (the configuration with the layer merged in);
    `layer=None` builds everything. ConfigError(source, key, reason) for the first fault."""
    changed = set(_leaves(layer)) if layer is not None else None

    def touched(*keys: str) -> bool:
        return changed is None or any(k in changed for k in keys)

    try:
        BackendSettings.from_config(config)
    except ConfigError as e:
        raise ConfigError(source, e.key, e.reason) from None
    for keys, check in ((_FONT_KEYS, check_font), (_PICTURE_KEYS, check_picture), (_CA_KEYS, _ca_error)):
        for dotted in keys:
            path = _get(config, dotted)
            if path and touched(dotted):
                reason = check(path)
                if reason:
                    raise ConfigError(source, dotted, f"{path}: {reason}")
    for dotted in _SECRET_TEXT_KEYS:
        path = _get(config, dotted)
        if path and touched(dotted):
            try:
                read_secret_file(path)
            except ConfigError as e:
                raise ConfigError(source, dotted, f"{path}: {e.reason}") from None
    for cert_key, key_key in _PAIRS:
        cert, key = _get(config, cert_key), _get(config, key_key)
        if not touched(cert_key, key_key) or not (cert or key):
            continue
        if key and not cert:
            raise ConfigError(source, key_key, f"needs {cert_key}: a client key is only usable with its certificate")
        reason = _pair_error(cert, key)
        if reason:
            raise ConfigError(source, key_key if key else cert_key, reason)
    for dotted in _PATTERN_KEYS:
        if not touched(dotted):
            continue
        value = _get(config, dotted)
        for pattern in value if isinstance(value, list) else [value]:
            reason = pattern_error(pattern)
            if reason:
                raise ConfigError(source, dotted, reason)
