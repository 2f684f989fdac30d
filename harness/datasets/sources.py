"""Dataset sources: embedded and local directories, BEIR zips and Hugging Face datasets downloaded
once into a checked cache, then read and checked against their spec's counts and checksum.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from common.errors import WorkbenchError
from common.files import atomic_dir, sha256_file
from common.paths import cache_dir
from harness.datasets.beir import Dataset, load_beir
from harness.datasets.spec import DatasetSpec

__all__ = ["DATA_DIR", "load_dataset"]

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def _download(url: str, target: Path, what: str) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    try:
        response = urllib.request.urlopen(url, timeout=30)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise WorkbenchError(f"{what}: cannot download {url} ({exc})") from None
    total = int(response.headers.get("Content-Length") or 0) or None
    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    try:
        with response, target.open("wb") as out, Progress(*columns, transient=True) as progress:
            task = progress.add_task(f"download {url.rsplit('/', 1)[-1]}", total=total)
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                progress.advance(task, len(block))
    except (OSError, TimeoutError) as exc:
        raise WorkbenchError(f"{what}: download of {url} interrupted ({exc})") from None


def _extract(archive: Path, subdir: str | None, out: Path, what: str) -> None:
    """The members of `archive` under `subdir` (all without one) into `out`, paths relative to it."""
    prefix = f"{subdir.strip('/')}/" if subdir else ""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
            if not members:
                raise WorkbenchError(f"{what}: the archive has no folder {subdir!r}")
            for member in members:
                relative = Path(member.filename[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise WorkbenchError(f"{what}: unsafe path {member.filename!r} in the archive")
                (out / relative).parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, (out / relative).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise WorkbenchError(f"{what}: not a zip archive ({exc})") from None


def _fetch_beir_zip(spec: DatasetSpec, target: Path) -> None:
    source = spec.source
    assert source.url is not None  # checked by the Source validator
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive = Path(scratch) / "data.zip"
        _download(source.url, archive, f"dataset {spec.name!r} (cache path {target})")
        if source.sha256 and sha256_file(archive) != source.sha256:
            raise WorkbenchError(f"dataset {spec.name!r}: sha256 of {source.url} differs from the YAML")
        if source.md5:
            with archive.open("rb") as handle:
                md5 = hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
            if md5 != source.md5:
                raise WorkbenchError(f"dataset {spec.name!r}: md5 of {source.url} is {md5}, not {source.md5}")
        with atomic_dir(target) as out:
            _extract(archive, source.subdir, out, f"dataset {spec.name!r}: {source.url}")


def _fetch_hf(spec: DatasetSpec, target: Path) -> None:
    from harness.datasets.hf_convert import convert_hf_files

    source = spec.source
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WorkbenchError(
            f"dataset {spec.name!r}: install huggingface_hub to fetch {source.repo}"
        ) from None
    assert source.files is not None and source.repo is not None

    def fetch(filename: str) -> Path:
        try:
            return Path(hf_hub_download(source.repo, filename, repo_type="dataset", revision=source.revision))
        except Exception as exc:  # the hub raises many types; all mean "not available here"
            raise WorkbenchError(
                f"dataset {spec.name!r}: cannot fetch {filename} from Hugging Face dataset "
                f"{source.repo}@{source.revision or 'main'} ({type(exc).__name__}); "
                f"cache path {target}"
            ) from None

    with atomic_dir(target) as out:
        convert_hf_files(source.files, source.fields or {}, fetch, out)


def _materialise(spec: DatasetSpec) -> Path:
    """The BEIR directory of a spec, downloading remote sources into the cache once."""
    source = spec.source
    if source.type == "embedded":
        return DATA_DIR / str(source.path)
    if source.type == "local":
        return Path(str(source.path)).expanduser()
    source_key = hashlib.sha256(source.model_dump_json().encode()).hexdigest()[:12]
    target = cache_dir() / "datasets" / f"{spec.name}-{source_key}"  # a changed source is a new folder
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.type == "beir_zip":
        _fetch_beir_zip(spec, target)
    else:
        _fetch_hf(spec, target)
    return target


def _check_counts(spec: DatasetSpec, data: Dataset) -> None:
    if spec.sha256 and data.checksum != spec.sha256:
        raise WorkbenchError(
            f"dataset {spec.name!r}: checksum of {data.path} is {data.checksum}, "
            f"the YAML pins {spec.sha256} (dataset drift)"
        )
    if spec.counts is None:
        return
    found = {"corpus": len(data.corpus)} | {
        f"queries.{split}": len(data.qrels[split]) for split in spec.counts.queries if split in data.qrels
    }
    wanted = {"corpus": spec.counts.corpus} | {
        f"queries.{split}": n for split, n in spec.counts.queries.items()
    }
    drift = [
        f"{k}: expected {wanted[k]}, found {found.get(k, 'none')}"
        for k in wanted
        if found.get(k) != wanted[k]
    ]
    if drift:
        raise WorkbenchError(
            f"dataset {spec.name!r} at {data.path} differs from its YAML (dataset drift): " + "; ".join(drift)
        )


def load_dataset(spec: DatasetSpec, strict: bool = False) -> Dataset:
    """Materialise, read and check a registered dataset."""
    path = _materialise(spec)
    if not path.is_dir():
        raise WorkbenchError(f"dataset {spec.name!r}: {path} not found ({spec.source.type} source)")
    counted = list(spec.counts.queries) if spec.counts else []
    splits = list(dict.fromkeys([*spec.splits, *counted]))  # evaluation splits, then the others counted
    data = load_beir(path, splits, strict=strict, name=spec.name)
    data.evaluation_splits = tuple(spec.splits)
    _check_counts(spec, data)
    return data
