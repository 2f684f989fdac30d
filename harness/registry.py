"""The dataset registry checked against the retriever registry.

A dataset's YAML may list expected scores by retriever name (`expected:`); an expectation that names
no registered retriever could never be checked, so loading the registry refuses it. This module sits
above both `harness.datasets` and `harness.retrievers`, which know nothing of each other's names.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from common.errors import WorkbenchError
from harness.datasets import CONFIG_DIR, DatasetSpec, read_dataset_specs
from harness.retrievers import retriever_registry

__all__ = ["dataset_registry"]


def dataset_registry(
    config_dir: Path = CONFIG_DIR, retrievers: Collection[str] | None = None
) -> dict[str, DatasetSpec]:
    """Every dataset spec, by name; an `expected:` key outside `retrievers` (default: the
    registered ones) is an error naming the file."""
    known = set(retriever_registry() if retrievers is None else retrievers)
    specs = read_dataset_specs(config_dir)
    for name, spec in specs.items():
        unknown = sorted(set(spec.expected or {}) - known)
        if unknown:
            raise WorkbenchError(
                f"{config_dir / name}.yaml: expected: {', '.join(unknown)} is not a registered "
                f"retriever; registered: {', '.join(sorted(known))}"
            )
    return specs
