"""AGDO denoising order: commit first the masked positions that attend most to known context.

"Beyond Fully Random Masking: Attention-Guided Denoising and Optimization for Diffusion
Language Models" (Deng et al., arXiv:2606.12273). The valid attention score of a masked
position is the head-mean attention probability its query row puts on the already-unmasked
positions (prompt and committed tokens, padding excluded), from the last layer; each step
commits the top-n positions by that score (``commit='schedule'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig


class AgdoSampler:
    """score = last-layer, head-mean attention mass on the unmasked positions."""

    name = "agdo"
    needs_attention = True

    def __init__(self, heads: tuple[int, ...] | None = None) -> None:
        self.heads = heads

    @classmethod
    def from_config(cls, config: DecodeConfig) -> AgdoSampler:
        return cls(config.attn_heads)

    def attention_request(self, masked: torch.Tensor, known: torch.Tensor,
                          keys_known: torch.Tensor | None = None) -> Any:
        from dllm_eval.harness.models.common import AttnStatsRequest

        keys = known if keys_known is None else keys_known
        return AttnStatsRequest(layers=(-1,), key_mask=keys, heads=self.heads, col_sums=False)

    def score(self, state: StepState) -> torch.Tensor:
        import torch

        valid = state.attn.row_sum[-1]  # [B, n_rows] over the statistics' query rows
        return state.attn_at_rows(valid).to(torch.float64)
