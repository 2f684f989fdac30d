"""Models trained here on first use from a shipped config: the regression anchors of training.

`splade-en-tiny-gimp`: `configs/tiny_cpu.yaml` (the small English SPLADE fine-tuned on the GIMP
training split from seed 42), trained without checkpoint evaluation (a few minutes on 2 CPU cores).
CPU training is deterministic (the trainer's resume tests check it bit for bit), so its scores are
expected ones in `datasets_cfg/gimp-en.yaml` and `python evaluate.py regress` checks them.

The final model is cached under `cache_dir()/trained/<config name>-<key>`; the key covers the
config file, the training datasets' checksums and the project's source code, so any change that
could alter the training retrains it. It is built in a scratch folder and appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from common.files import atomic_dir
from common.paths import cache_dir
from harness.console import console, meter
from harness.datasets import resolve_dataset
from harness.registry import dataset_registry
from harness.training import make_trainer
from models.config import TrainingConfig

__all__ = ["TINY_TRAINED_CONFIG", "trained_model_dir"]

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINED_CONFIG = ROOT / "configs" / "tiny_cpu.yaml"
_SOURCES = ("common", "harness", "models")  # the packages whose code the training runs


def _key(config_path: Path, config: TrainingConfig) -> str:
    digest = hashlib.sha256(config_path.read_bytes())
    registry = dataset_registry()
    for name in config.data.train:
        digest.update(str(resolve_dataset(name, registry).sha256).encode())
    for package in _SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def trained_model_dir(config_path: Path = TINY_TRAINED_CONFIG) -> str:
    """The final model of `config_path` trained from its seed, trained on first use and cached."""
    config = TrainingConfig.from_yaml(config_path)
    target = cache_dir() / "trained" / f"{config.name}-{_key(config_path, config)}"
    if (target / "config.json").is_file():
        return str(target)
    steps = config.train.max_steps
    console.log(f"{config.name}: training {config_path.name} once ({steps} steps) into {target}")
    with tempfile.TemporaryDirectory(prefix="workbench-train-") as scratch:
        scratch_config = config.model_copy(update={"output_dir": scratch})
        with meter(f"{config.name} training", total=steps, unit="steps") as progress:

            def advance(record: dict[str, float]) -> None:
                progress.advance(record["step"] - progress.done)

            make_trainer(scratch_config, leaderboard=None, log=advance).train()
        with atomic_dir(target, replace=True) as folder:
            shutil.copytree(Path(scratch) / "final_model", folder, dirs_exist_ok=True)
    return str(target)
