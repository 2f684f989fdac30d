"""File helpers: line readers that name the file and line, checksums, atomic writes."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.errors import HarnessError

__all__ = [
    "atomic_dir",
    "atomic_write",
    "open_text",
    "read_jsonl",
    "read_tsv",
    "sha256_file",
    "sha256_tree",
]


def open_text(path: Path) -> IO[str]:
    """Open a text file for reading, transparently decompressing `.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; malformed lines name file and line."""
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path}:{line_no}: malformed JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise HarnessError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, obj


def read_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line of a tab- or space-separated file."""
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\n\r")
            if line.strip():
                yield line_no, line.split("\t") if "\t" in line else line.split()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: Path) -> str:
    """Checksum of a directory: every regular file's relative path and content, in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _default_mode(path: Path, base: int) -> None:
    """Give a temporary file or folder the permissions a plain create would have (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(base & ~umask)


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`; rename over it only when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        if path.suffix == ".gz":  # mtime 0: the same content gives the same bytes; level 1: fast
            raw = gzip.GzipFile(tmp_path, "wb", compresslevel=1, mtime=0)
            handle: IO[Any] = raw if "b" in mode else io.TextIOWrapper(raw, encoding="utf-8")
        else:
            handle = tmp_path.open(mode, encoding=None if "b" in mode else "utf-8")
        with handle:
            yield handle
        _default_mode(tmp_path, 0o666)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a directory under a temporary name; it appears at `path` only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise HarnessError(f"{path}: output directory already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _default_mode(tmp, 0o777)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
