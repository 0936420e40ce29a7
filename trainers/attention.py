"""Head-mean attention matrices for AGDO (the one model-dependent piece of the AGDO recipes).

AGDO (arXiv 2606.12273) needs, for each clean training sequence, the head-mean attention
probability matrix ``A`` [L, L] (row = query, column = key) of one layer. The native models
expose attention statistics through ``attn_stats=AttnStatsRequest(...)`` (docs/ARCHITECTURE.md
§1): ``col_sum`` is the sum over the selected query rows of the head-mean probabilities. When the
statistics also offer the per-row matrix (``AttnStatsRequest(return_probs=True)`` →
``AttnStats.probs`` [len(layers), B, q, n_keys], a requested contract extension) it is used
directly; otherwise the matrix is assembled exactly from ``col_sum`` by running every query row
as its own batch row (``query_index`` = that row), in chunks of ``chunk_rows`` rows. The
fallback costs L forwards per sequence, which is fine for tiny models and short sequences.

``attention_fn`` hooks: every function here that needs ``A`` accepts a callable
``attention_fn(model, input_ids, attention_mask) -> [B, L, L]``; the default is
:func:`head_mean_attention` with the configured layer.
"""

from __future__ import annotations

import inspect

import torch


def _request_cls():
    from dllm_eval.harness.models.common import AttnStatsRequest

    return AttnStatsRequest


@torch.no_grad()
def head_mean_attention(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    layer: int = -1,
    chunk_rows: int = 64,
) -> torch.Tensor:
    """Head-mean attention probabilities ``[B, L, L]`` (float32) of ``layer`` on ``input_ids``."""
    req_cls = _request_cls()
    params = inspect.signature(req_cls).parameters
    device = input_ids.device
    B, L = input_ids.shape
    if "return_probs" in params:
        req = req_cls(layers=(layer,), return_probs=True)
        out = model(input_ids, attention_mask=attention_mask, attn_stats=req)
        return out.attn_stats.probs[0].float()
    rows = torch.arange(L, device=device)
    result = torch.zeros(B, L, L, dtype=torch.float32, device=device)
    flat = [(b, i) for b in range(B) for i in range(L)]
    for start in range(0, len(flat), chunk_rows):
        part = flat[start : start + chunk_rows]
        bs = torch.tensor([b for b, _ in part], device=device)
        qs = rows[[i for _, i in part]]
        am = attention_mask[bs] if attention_mask is not None else None
        req = req_cls(layers=(layer,), query_index=qs[:, None])
        out = model(input_ids[bs], attention_mask=am, attn_stats=req)
        col = out.attn_stats.col_sum[0].float()  # [chunk, L]
        result[bs, qs] = col
    return result
