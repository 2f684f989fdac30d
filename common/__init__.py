"""The base below `harness` and `models`: the error type, file readers and atomic writers,
checksums, YAML + pydantic loading, provenance, the cache location. It imports nothing of the
project.
"""

from common.config import StrictModel, describe_validation_error, load_yaml_model
from common.errors import WorkbenchError
from common.files import (
    atomic_dir,
    atomic_write,
    open_text,
    read_jsonl,
    read_pair_scores,
    read_qrels,
    read_tsv,
    sha256_file,
    sha256_tree,
    write_bytes,
    write_json,
)
from common.paths import cache_dir
from common.provenance import git_revision, library_versions, provenance

__all__ = [
    "StrictModel",
    "WorkbenchError",
    "atomic_dir",
    "atomic_write",
    "cache_dir",
    "describe_validation_error",
    "git_revision",
    "library_versions",
    "load_yaml_model",
    "open_text",
    "provenance",
    "read_jsonl",
    "read_pair_scores",
    "read_qrels",
    "read_tsv",
    "sha256_file",
    "sha256_tree",
    "write_bytes",
    "write_json",
]
