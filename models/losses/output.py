"""What every loss of the SPLADE-doc stack returns: a differentiable total and named parts for logging."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["LossOutput"]


@dataclass
class LossOutput:
    """A scalar loss and its named scalar parts.

    `total` carries the autograd graph. The parts are detached scalars, only for logging (the
    trainer logs each one); a component's own value is among them under its name.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.total.dim() != 0:
            raise ValueError(f"a loss total must be a scalar, got shape {tuple(self.total.shape)}")
        for name, value in self.parts.items():
            if value.dim() != 0:
                raise ValueError(f"loss part {name!r} must be a scalar, got shape {tuple(value.shape)}")

    def scalars(self) -> dict[str, float]:
        """The parts as Python floats (what a logger writes)."""
        return {name: float(value) for name, value in self.parts.items()}
