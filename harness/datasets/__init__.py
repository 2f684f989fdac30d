"""Datasets: specs and their registry (`spec`), the BEIR reader (`beir`), sources downloaded into a
checked cache (`sources`, `hf_convert`). Every dataset ends up as a BEIR directory.
"""

from harness.datasets.beir import Dataset, Document, load_beir, qrels_splits
from harness.datasets.sources import DATA_DIR, load_dataset
from harness.datasets.spec import CONFIG_DIR, Counts, DatasetSpec, Source, read_dataset_specs, resolve_dataset

__all__ = [
    "CONFIG_DIR",
    "DATA_DIR",
    "Counts",
    "Dataset",
    "DatasetSpec",
    "Document",
    "Source",
    "load_beir",
    "load_dataset",
    "qrels_splits",
    "read_dataset_specs",
    "resolve_dataset",
]
