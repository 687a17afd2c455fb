"""A private pcscd with the vpcd virtual reader, for tests and benchmarks.

Why a private daemon, and why namespaces:
- Debian 12's vsmartcard-vpcd (3.3) listens on 0.0.0.0:35963/35964 in its default mode, and
  its "reversed" mode (vicc listens on 127.0.0.1, vpcd connects) aborts pcscd as soon as
  the card is absent at a presence poll, so it cannot model card removal. pcscd therefore
  runs in its own network namespace, whose only interface is loopback: vpcd's listener is
  unreachable from any network and from every other process on the host. The virtual card
  connects from a thread that joins that namespace (setns affects only that thread).
- It also runs in its own mount namespace with a private directory mounted on /run/pcscd,
  so a system pcscd (socket-activated or not) is neither stopped nor disturbed, and with
  the USB driver directory hidden, so tests never touch a real reader or a real card.
- Clients find it through PCSCLITE_CSOCK_NAME (honoured by libpcsclite, not by pcscd
  1.9.9 itself). It is set when this module is imported, before anything in the process
  talks PC/SC (libpcsclite caches the name), and subprocesses (OpenSC, the card CLI)
  inherit it. So nothing in the test session ever reaches the system pcscd either.

Needs root (CAP_SYS_ADMIN) for the namespaces. Tests skip when pcscd or vpcd is not
installed; when namespaces are refused they skip, or fail if $CI is set.

Plain functions and classes here are also used by bench/opensc_numbers.py.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from kiosk.card.vpcd_card import VPCD_PORT, VirtualCard, VpcdCard

RUN_DIR = Path(tempfile.gettempdir()) / f"kiosk-pcscd-{os.getpid()}"
SOCKET_PATH = RUN_DIR / "pcscd.comm"
os.environ["PCSCLITE_CSOCK_NAME"] = str(SOCKET_PATH)

FRIENDLY_NAME = "Kiosk Test VPCD"
SLOTS = 2   # vpcd always creates two readers: "<name> 00 00" and "<name> 00 01"

_CLONE_NEWNET = 0x40000000

# Runs in a fresh interpreter (never fork+Python in a threaded test process): enter new
# mount and network namespaces, mount the private run dir on /run/pcscd, hide the USB
# drivers, bring loopback up, then exec pcscd. Dies with its parent (PDEATHSIG).
_BOOTSTRAP = r"""
import ctypes, fcntl, os, socket, struct, sys
run_dir, empty_dir, usb_dir, *argv = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        sys.stderr.write("%s: %s\n" % (what, os.strerror(ctypes.get_errno())))
        sys.exit(97)
check(libc.prctl(1, 15, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
check(libc.unshare(0x00020000 | 0x40000000), "unshare(CLONE_NEWNS|CLONE_NEWNET)")
check(libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None), "mount --make-rprivate /")
check(libc.mount(run_dir.encode(), b"/run/pcscd", None, 0x1000, None), "bind /run/pcscd")
if usb_dir and os.path.isdir(usb_dir):
    check(libc.mount(empty_dir.encode(), usb_dir.encode(), None, 0x1000, None), "hide USB drivers")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, 0x8914, struct.pack("16sh14x", b"lo", 0x1 | 0x8 | 0x40))  # SIOCSIFFLAGS lo UP
s.close()
if argv == ["--probe"]:
    sys.exit(0)
