"""Entropy sampler: commit the positions with the lowest predictive entropy first.

Dream's ``alg='entropy'`` (Ye et al., "Dream 7B: Diffusion Large Language Models",
arXiv:2508.15487; Dream-org/Dream-v0-Instruct-7B generation_utils.py): score =
sum_v p_v log(p_v + 1e-10), the negative entropy of the scoring distribution (float64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig

EPSILON = 1e-10  # Dream's constant inside the log


class EntropySampler:
    """score = negative entropy (higher = more certain)."""

    name = "entropy"
    needs_attention = False

    @classmethod
    def from_config(cls, config: DecodeConfig) -> EntropySampler:
        return cls()

    def score(self, state: StepState) -> torch.Tensor:
        import torch

        p = state.probs
        return (p * torch.log(p + EPSILON)).sum(-1)
