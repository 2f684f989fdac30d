"""Where the manual comes from (Debian's packages, downloaded or already extracted) and the command
line; `python -m harness.prepare.gimp` runs `main`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from harness.prepare.gimp.manual import VERSION, BuildError
from harness.prepare.gimp.tasks import build

__all__ = ["HELP_DIR", "PACKAGES", "download_packages", "main", "resolve_help_root"]

PACKAGES = ("gimp-help-ko", "gimp-help-en", "gimp-help-common")
HELP_DIR = Path("usr/share/gimp/2.0/help")


def download_packages(dest: Path, version: str = VERSION) -> Path:
    """`apt-get download` the manual's packages into `dest`, extract them; return the root."""
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise BuildError(
            f"{' and '.join(missing)} not found: this builder downloads Debian packages. "
            "Elsewhere, extract gimp-help-ko, gimp-help-en (and gimp-help-common) "
            f"{version} yourself and pass --from DIR."
        )
    specs = [f"{name}={version}" for name in PACKAGES]
    proc = subprocess.run(
        ["apt-get", "download", *specs], cwd=dest, capture_output=True, text=True, check=False
    )
    debs = sorted(dest.glob("*.deb"))
    if proc.returncode != 0 or len(debs) != len(PACKAGES):
        detail = (proc.stderr or proc.stdout).strip()
        raise BuildError(
            f"apt-get download {' '.join(specs)} failed (exit {proc.returncode}):\n{detail}\n"
            "Run 'apt-get update' first, check that a Debian release carrying version "
            f"{version} is in the sources (bookworm), or pass --from DIR."
        )
    root = dest / "root"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def resolve_help_root(base: Path) -> Path:
    """The directory holding ko/ and en/: `base/usr/share/gimp/2.0/help` or `base` itself."""
    for candidate in (base / HELP_DIR, base):
        if (candidate / "ko").is_dir() and (candidate / "en").is_dir():
            return candidate
    raise BuildError(f"{base}: neither {HELP_DIR}/{{ko,en}} nor {{ko,en}} found")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: python -m harness.prepare.gimp --out DIR [--from DIR] [--version V]."""
    # --help shows the package's docstring; the package is looked up, not imported (no import cycle).
    package_doc = sys.modules[__name__.rpartition(".")[0]].__doc__
    parser = argparse.ArgumentParser(prog="python -m harness.prepare.gimp", description=package_doc)
    parser.add_argument("--out", type=Path, default=Path("harness/data/gimp"))
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="already extracted packages (the root holding usr/share/...) instead of apt-get",
    )
    parser.add_argument(
        "--version",
        default=VERSION,
        help="package version: the one to download, and the one the README and LICENSE name",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.source is not None:
            build(resolve_help_root(args.source), args.out, base=args.source, version=args.version)
        else:
            with tempfile.TemporaryDirectory(prefix="gimp-help-") as tmp:
                root = download_packages(Path(tmp), args.version)
                build(resolve_help_root(root), args.out, base=root, version=args.version)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0
