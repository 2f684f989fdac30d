"""File helpers: line readers that name the file and line, checksums, atomic writes.

Every writer here builds its output under a temporary name beside the target and renames it into
place only when complete, so an interrupted run never leaves a half-written file or folder.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from common.errors import WorkbenchError

logger = logging.getLogger(__name__)

__all__ = [
    "atomic_dir",
    "atomic_write",
    "make_folder",
    "read_jsonl",
    "read_lines",
    "read_pair_scores",
    "read_qrels",
    "read_tsv",
    "remove_leftovers",
    "safe_file_name",
    "sha256_file",
    "sha256_tree",
    "write_bytes",
    "write_json",
    "write_jsonl",
]


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (`.gz` decompressed); bytes that are not UTF-8 and
    truncated or corrupt gzip data are errors naming the file and the line."""
    line_no = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WorkbenchError(f"{path}:{line_no}: not UTF-8 text ({exc.reason})") from None
                yield line_no, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise WorkbenchError(f"{path}: truncated or corrupt gzip data after line {line_no} ({exc})") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; malformed lines name file and line."""
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkbenchError(f"{path}:{line_no}: malformed JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise WorkbenchError(f"{path}:{line_no}: expected a JSON object")
        yield line_no, obj


def read_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line of a tab- or space-separated file."""
    for line_no, line in read_lines(path):
        line = line.rstrip("\n\r")
        if line.strip():
            yield line_no, line.split("\t") if "\t" in line else line.split()


def read_qrels(path: Path) -> list[tuple[int, str, str, int]]:
    """(line, qid, docid, relevance) rows of a BEIR TSV (header optional) or TREC qrels file."""
    rows = []
    for line, fields in read_tsv(path):
        if line == 1 and fields[-1].lower() in {"score", "relevance", "rel"}:
            continue  # BEIR header
        if len(fields) == 3:
            qid, doc_id, rel = fields
        elif len(fields) == 4:
            qid, _, doc_id, rel = fields
        else:
            raise WorkbenchError(f"{path}:{line}: expected 3 (BEIR) or 4 (TREC) columns")
        try:
            relevance = int(float(rel)) if float(rel).is_integer() else None
        except ValueError:
            relevance = None
        if relevance is None:
            raise WorkbenchError(f"{path}:{line}: relevance {rel!r} is not an integer")
        rows.append((line, qid, doc_id, relevance))
    return rows


def read_pair_scores(path: Path) -> list[tuple[int, str, str, float]]:
    """(line, qid, docid, score) rows of a "query-id corpus-id score" TSV (header optional)."""
    rows = []
    for line, fields in read_tsv(path):
        if line == 1 and fields[-1].lower() == "score":
            continue
        if len(fields) != 3:
            raise WorkbenchError(f"{path}:{line}: expected query-id, corpus-id, score")
        try:
            rows.append((line, fields[0], fields[1], float(fields[2])))
        except ValueError:
            raise WorkbenchError(f"{path}:{line}: score {fields[2]!r} is not a number") from None
    return rows


def safe_file_name(name: str) -> str:
    """`name` as one file name: kept where it is only letters, digits, `.`, `_`, `-`, `@` (not
    starting with a dot); else those characters with `_` for the others, and a hash of the name so
    that two names never share a file ("outputs/run/checkpoint-4" -> "outputs_run_checkpoint-4-1a2b3c4d")."""
    if re.fullmatch(r"[\w@-][\w.@-]*", name) and len(name) <= 120:
        return name
    readable = re.sub(r"[^\w.@-]+", "_", name).strip("._")[-100:]
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_tree(root: Path, skip: Callable[[Path], bool] | None = None) -> str:
    """Checksum of a directory: every regular file's relative path and content, in sorted order.

    `skip(relative_path)` leaves out the files it is true for.
    """
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(root)
        if skip is not None and skip(relative):
            continue
        digest.update(relative.as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def _owner_tag() -> str:
    """Who builds a temporary file: host and process, so that a leftover of a dead one is known."""
    return f"{_host()}-{os.getpid()}"


def _temporary_name_prefix(target: Path) -> str:
    return f".{target.name}.{_owner_tag()}."


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]*\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders in `folder` that a killed writer of this host left
    (of the target `name` only, where given); those of live processes are kept. Returns the removed."""
    host = _host()
    removed = []
    pattern = f".{name}.*.tmp" if name is not None else ".*.tmp"
    for item in sorted(Path(folder).glob(pattern)) if Path(folder).is_dir() else []:
        match = _LEFTOVER.match(item.name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        if name is not None and match["name"] != name:
            continue
        logger.warning("%s: removing what a killed run left half-written", item)
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
        removed.append(item)
    return removed


def _default_mode(path: Path, base: int) -> None:
    """Give a temporary file or folder the permissions a plain create would have (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(base & ~umask)


def make_folder(folder: Path, create: bool = True) -> Path:
    """Create `folder` (and its parents) where it is missing, or with `create=False` only check
    that it could be; an error naming it where a file stands in its way or permission is denied."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        blocker = "is a file" if existing == folder else f"cannot be created: {existing} is a file"
        raise WorkbenchError(f"{folder}: {blocker}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkbenchError(f"{folder}: cannot write in {existing} (permission denied)")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkbenchError(f"{folder}: cannot create the folder ({exc.strerror})") from None
    return folder


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w", compresslevel: int = 1) -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`; rename over it only when the block succeeds.

    A `.gz` path is gzip-compressed at `compresslevel` (default 1: fast), with no file name and
    mtime 0 in the header, so the same content always gives the same bytes.
    """
    path = Path(path)
    if path.is_dir():
        raise WorkbenchError(f"{path}: is a folder; a file was to be written there")
    make_folder(path.parent)
    remove_leftovers(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_name_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        if path.suffix == ".gz":
            with tmp_path.open("wb") as out:
                raw = gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=compresslevel, mtime=0)
                handle: IO[Any] = raw if "b" in mode else io.TextIOWrapper(raw, encoding="utf-8")
                with handle:
                    yield handle
        else:
            with tmp_path.open(mode, encoding=None if "b" in mode else "utf-8") as handle:
                yield handle
        _default_mode(tmp_path, 0o666)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` atomically; a file that already holds exactly `data` is left alone."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    """Write `obj` as UTF-8 JSON (non-ASCII kept), atomically, ending with a newline when indented."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent) + ("\n" if indent is not None else "")
    write_bytes(path, text.encode("utf-8"))


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write one UTF-8 JSON object per line (non-ASCII kept), atomically; returns the count."""
    n = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


@contextlib.contextmanager
def atomic_dir(path: Path, replace: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name; it appears at `path` only when complete.

    An existing `path` is an error, unless `replace`: then it is swapped for the new one at the end.
    Every file and folder in it gets the permissions a plain create would have (some writers, such as
    safetensors', create theirs private). What killed runs left half-built beside it goes first.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WorkbenchError(f"{path}: is a file; a folder was to be written there")
    if path.exists() and not replace:
        raise WorkbenchError(f"{path}: output directory already exists")
    make_folder(path.parent)
    remove_leftovers(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_name_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for item in tmp.rglob("*"):
            if not item.is_symlink():
                _default_mode(item, 0o777 if item.is_dir() else 0o666)
        _default_mode(tmp, 0o777)
        if path.exists():
            # not named as a leftover: between the two renames below it holds the only copy
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "previous")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
