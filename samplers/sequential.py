"""Sequential sampler: commit masked positions left to right.

SDAR's rootgen ``remasking_strategy='sequential'`` (Cheng et al., "SDAR: A Synergistic
Diffusion-AutoRegression Paradigm for Scalable Sequence Generation", arXiv:2510.06303;
JetAstra/SDAR generate.py): with the schedule rule, each step commits the k leftmost masks, so
decoding inside a block is autoregressive. score = -position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig


class SequentialSampler:
    """score = minus the absolute position (leftmost first)."""

    name = "sequential"
    needs_attention = False

    @classmethod
    def from_config(cls, config: DecodeConfig) -> SequentialSampler:
        return cls()

    def score(self, state: StepState) -> torch.Tensor:
        import torch

        return -state.positions.to(torch.float64)
