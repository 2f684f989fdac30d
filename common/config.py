"""YAML files validated by pydantic models, with one way of naming what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import WorkbenchError

__all__ = ["StrictModel", "describe_validation_error", "load_yaml_model"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A frozen model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe_validation_error(exc: ValidationError) -> str:
    """'dotted.key: message; ...' for each problem pydantic found."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors()
    )


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read a YAML mapping and validate it as `model`; errors name the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkbenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise WorkbenchError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise WorkbenchError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise WorkbenchError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise WorkbenchError(f"{path}: {describe_validation_error(exc)}") from None
