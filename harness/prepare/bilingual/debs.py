"""Debian packages as inputs: `apt-get download` pinned versions into a cache folder, read their
control fields and licence, extract only the members a step reads.

`harness.prepare.gimp.cli.download_packages` downloads one fixed package list at one version into a
temporary folder, so it cannot serve here (six packages, three versions, a cache so that a re-run
downloads nothing); `download_debs` is the general form a shared helper would take.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.files import make_folder, sha256_file, sha256_tree

__all__ = ["deb_record", "download_debs", "extract_members", "licence_of"]


def _deb_name(package: str, version: str) -> str:
    """The file-name stem apt gives `package=version` (the epoch colon written %3a)."""
    return f"{package}_{version.replace(':', '%3a')}_"


def _control(deb: Path, *fields: str) -> list[str]:
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), *fields], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise WorkbenchError(f"{deb}: not a readable .deb ({proc.stderr.strip()})")
    values = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    return [values.get(name, "") for name in fields] if len(fields) > 1 else [proc.stdout.strip()]


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise WorkbenchError(
            f"{' and '.join(missing)} not found: this step reads Debian packages "
            "(run it on Debian or Ubuntu, or pass already extracted packages)"
        )


def download_debs(dest: Path, packages: Mapping[str, str]) -> dict[str, Path]:
    """package -> .deb in `dest` for each `package: version`; `apt-get download` fetches only the
    ones not there yet, and every file's Package and Version fields are checked."""
    dest = make_folder(dest)
    found = {p: sorted(dest.glob(f"{_deb_name(p, v)}*.deb")) for p, v in packages.items()}
    missing = [f"{p}={packages[p]}" for p, debs in found.items() if not debs]
    if missing:
        _require("apt-get", "dpkg-deb")
        proc = subprocess.run(
            ["apt-get", "download", *missing], cwd=dest, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise WorkbenchError(
                f"apt-get download {' '.join(missing)} failed (exit {proc.returncode}): "
                f"{detail[-1] if detail else 'no output'}; run 'apt-get update' and check that "
                "Debian bookworm is in the sources"
            )
        found = {p: sorted(dest.glob(f"{_deb_name(p, v)}*.deb")) for p, v in packages.items()}
    _require("dpkg-deb")
    debs = {}
    for package, version in packages.items():
        if not found[package]:
            raise WorkbenchError(f"{dest}: apt-get download left no .deb of {package}={version}")
        deb = found[package][0]
        name, got = _control(deb, "Package", "Version")
        if (name, got) != (package, version):
            raise WorkbenchError(f"{deb}: holds {name} {got}, expected {package} {version}")
        debs[package] = deb
    return debs


def deb_record(source: Path) -> dict[str, Any]:
    """Package, version, architecture and sha256 of a .deb (of an extracted folder: its tree sum)."""
    if source.is_dir():
        return {"file": source.name, "package": None, "version": None, "sha256_tree": sha256_tree(source)}
    package, version, arch = _control(source, "Package", "Version", "Architecture")
    return {
        "file": source.name,
        "package": package,
        "version": version,
        "architecture": arch,
        "sha256": sha256_file(source),
    }


def extract_members(source: Path, prefixes: Sequence[str], dest: Path) -> Path:
    """The root holding `usr/...`: an extracted folder as it is; of a .deb only the members under
    one of `prefixes` (paths without a leading "./"), streamed out of `dpkg-deb --fsys-tarfile`."""
    if source.is_dir():
        return source
    _require("dpkg-deb")
    dest = make_folder(dest)
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(source)], stdout=subprocess.PIPE)
    if proc.stdout is None:
        raise WorkbenchError(f"{source}: dpkg-deb gave no output stream")
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if (member.isfile() or member.issym()) and name.startswith(tuple(prefixes)):
                member.name = name
                tar.extract(member, dest, filter="data")
    if proc.wait() != 0:
        raise WorkbenchError(f"{source}: dpkg-deb --fsys-tarfile failed (exit {proc.returncode})")
    return dest


_DEP5_FILES_STAR = re.compile(r"^Files:\s*\*\s*$", re.M)


def licence_of(copyright_text: str) -> tuple[str, str]:
    """(short name, notice) from a package's copyright file: in the machine-readable format the
    License of the `Files: *` paragraph and no notice; otherwise "custom notice" and the whole text
    (the Debian FAQ's is a verbatim-copying permission notice, not a named licence)."""
    if copyright_text.startswith("Format:"):
        for paragraph in re.split(r"\n\s*\n", copyright_text):
            if _DEP5_FILES_STAR.search(paragraph):
                match = re.search(r"^License:\s*(.+)$", paragraph, re.M)
                if match:
                    return match.group(1).strip(), ""
        raise WorkbenchError("copyright file in the machine-readable format without a 'Files: *' licence")
    return "custom notice (quoted below)", copyright_text.strip()
