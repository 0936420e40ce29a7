"""Attn-Sampler: commit first the positions the model attends to most.

"Attention-Based Sampler for Diffusion Language Models" (arXiv:2604.08564). The score of a
position is its attention column sum: the head-mean attention probability that the selected
query rows give to it, summed over those rows and over the chosen layers (``attn_layers``,
``attn_heads``; ``attn_query`` = all | masked | unmasked query rows). Two modes, both through
the ordinary commit rules:

- sequential: ``commit='schedule'`` with ``steps = gen_length`` commits the single top token by
  attention per step;
- parallel: ``commit='dominance'`` with ``threshold=tau`` commits, in attention order, the
  confident tokens (p(x0) >= tau) whose attention score exceeds the highest attention score
  among the non-confident ones, at least one token per step (the dynamic attention threshold).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig


def query_rows(select: torch.Tensor) -> torch.Tensor | None:
    """``[B, n]`` bool query-row selection -> ``[B, q]`` indices (None = all rows).

    The model's statistics take the same number of rows per batch row; rows that select
    different numbers (e.g. after threshold steps) raise a ValueError."""
    import torch

    if bool(select.all()):
        return None
    counts = select.sum(1)
    if bool((counts != counts[0]).any()):
        raise ValueError(
            "attention statistics over masked/unmasked query rows need the same number of such "
            f"rows in every batch row (got {counts.tolist()}); accepted: attn_query='all', "
            "commit='schedule', or batch size 1"
        )
    if int(counts[0]) == 0:
        return None
    order = torch.argsort((~select).to(torch.int8), dim=1, stable=True)
    return order[:, : int(counts[0])]


class AttnSampler:
    """score = attention column sum over the chosen layers, heads and query rows."""

    name = "attn"
    needs_attention = True

    def __init__(self, layers: tuple[int, ...] = (-1,), heads: tuple[int, ...] | None = None,
                 query: str = "all") -> None:
        self.layers, self.heads, self.query = tuple(layers), heads, query
        self._all_request: Any = None

    @classmethod
    def from_config(cls, config: DecodeConfig) -> AttnSampler:
        return cls(config.attn_layers, config.attn_heads, config.attn_query)

    def attention_request(self, masked: torch.Tensor, known: torch.Tensor,
                          keys_known: torch.Tensor | None = None) -> Any:
        from dllm_eval.harness.models.common import AttnStatsRequest

        if self.query == "all":
            # the same request at every step: built once
            if self._all_request is None:
                self._all_request = AttnStatsRequest(layers=self.layers, heads=self.heads)
            return self._all_request
        rows = query_rows(masked if self.query == "masked" else known)
        return AttnStatsRequest(layers=self.layers, query_index=rows, heads=self.heads)

    def score(self, state: StepState) -> torch.Tensor:
        import torch

        cols = state.attn.col_sum  # [layers, B, n_keys]
        col = cols[0] if cols.shape[0] == 1 else cols.sum(0)
        return state.attn_at(col).to(torch.float64)
