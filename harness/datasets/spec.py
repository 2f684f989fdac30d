"""Dataset specs: one YAML file of `datasets_cfg/` per dataset, and the registry of them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from common.config import StrictModel, load_yaml_model
from common.errors import WorkbenchError
from harness.datasets.beir import qrels_splits

__all__ = ["CONFIG_DIR", "Counts", "DatasetSpec", "Source", "read_dataset_specs", "resolve_dataset"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "datasets_cfg"


class Source(StrictModel):
    """Where a dataset comes from; the keys allowed depend on `type`."""

    type: Literal["embedded", "local", "beir_zip", "hf"]
    path: str | None = None  # embedded: relative to harness/data; local: a directory
    url: str | None = None  # beir_zip
    md5: str | None = None  # beir_zip: the checksum its publisher gives
    sha256: str | None = None  # beir_zip
    subdir: str | None = None  # beir_zip: folder inside the archive
    repo: str | None = None  # hf: dataset repository id
    revision: str | None = None  # hf: pinned commit
    files: dict[str, Any] | None = None  # hf: corpus / queries / qrels paths in the repo
    fields: dict[str, str] | None = None  # hf: source column names, when not BEIR's

    @model_validator(mode="after")
    def _keys_for_type(self) -> Source:
        needed = {"embedded": ["path"], "local": ["path"], "beir_zip": ["url"], "hf": ["repo", "files"]}
        allowed = {
            "embedded": {"path"},
            "local": {"path"},
            "beir_zip": {"url", "md5", "sha256", "subdir"},
            "hf": {"repo", "revision", "files", "fields"},
        }
        for key in needed[self.type]:
            if getattr(self, key) is None:
                raise ValueError(f"source type {self.type!r} needs key {key!r}")
        extra = {k for k in self.model_fields_set if k != "type"} - allowed[self.type]
        if extra:
            raise ValueError(f"source type {self.type!r} does not take {sorted(extra)}")
        return self


class Counts(StrictModel):
    corpus: int
    queries: dict[str, int]


class DatasetSpec(StrictModel):
    """One YAML file of `datasets_cfg/`."""

    name: str
    description: str
    format: Literal["beir"] = "beir"
    languages: list[str]
    source: Source
    splits: list[str] = Field(min_length=1)
    counts: Counts | None = None
    sha256: str | None = None  # checksum of the BEIR directory (`common.files.sha256_tree`)
    license: str | None = None
    reference: str | None = None
    default: bool = False  # part of the default `python evaluate.py` run
    expected: dict[str, dict[str, float]] | None = None  # retriever -> metric -> published
    # drop a retrieved document whose id is the query's id before scoring (pyserini's
    # --remove-query, BEIR's ignore_identical_ids): stated per dataset, never implied
    remove_query_ids: bool = False

    @classmethod
    def from_yaml(cls, path: Path) -> DatasetSpec:
        spec = load_yaml_model(path, cls)
        if spec.name != path.stem:
            raise WorkbenchError(f"{path}: name {spec.name!r} differs from the file name")
        return spec


def read_dataset_specs(config_dir: Path = CONFIG_DIR) -> dict[str, DatasetSpec]:
    """Every dataset spec of `config_dir`, by name (`harness.registry.dataset_registry` also checks
    their expected scores against the registered retrievers)."""
    specs = [DatasetSpec.from_yaml(p) for p in sorted(config_dir.glob("*.yaml"))]
    return {spec.name: spec for spec in specs}


def resolve_dataset(name_or_path: str, registry: dict[str, DatasetSpec]) -> DatasetSpec:
    """A registered name, or the path of any BEIR directory (evaluated on test, else dev)."""
    if name_or_path in registry:
        return registry[name_or_path]
    path = Path(name_or_path)
    if path.is_dir():
        found = set(qrels_splits(path))
        evaluation = [s for s in ("test", "dev") if s in found][:1] or sorted(found)[:1]
        if not evaluation:
            raise WorkbenchError(f"{path}: no qrels/<split>.tsv files")
        return DatasetSpec(
            name=path.resolve().name,
            description=f"BEIR directory {path}",
            languages=[],
            source=Source(type="local", path=str(path.resolve())),
            splits=evaluation,
        )
    raise WorkbenchError(
        f"unknown dataset {name_or_path!r}: not a registered name nor a directory; "
        f"registered: {', '.join(sorted(registry))}"
    )
