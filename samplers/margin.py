"""Margin sampler: commit first where the top-1 and top-2 probabilities are furthest apart.

Dream's ``alg='topk_margin'`` (Ye et al., "Dream 7B: Diffusion Large Language Models",
arXiv:2508.15487; Dream-org/Dream-v0-Instruct-7B generation_utils.py, after Kim et al.,
"Train for the Worst, Plan for the Best", arXiv:2502.06768): score = p1 - p2 of the scoring
distribution (float64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig


class MarginSampler:
    """score = top-1 probability minus top-2 probability."""

    name = "margin"
    needs_attention = False

    @classmethod
    def from_config(cls, config: DecodeConfig) -> MarginSampler:
        return cls()

    def score(self, state: StepState) -> torch.Tensor:
        import torch

        top2 = torch.topk(state.probs, 2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