os.execv(argv[0], argv)
"""


def _pcscd_binary() -> str | None:
    return shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")


def _usb_drop_dir() -> str:
    try:
        out = subprocess.run(["pkg-config", "--variable=usbdropdir", "libpcsclite"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "/usr/lib/pcsc/drivers"


def vpcd_driver() -> Path | None:
    for candidate in (Path(_usb_drop_dir()) / "serial" / "libifdvpcd.so",
                      Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")):
        if candidate.is_file():
            return candidate
    return None


def missing_binaries() -> str | None:
    """Why the PC/SC test stack cannot run here at all, or None."""
    if _pcscd_binary() is None:
        return "pcscd is not installed (Debian package pcscd)"
    if vpcd_driver() is None:
        return "the vpcd driver is not installed (Debian package vsmartcard-vpcd)"
    return None


def namespaces_refused() -> str | None:
    """Why pcscd cannot get private namespaces here, or None."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        Path("/run/pcscd").mkdir(parents=True, exist_ok=True)   # the mount point
    except OSError as exc:
        return f"cannot create /run/pcscd (needs root): {exc}"
    probe = subprocess.run([sys.executable, "-I", "-S", "-c", _BOOTSTRAP, str(RUN_DIR),
                            str(RUN_DIR), "", "--probe"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        return ("cannot give pcscd a private network/mount namespace (needs root with "
                f"CAP_SYS_ADMIN; vpcd would otherwise listen on 0.0.0.0): {probe.stderr.strip()}")
    return None


_libc = ctypes.CDLL(None, use_errno=True)


def connect_in_netns(pid: int, port: int, timeout: float = 1.0) -> socket.socket:
    """TCP-connect to 127.0.0.1:port inside process `pid`'s network namespace."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns: {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except BaseException as exc:   # handed to the caller's thread
            result["error"] = exc

    # A throwaway thread: it ends inside pcscd's namespace, the caller never enters it.
    helper = threading.Thread(target=work, name="vpcd-netns-connect", daemon=True)
    helper.start()
    helper.join()
    if "error" in result:
        err = result["error"]
        raise err if isinstance(err, OSError) else OSError(str(err))
    return result["sock"]  # type: ignore[return-value]


class PrivatePcscd:
    """Starts, stops and kills one pcscd serving only the vpcd virtual reader.

    One per process: clients find it through PCSCLITE_CSOCK_NAME, fixed at import. Start
    and restart it from a long-lived thread (the test's): PR_SET_PDEATHSIG fires when the
    *thread* that started it exits.
    """

    def __init__(self, friendly_name: str = FRIENDLY_NAME) -> None:
        self.run_dir = RUN_DIR
        self.friendly_name = friendly_name
        self.conf_dir = RUN_DIR / "reader.conf.d"
        self.empty_dir = RUN_DIR / "empty"
        self.log_path = RUN_DIR / "pcscd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def socket_path(self) -> Path:
        return SOCKET_PATH

    @property
    def reader_names(self) -> list[str]:
        return [f"{self.friendly_name} 00 {slot:02X}" for slot in range(SLOTS)]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_config(self) -> None:
        driver = vpcd_driver()
        assert driver is not None
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.empty_dir.mkdir(exist_ok=True)
        private_driver = self.run_dir / "libifdvpcd.so"   # the USB/driver dir gets hidden
        shutil.copyfile(driver, private_driver)
        # --config replaces /etc/reader.conf.d (whose vpcd entry would be the 0.0.0.0 one):
        # pcscd 1.9.9 reads every file of a directory, or a single file; ours holds one.
        (self.conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{self.friendly_name}"\n'
            f"DEVICENAME   /dev/null:0x{VPCD_PORT:04X}\n"
            f"LIBPATH      {private_driver}\n"
            f"CHANNELID    0x{VPCD_PORT:04X}\n", encoding="ascii")

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        Path("/run/pcscd").mkdir(parents=True, exist_ok=True)   # only a mount point
        self._write_config()
        for stale in ("pcscd.comm", "pcscd.pid"):                # left by a SIGKILL
            (self.run_dir / stale).unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")
        argv = [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, str(self.run_dir),
                str(self.empty_dir), _usb_drop_dir(),
                _pcscd_binary() or "pcscd", "--foreground", "--info",
                "--config", str(self.conf_dir)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, close_fds=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        from smartcard import scard

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"pcscd exited at start-up:\n{self.log_tail()}")
            hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hr == scard.SCARD_S_SUCCESS:
                try:
                    hr, readers = scard.SCardListReaders(ctx, [])
                finally:
                    scard.SCardReleaseContext(ctx)
                if hr == scard.SCARD_S_SUCCESS and all(r in readers for r in self.reader_names):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pcscd did not show the vpcd readers in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL; only ever the process this object started."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, as a crash: leaves its socket behind like a real crash would."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no pcscd log)"

    def connector(self, slot: int = 0) -> Callable[[], socket.socket]:
        """A connect() for VpcdCard that follows pcscd across restarts (new namespace)."""
        def connect() -> socket.socket:
            pid = self.pid
            if pid is None:
                raise ConnectionRefusedError("pcscd is not running")
            return connect_in_netns(pid, VPCD_PORT + slot)
        return connect


class VirtualReaders:
    """The test-facing handle: a private pcscd plus a virtual card per vpcd slot."""

    def __init__(self, daemon: PrivatePcscd | None = None) -> None:
        self.daemon = daemon or PrivatePcscd()
        self.cards: dict[int, VpcdCard] = {}

    @property
    def readers(self) -> list[str]:
        return self.daemon.reader_names

    @property
    def reader(self) -> str:
        return self.readers[0]

    def reader_name(self, slot: int = 0) -> str:
        return self.readers[slot]

    # --- pcscd process ---------------------------------------------------------------
    def start(self) -> None:
        self.daemon.start()

    def stop(self) -> None:
        self.daemon.stop()

    def kill(self) -> None:
        self.daemon.kill()

    def restart(self) -> None:
        self.daemon.stop()
        self.daemon.start()

    @property
    def running(self) -> bool:
        return self.daemon.running

    # --- cards -------------------------------------------------------------------
    def insert(self, card: VirtualCard, slot: int = 0, *, wait: bool = True,
               timeout: float = 10.0) -> VpcdCard:
        """Put `card` in reader `slot`; by default returns once pcscd reports it present."""
        self.remove(slot)
        served = VpcdCard(card, self.daemon.connector(slot))
        self.cards[slot] = served
        served.insert()
        if wait:
            self.wait_card(slot, present=True, timeout=timeout)
        return served

    def remove(self, slot: int = 0, *, wait: bool = True, timeout: float = 10.0) -> None:
        served = self.cards.pop(slot, None)
        if served is None:
            return
        served.remove()
        if wait and self.daemon.running:
            self.wait_card(slot, present=False, timeout=timeout)

    def remove_all(self) -> None:
        for slot in list(self.cards):
            self.remove(slot)

    def wait_card(self, slot: int = 0, *, present: bool, timeout: float = 10.0) -> None:
        """Block until pcscd itself reports the slot's card present (or absent)."""
        from smartcard import scard

        name = self.reader_name(slot)
        deadline = time.monotonic() + timeout
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hr != scard.SCARD_S_SUCCESS:
            raise RuntimeError(f"no pcscd: {scard.SCardGetErrorMessage(hr)}")
        try:
            known = scard.SCARD_STATE_UNAWARE
            while True:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    raise TimeoutError(f"{name}: card never became {'present' if present else 'absent'}")
                hr, states = scard.SCardGetStatusChange(ctx, min(left_ms, 500), [(name, known)])
                if hr == scard.SCARD_S_SUCCESS:
                    event = states[0][1]
                    if bool(event & scard.SCARD_STATE_PRESENT) == present:
                        return
                    known = event & ~scard.SCARD_STATE_CHANGED
                elif hr != scard.SCARD_E_TIMEOUT:
                    raise RuntimeError(f"{name}: {scard.SCardGetErrorMessage(hr)}")
        finally:
            scard.SCardReleaseContext(ctx)

    def reset(self) -> None:
        """Back to the fixture's baseline: pcscd running, every slot empty."""
        self.remove_all()
        if not self.daemon.running:
            self.daemon.start()

    def close(self) -> None:
        for served in self.cards.values():
            served.remove()
        self.cards.clear()
        self.daemon.stop()
        shutil.rmtree(self.daemon.run_dir, ignore_errors=True)


# -- OpenSC: an independent PC/SC client, to cross-check the virtual card -------------------

OPENSC_CONF = """app default {
    framework pkcs15 {
        use_file_caching = no;
    }
}
"""


def opensc_pkcs11_module() -> Path | None:
    """opensc-pkcs11.so wherever this distribution puts it (multiarch or not)."""
    import sysconfig

    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for directory in (f"/usr/lib/{multiarch}", f"/usr/lib/{multiarch}/pkcs11", "/usr/lib64",
                      "/usr/lib", "/usr/lib/pkcs11", "/usr/local/lib"):
        candidate = Path(directory) / "opensc-pkcs11.so"
        if candidate.is_file():
            return candidate
    return None


def missing_opensc() -> str | None:
    for tool in ("pkcs15-tool", "pkcs11-tool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package opensc)"
    if opensc_pkcs11_module() is None:
        return "opensc-pkcs11.so is not installed (Debian package opensc-pkcs11)"
    return None


def opensc_env(home: Path) -> dict[str, str]:
    """Environment for OpenSC tools: our pcscd, no file cache, nothing from the user's home."""
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "opensc.conf"
    conf.write_text(OPENSC_CONF, encoding="ascii")
    env = dict(os.environ)
    env.update(OPENSC_CONF=str(conf), HOME=str(home), XDG_CACHE_HOME=str(home / "cache"),
               PCSCLITE_CSOCK_NAME=os.environ["PCSCLITE_CSOCK_NAME"])
    return env


def opensc_read_auth_cert(env: dict[str, str], out: Path) -> bytes:
    """The user-authentication certificate (PKCS#15 id 01) as OpenSC reads it, DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    run = subprocess.run(["pkcs15-tool", "--read-certificate", "01", "--output", str(out)],
                         env=env, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"pkcs15-tool failed: {run.stderr.strip()}")
    return x509.load_pem_x509_certificate(out.read_bytes()).public_bytes(Encoding.DER)


def opensc_sign(env: dict[str, str], data: Path, out: Path, pin: str) -> bytes:
    """RSA PKCS#1 v1.5 SHA-256 signature by the user-authentication key (id 01) via PKCS#11.

    Test PINs only: pkcs11-tool takes the PIN in argv, which other local users can see.
    """
    module = opensc_pkcs11_module()
    run = subprocess.run(["pkcs11-tool", "--module", str(module),
                          "--token-label", "JPKI (User Authentication PIN)",
                          "--login", "--pin", pin, "--sign", "--mechanism", "SHA256-RSA-PKCS",
                          "--id", "01", "--input-file", str(data), "--output-file", str(out)],
                         env=env, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"pkcs11-tool failed: {run.stderr.strip()}")
    return out.read_bytes()


def _refuse(reason: str) -> None:
    """Skip on a developer machine; in CI ($CI set) the stack must run, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} ($CI is set: the PC/SC tests must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pcscd():
    """A private pcscd with two vpcd readers; `.insert(card)` / `.remove()` a virtual card."""
    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    reason = namespaces_refused()
    if reason:
        _refuse(reason)
    readers = VirtualReaders()
    readers.start()
    try:
        yield readers
    finally:
        readers.close()


@pytest.fixture(scope="session")
def pcsc_demo_pki(tmp_path_factory):
    """The demo test PKI and card profiles (kiosk.card.demo_pki), generated once per session."""
    from kiosk.card.demo_pki import ensure_demo_pki

    return ensure_demo_pki(tmp_path_factory.mktemp("pcsc-demo-pki"))


@pytest.fixture
def pcsc_readers(pcscd):
    """The session pcscd, running with empty readers before and after the test."""
    pcscd.reset()
    yield pcscd
    pcscd.reset()
