"""What produced a result: library versions and the git revision of the code."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "git_revision", "library_versions", "provenance"]

LIBRARIES = (
    "numpy",
    "scipy",
    "ranx",
    "bm25s",
    "rank-bm25",
    "kiwipiepy",
    "torch",
    "transformers",
    "tokenizers",
    "sentence-transformers",
)


def library_versions() -> dict[str, str]:
    """Python's version and that of each installed library of `LIBRARIES`."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_revision(path: Path | None = None) -> str | None:
    """HEAD of the repository holding this code, with `-dirty` when files differ; None outside git."""
    cwd = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def provenance() -> dict[str, Any]:
    """{"git_revision": ..., "versions": {...}}: what every report, record and checkpoint states."""
    return {"git_revision": git_revision(), "versions": library_versions()}
