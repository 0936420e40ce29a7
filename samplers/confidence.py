"""Confidence sampler: commit the positions whose proposed token is most probable first.

This is LLaDA's ``remasking='low_confidence'`` (Nie et al., "Large Language Diffusion Models",
arXiv:2502.09992; ML-GSAI/LLaDA generate.py), Dream's ``alg='maskgit_plus'`` (Ye et al.,
"Dream 7B: Diffusion Large Language Models", arXiv:2508.15487; MaskGIT, Chang et al.,
arXiv:2202.04200) and the score of Fast-dLLM's threshold decoding (Wu et al., "Fast-dLLM",
arXiv:2505.22618): score = p(x0) under the scoring distribution (float64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig


class ConfidenceSampler:
    """score = probability of the proposed token."""

    name = "confidence"
    needs_attention = False

    @classmethod
    def from_config(cls, config: DecodeConfig) -> ConfidenceSampler:
        return cls()

    def score(self, state: StepState) -> torch.Tensor:
        return state.confidence
