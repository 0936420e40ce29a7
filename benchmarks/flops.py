"""Analytic FLOPs of a dLLM forward and of the attention-statistics extra, at LLaDA-8B shape.

The attention-ordered samplers (Attn-Sampler, AGDO) need attention probabilities that fused
attention kernels never materialise. The native models recompute them for the chosen layers
and query rows only, from Q, K and each row's log-sum-exp (``attention_statistics`` in
``harness/models/common.py``). This module counts what that costs next to the forward itself,
so ``dllm-eval bench`` can check the issue-8 target "extra FLOPs <= 2% at LLaDA-8B shape"
without a GPU. Counts are multiply-add = 2 FLOPs for matrix products; element-wise work of the
statistics (scale, mask, subtract the log-sum-exp, exp, head mean, column and row sums) is
counted at ``STATS_ELEMENTWISE_FLOPS`` per score, and the forward's own element-wise work
(norms, RoPE, softmax, SiLU) is left out, which makes the reported ratios upper bounds.

The LLaDA-8B numbers are those of GSAI-ML/LLaDA-8B-Instruct ``config.json`` (d_model 4096,
32 layers, 32 heads, 32 KV heads, mlp_hidden_size 12288, embedding_size 126464), embedded here
so that nothing is read from outside the package at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LLADA_8B",
    "STATS_ELEMENTWISE_FLOPS",
    "ModelShape",
    "attention_stats_flops",
    "forward_flops",
    "overhead_scenarios",
]

#: element-wise FLOPs per attention score in the statistics pass (scale, mask, - lse, exp,
#: head mean, column sum, masked row sum), besides the max/sum of the log-sum-exp itself
STATS_ELEMENTWISE_FLOPS = 8


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that decide a transformer forward's FLOPs."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int

    @property
    def parameters(self) -> int:
        """Weights of the layers, the embedding and the (untied) output head."""
        d, kv = self.hidden, self.kv_heads * self.head_dim
        attn = d * self.heads * self.head_dim * 2 + 2 * d * kv
        mlp = 3 * d * self.ffn
        return self.layers * (attn + mlp + 2 * d) + 2 * self.vocab * d + d


#: GSAI-ML/LLaDA-8B-Instruct config.json
LLADA_8B = ModelShape(
    name="llada-8b", hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128, ffn=12288, vocab=126464
)


def forward_flops(shape: ModelShape, n_queries: int, n_keys: int, logits_rows: int | None = None) -> int:
    """Matrix-product FLOPs of one forward over ``n_queries`` new tokens attending ``n_keys`` keys
    (uncached: ``n_keys == n_queries``; dual cache: the block against the whole sequence),
    with the output head applied to ``logits_rows`` rows (default: every query row)."""
    if n_queries < 1 or n_keys < n_queries:
        raise ValueError(
            f"n_queries={n_queries}, n_keys={n_keys}: accepted 1 <= n_queries <= n_keys"
        )
    d, q_dim, kv_dim = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    rows = n_queries if logits_rows is None else logits_rows
    projections = 2 * n_queries * d * (q_dim + 2 * kv_dim) + 2 * n_queries * q_dim * d
    attention = 2 * 2 * n_queries * n_keys * q_dim  # Q K^T and P V over every head
    mlp = 3 * 2 * n_queries * d * shape.ffn
    return shape.layers * (projections + attention + mlp) + 2 * rows * d * shape.vocab


def attention_stats_flops(
    shape: ModelShape,
    n_rows: int,
    n_keys: int,
    stats_layers: int = 1,
    heads: int | None = None,
    n_columns: int | None = None,
) -> int:
    """Extra FLOPs of the attention statistics: for each of ``stats_layers`` layers and each of
    ``heads`` heads (default all), the scores of ``n_rows`` query rows against the keys, their
    log-sum-exp, and the probabilities' column and row sums.

    ``n_columns``: when the row log-sum-exp is taken from the attention kernel (flash attention
    returns it), only the ``n_columns`` columns that are scored need recomputing; None = every
    key column (the log-sum-exp recomputed from the full score rows, as the native models do).
    """
    h = shape.heads if heads is None else heads
    cols = n_keys if n_columns is None else n_columns
    scores = 2 * n_rows * cols * shape.head_dim * h
    elementwise = STATS_ELEMENTWISE_FLOPS * n_rows * cols * h
    lse = 0 if n_columns is not None else 2 * n_rows * n_keys * h  # max and sum of exp
    return stats_layers * (scores + elementwise + lse)


def overhead_scenarios(
    shape: ModelShape = LLADA_8B, prompt: int = 256, gen_length: int = 256, block_length: int = 32
) -> list[dict]:
    """Extra FLOPs of the statistics relative to the forward they ride on, for the forwards the
    engine runs (uncached full sequence; dual-cache block; prefix-cache block-to-end) and the
    statistics the samplers ask for (one layer, every layer; every query row or the block's)."""
    total = prompt + gen_length
    cases = []
    forwards = {
        "uncached": (total, total),
        "dual cache (block)": (block_length, total),
        "prefix cache (block..end, mean)": ((gen_length + block_length) // 2, total),
    }
    for fwd_name, (n_q, n_k) in forwards.items():
        fwd = forward_flops(shape, n_q, n_k)
        row_choices = {"all query rows": n_q, "block query rows": block_length}
        if n_q == block_length:
            row_choices = {"block query rows": block_length}
        for rows_name, rows in row_choices.items():
            for layers_name, layers in (("1 layer", 1), (f"all {shape.layers} layers", shape.layers)):
                extra = attention_stats_flops(shape, rows, n_k, stats_layers=layers)
                cases.append({
                    "shape": shape.name,
                    "forward": fwd_name,
                    "stats rows": rows_name,
                    "stats layers": layers_name,
                    "forward_gflops": fwd / 1e9,
                    "extra_gflops": extra / 1e9,
                    "extra_percent": 100.0 * extra / fwd,
                })
    return cases
