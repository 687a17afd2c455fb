"""Installing a staged release into /opt/kiosk/releases/<version>: run as root by the guard.

The staged directory was written by the kiosk user, so nothing in it is trusted: the
listed files are copied (regular files only, no links) into a root-owned directory
first, and the signature, the version rules (ReleaseState) and every hash are checked
again there, against the release keys in the site file.

The new venv starts as a copy of the running release's venv, so a release whose lock is
unchanged installs with no network at all; `pip install --require-hashes` then brings it
to the release's lock (from the wheels the release carries, else the index) and the
kiosk wheel goes in last. It is built in releases/.incoming-* and renamed to
releases/<version> only when pip check passes, so an install killed half-way leaves
nothing the guard would take for a release; the guard then switches `current`.
Exit 0 prints the version; 3 = refused; 1 = failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from kiosk.config.load import ConfigError, load_config
from kiosk.config.signed import load_public_keys
from kiosk.release.guard import current_release, load_state
from kiosk.release.manifest import MANIFEST, Manifest, ReleaseRefused, check_files, verify_manifest


def copy_staged(staged: Path, into: Path) -> bytes:
    """manifest.json and the files it lists, copied without following links."""
    def read(name: str) -> bytes:
        fd = os.open(staged / name, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not _regular(f.fileno()):
                raise ReleaseRefused("malformed", f"{name}: not a regular file")
            return f.read()
    raw = read(MANIFEST)
    (into / MANIFEST).write_bytes(raw)
    return raw


def _regular(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


def _copy_file(src: Path, dst: Path) -> None:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f, open(dst, "wb") as out:
        if not _regular(f.fileno()):
            raise ReleaseRefused("malformed", f"{src.name}: not a regular file")
        shutil.copyfileobj(f, out, 1 << 20)


def verify_staged(staged: Path, work: Path, config: dict, state_dir: Path, running: str | None,
                  now: datetime) -> Manifest:
    raw = copy_staged(staged, work)
    k = config["kiosk"]
    manifest = verify_manifest(raw, load_public_keys(config["management"]["release_keys"]), k["id"], k["group"],
                               load_state(state_dir), running, now)
    for f in manifest.files:
        _copy_file(staged / f.name, work / f.name)
    check_files(manifest, work)
    return manifest


def build_venv(manifest: Manifest, work: Path, base_venv: Path | None) -> Path:
    venv = work / "venv"
    if base_venv is not None and (base_venv / "bin" / "python").exists():
        shutil.copytree(base_venv, venv, symlinks=True)
        _relocate_scripts(venv, str(base_venv), str(venv))
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    links = ["--find-links", str(work)] if any(f.role == "dependency" for f in manifest.files) else []
    subprocess.run(pip + ["--require-hashes", "-r", str(work / manifest.one("lock").name)] + links, check=True)
    subprocess.run(pip + ["--no-deps", "--no-index", "--force-reinstall", str(work / manifest.one("wheel").name)],
                   check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], check=True)
    return venv


def _relocate_scripts(venv: Path, old: str, new: str) -> None:
    """Scripts copied from another venv name its python in their first line."""
    for script in (venv / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        with open(script, "rb") as f:
            head = f.read(2)
        if head != b"#!":
            continue
        text = script.read_bytes()
        if old.encode() in text:
            script.write_bytes(text.replace(old.encode(), new.encode()))


def install(staged: Path, prefix: Path, state_dir: Path, config: dict, now: datetime) -> str:
    releases = prefix / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    for stale in releases.glob(".incoming-*"):          # an install killed half-way
        shutil.rmtree(stale, ignore_errors=True)
    running = current_release(prefix)
    work = Path(tempfile.mkdtemp(dir=releases, prefix=".incoming-"))
    try:
        manifest = verify_staged(staged, work, config, state_dir, running, now)
        final = releases / manifest.version
        build_venv(manifest, work, (releases / running / "venv") if running else None)
        for f in manifest.files:
            if f.role == "dependency":
                (work / f.name).unlink()        # in the venv now
        _relocate_scripts(work / "venv", str(work / "venv"), str(final / "venv"))
        if final.exists():
            shutil.rmtree(final)
        os.chmod(work, 0o755)
        os.rename(work, final)                  # whole, or not there at all
        return manifest.version
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kiosk.release.install")
    p.add_argument("--staged", required=True)
    p.add_argument("--prefix", default="/opt/kiosk")
    p.add_argument("--state-dir", default="/var/lib/kiosk-release")
    p.add_argument("--config", default="/etc/kiosk/kiosk.toml")
    args = p.parse_args(argv)
    try:
        config = load_config(Path(args.config))
        version = install(Path(args.staged), Path(args.prefix), Path(args.state_dir), config,
                          datetime.now(timezone.utc))
    except ReleaseRefused as e:
        print(f"refused: {e.code}: {e.reason}", file=sys.stderr)
        return 3
    except ConfigError as e:
        print(f"refused: config: {e}", file=sys.stderr)
        return 3
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
