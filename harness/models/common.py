"""Shared building blocks of the native diffusion-LM families (LLaDA, Dream, SDAR).

All three released families are pre-norm transformer decoders with RMSNorm, rotary position
embeddings (rotate-half), grouped-query attention and a SwiGLU MLP; they differ in parameter names,
optional q/k biases or q/k RMSNorm, and the default attention pattern (bidirectional, or SDAR's
block-causal). This module implements the forward pass once (``DiffusionLM``); a family file only
creates its modules under the official names and tells the base class where they are
(``DecoderLayer.ROLES`` and ``DiffusionLM._parts``).

Also here: the Fast-dLLM style key/value cache (``KVCache``: prefix and dual modes addressed by
``cache_position``) and attention statistics for chosen layers and query rows
(``AttnStatsRequest`` -> ``AttnStats``), computed exactly from Q, K and each row's log-sum-exp
without materialising every layer's attention matrix; ordinary forwards use SDPA.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

__all__ = [
    "AttnStats",
    "AttnStatsRequest",
    "DecoderLayer",
    "DiffusionLM",
    "DiffusionLMOutput",
    "KVCache",
    "RMSNorm",
]

# query rows processed at once when attention statistics are computed (bounds memory to
# B x H x _STATS_CHUNK x n_keys floats)
_STATS_CHUNK = 256


class RMSNorm(nn.Module):
    """``w * (x * rsqrt(mean(x^2) + eps))`` with the statistics in float32 (all three families)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rope_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cos/sin tables ``[B, n, head_dim]`` for integer positions (inv_freq = theta^(-2i/d))."""
    exponent = torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.int64).float()
    inv_freq = 1.0 / (theta ** (exponent / head_dim))
    freqs = position_ids.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full_precision: bool
) -> torch.Tensor:
    """Rotate ``x`` [B, H, n, D] (rotate-half convention). ``full_precision``: compute in float32
    (LLaDA); otherwise cos/sin are cast to x's dtype first (Qwen2/Qwen3 convention)."""
    cos, sin = cos[:, None], sin[:, None]
    dtype = x.dtype
    if full_precision:
        x = x.float()
    else:
        cos, sin = cos.to(dtype), sin.to(dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(dtype)


# ----------------------------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------------------------


class KVCache:
    """Per-layer post-RoPE keys and values ``[B, H_kv, L, D]`` (Fast-dLLM semantics).

    A forward with ``past_key_values=cache`` and ``cache_position=p`` over ``n`` new tokens runs in
    - prefix mode when ``len(cache) == p``: the new keys/values are appended, queries attend
      cache + new;
    - dual mode when ``len(cache) >= p + n``: the cached entries at ``[p, p + n)`` are replaced by
      the new ones (on a copy; the given cache is never modified), queries attend all keys.
    The forward's ``use_cache=True`` output is a new ``KVCache`` of all keys attended.
    """

    def __init__(self, layers: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = list(layers)
        lengths = {k.shape[2] for k, _ in self.layers} | {v.shape[2] for _, v in self.layers}
        if len(lengths) > 1:
            raise ValueError(f"KVCache: layers have different cached lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return self.layers[0][0].shape[2] if self.layers else 0

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def truncate(self, length: int) -> KVCache:
        """A cache of the first ``length`` positions (views, no copy)."""
        if not 0 <= length <= len(self):
            raise ValueError(f"KVCache.truncate: length={length} outside [0, {len(self)}]")
        return KVCache([(k[:, :, :length], v[:, :, :length]) for k, v in self.layers])

    def select(self, rows: torch.Tensor | Sequence[int]) -> KVCache:
        """A cache of the given batch rows (for batches whose rows finish at different times)."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.layers[0][0].device if self.layers else None)
        return KVCache([(k.index_select(0, idx), v.index_select(0, idx)) for k, v in self.layers])

    def mode(self, cache_position: int, n: int) -> str:
        """``'prefix'`` or ``'dual'`` for new tokens at ``[cache_position, cache_position + n)``."""
        length = len(self)
        if length == cache_position:
            return "prefix"
        if length >= cache_position + n:
            return "dual"
        raise ValueError(
            f"cache_position={cache_position} with {n} new tokens does not fit a KVCache of length "
            f"{length}: accepted are cache_position == {length} (prefix cache, append) or "
            f"cache_position + n <= {length} (dual cache, replace)"
        )

    def merged(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, cache_position: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of layer ``layer`` with the new ``k, v`` placed at ``cache_position``."""
        ck, cv = self.layers[layer]
        n = k.shape[2]
        if self.mode(cache_position, n) == "prefix":
            return torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2)
        end = cache_position + n
        keys = torch.cat([ck[:, :, :cache_position], k, ck[:, :, end:]], dim=2)
        values = torch.cat([cv[:, :, :cache_position], v, cv[:, :, end:]], dim=2)
        return keys, values

    def to(self, *args: Any, **kwargs: Any) -> KVCache:
        return KVCache([(k.to(*args, **kwargs), v.to(*args, **kwargs)) for k, v in self.layers])


# ----------------------------------------------------------------------------------------------
# attention statistics
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttnStatsRequest:
    """Which attention statistics a forward should return.

    layers: layer indices (negative counts from the end); default the last layer.
    query_index: rows (relative to ``input_ids``) whose probabilities are summed into ``col_sum``
        and for which ``row_sum`` is reported; ``[q]`` or ``[B, q]``; None = all rows.
    key_mask: ``[B, n_keys]`` bool; when given, ``row_sum`` = each row's probability mass on
        these keys (AGDO's "valid attention").
    heads: query heads averaged; None = all.
    return_probs: also return the head-mean probabilities of the selected rows (``AttnStats.probs``;
        memory ``len(layers) x B x q x n_keys``, meant for training-time analyses such as AGDO).
    """

    layers: tuple[int, ...] = (-1,)
    query_index: torch.Tensor | None = None
    key_mask: torch.Tensor | None = None
    heads: tuple[int, ...] | None = None
    return_probs: bool = False
    share_probs: bool = False
    col_sums: bool = True
    """col_sums: compute ``col_sum`` (False: ``AttnStats.col_sum`` is None, for callers that only
    need ``row_sum``, such as AGDO's sampler)."""
    """share_probs: a requested layer attends eagerly (float32 ``softmax(q k^T * scale + mask)``,
    per chunk of query rows) and the same probabilities give both its output and the statistics,
    instead of SDPA plus a second score pass (cheaper when the statistics cover most query rows;
    the output matches SDPA to float rounding). Off: SDPA for every layer, statistics recomputed
    from Q, K and the log-sum-exp of the selected rows only."""


@dataclass
class AttnStats:
    """Head-mean attention probabilities, reduced.

    col_sum: ``[len(layers), B, n_keys]`` sum over the selected query rows (None when the request
        said ``col_sums=False``).
    row_sum: ``[len(layers), B, n or q]`` sum over the keys in ``key_mask`` (None without it).
    layers: the resolved (non-negative) layer indices.
    probs: ``[len(layers), B, n or q, n_keys]`` head-mean probabilities (only with return_probs).
    """

    col_sum: torch.Tensor | None
    row_sum: torch.Tensor | None
    layers: tuple[int, ...]
    probs: torch.Tensor | None = None


def _resolve_stats_request(req: AttnStatsRequest, num_layers: int, num_heads: int) -> tuple[int, ...]:
    if not isinstance(req, AttnStatsRequest):
        raise ValueError(f"attn_stats={req!r} is invalid (accepted: AttnStatsRequest or None)")
    if len(req.layers) == 0:
        raise ValueError("AttnStatsRequest.layers=() is empty (accepted: layer indices, e.g. (-1,))")
    layers = []
    for layer in req.layers:
        if not -num_layers <= layer < num_layers:
            raise ValueError(
                f"AttnStatsRequest.layers contains {layer} (accepted: -{num_layers}..{num_layers - 1})"
            )
        layers.append(layer % num_layers)
    if req.heads is not None:
        bad = [h for h in req.heads if not 0 <= h < num_heads]
        if bad or len(req.heads) == 0:
            raise ValueError(f"AttnStatsRequest.heads={req.heads!r} is invalid (accepted: 0..{num_heads - 1})")
    return tuple(layers)


def attention_statistics(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None,
    req: AttnStatsRequest,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Column and restricted row sums (and, on request, the rows themselves) of head-mean softmax(q k^T * scale) for one layer.

    q ``[B, H, n, D]``, k ``[B, H_kv, N, D]``, mask bool broadcastable to ``[B, 1, n, N]``
    (True = may attend) or None. Probabilities are formed per chunk of query rows as
    ``softmax(s)`` (float32); fully masked rows (padding queries) have zero probabilities.
    """
    bsz, num_heads, n, _ = q.shape
    n_keys = k.shape[2]
    if req.heads is not None:
        q = q[:, list(req.heads)]
        head_kv = [h // (num_heads // k.shape[1]) for h in req.heads]
        k = k[:, head_kv]
    else:
        k = k.repeat_interleave(num_heads // k.shape[1], dim=1)
    rows = _query_rows(req.query_index, bsz, n, q.device)  # [B, q] or None
    key_mask = None
    if req.key_mask is not None:
        key_mask = req.key_mask.to(q.device)
        if key_mask.shape != (bsz, n_keys):
            raise ValueError(
                f"AttnStatsRequest.key_mask has shape {tuple(key_mask.shape)} (accepted: [B, n_keys] = [{bsz}, {n_keys}])"
            )
        key_mask = key_mask.bool()
    qf, kf = q.float(), k.float()
    if rows is not None:
        # gather only the selected query rows
        qf = torch.gather(qf, 2, rows[:, None, :, None].expand(-1, qf.shape[1], -1, qf.shape[-1]))
        if mask is not None:
            mask = mask.expand(bsz, 1, n, n_keys)
            mask = torch.gather(mask, 2, rows[:, None, :, None].expand(-1, 1, -1, n_keys))
    n_rows = qf.shape[2]
    keys_f = None if key_mask is None else key_mask.float()[:, :, None]  # [B, N, 1]
    col_sum = torch.zeros(bsz, n_keys, dtype=torch.float32, device=q.device) if req.col_sums else None
    row_parts, prob_parts = [], []
    for start in range(0, n_rows, _STATS_CHUNK):
        stop = min(start + _STATS_CHUNK, n_rows)
        probs = _softmax_probs(torch.matmul(qf[:, :, start:stop], kf.transpose(-1, -2)), mask, start, stop, scale)
        mean = probs.mean(dim=1)  # [B, rows, N]
        if col_sum is not None:
            col_sum += mean.sum(dim=1)
        if keys_f is not None:
            row_parts.append(torch.matmul(mean, keys_f)[..., 0])
        if req.return_probs:
            prob_parts.append(mean)
    row_sum = _joined(row_parts, 1) if key_mask is not None else None
    probs = _joined(prob_parts, 1) if req.return_probs else None
    return col_sum, row_sum, probs


def _softmax_probs(scores: torch.Tensor, mask: torch.Tensor | None, start: int, stop: int,
                   scale: float) -> torch.Tensor:
    """float32 ``softmax(scores * scale)`` over keys for query rows ``[start, stop)`` with ``mask``
    (True = may attend; rows ``start:stop`` of it, or broadcast); fully masked rows (padding
    queries) get zeros. ``scores`` is a fresh tensor and is modified in place."""
    scores.mul_(scale)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    m = mask[:, :, start:stop] if mask.shape[2] != 1 else mask
    scores.masked_fill_(~m, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num_(nan=0.0)


def attention_with_statistics(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    req: AttnStatsRequest,
    scale: float,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
    """Eager attention of one layer and its statistics from the same probabilities.

    q ``[B, H, n, D]``, k/v ``[B, H_kv, N, D]``, mask as in ``attention_statistics``. Returns the
    attention output ``[B, H, n, D]`` (q's dtype) and ``(col_sum, row_sum, probs)`` exactly as
    ``attention_statistics`` defines them (``AttnStatsRequest.share_probs``). Probabilities are
    float32 ``softmax(s)`` per chunk of query rows; fully masked rows give zeros.
    """
    bsz, num_heads, n, head_dim = q.shape
    n_keys = k.shape[2]
    groups = num_heads // k.shape[1]
    kf, vf = k.float(), v.float()
    if groups > 1:
        kf, vf = kf.repeat_interleave(groups, dim=1), vf.repeat_interleave(groups, dim=1)
    if (req.query_index is None and req.heads is None and not req.return_probs and n <= _STATS_CHUNK
            and q.dtype == torch.float32):
        # the samplers' case (every row, every head, one chunk): the same arithmetic as below
        # with the fewest operator calls (a decoding step on a small model is dispatch-bound)
        probs = _softmax_probs(torch.matmul(q, kf.transpose(-1, -2)), mask, 0, n, scale)
        col_sum = probs.sum(dim=(1, 2)).div_(num_heads) if req.col_sums else None
        row_sum = None
        if req.key_mask is not None:
            keys_f = _key_mask(req.key_mask, bsz, n_keys, q.device).float()[:, None, :, None]
            row_sum = torch.matmul(probs, keys_f).mean(dim=1)[..., 0]
        return torch.matmul(probs, vf), (col_sum, row_sum, None)
    rows = _query_rows(req.query_index, bsz, n, q.device)  # [B, q] or None
    key_mask = _key_mask(req.key_mask, bsz, n_keys, q.device)
    heads = list(req.heads) if req.heads is not None else None
    weight = None
    if rows is not None:  # how often each query row is selected (duplicates count twice)
        weight = torch.zeros(bsz, n, dtype=torch.float32, device=q.device)
        weight.scatter_add_(1, rows, torch.ones(rows.shape, dtype=torch.float32, device=q.device))
    qf = q.float()
    n_heads = num_heads if heads is None else len(heads)
    need_mean = req.return_probs
    keys_f = None if key_mask is None else key_mask.float()[:, None, :, None]  # [B, 1, N, 1]
    out_parts, row_parts, prob_parts = [], [], []
    col_sum = None
    for start in range(0, n, _STATS_CHUNK):
        stop = min(start + _STATS_CHUNK, n)
        probs = _softmax_probs(torch.matmul(qf[:, :, start:stop], kf.transpose(-1, -2)), mask, start, stop, scale)
        out_parts.append(torch.matmul(probs, vf))
        sel = probs if heads is None else probs[:, heads]
        if keys_f is not None:  # each row's mass on the key set, head mean
            row_parts.append(torch.matmul(sel, keys_f).mean(dim=1)[..., 0])
        mean = sel.mean(dim=1) if need_mean else None  # [B, rows, N]
        if req.col_sums:
            if mean is not None:
                part = mean.sum(dim=1) if weight is None else (mean * weight[:, start:stop, None]).sum(dim=1)
            elif weight is None:
                part = sel.sum(dim=(1, 2)).div_(n_heads)
            else:
                part = (sel.sum(dim=1) * weight[:, start:stop, None]).sum(dim=1).div_(n_heads)
            col_sum = part if col_sum is None else col_sum + part
        if req.return_probs:
            prob_parts.append(mean)
    out = _joined(out_parts, 2)
    if col_sum is None and req.col_sums:  # no query rows
        col_sum = torch.zeros(bsz, n_keys, dtype=torch.float32, device=q.device)
    row_sum = _joined(row_parts, 1) if key_mask is not None else None
    probs_out = _joined(prob_parts, 1) if req.return_probs else None
    if rows is not None:
        if row_sum is not None:
            row_sum = torch.gather(row_sum, 1, rows)
        if probs_out is not None:
            probs_out = torch.gather(probs_out, 1, rows[:, :, None].expand(-1, -1, n_keys))
    return out.to(q.dtype), (col_sum, row_sum, probs_out)


def _joined(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """The chunks' results along ``dim`` (one chunk, the usual case: no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


def _key_mask(key_mask: torch.Tensor | None, bsz: int, n_keys: int, device: torch.device) -> torch.Tensor | None:
    if key_mask is None:
        return None
    key_mask = key_mask.to(device)
    if key_mask.shape != (bsz, n_keys):
        raise ValueError(
            f"AttnStatsRequest.key_mask has shape {tuple(key_mask.shape)} (accepted: [B, n_keys] = [{bsz}, {n_keys}])"
        )
    return key_mask.bool()


def _query_rows(index: torch.Tensor | None, bsz: int, n: int, device: torch.device) -> torch.Tensor | None:
    if index is None:
        return None
    index = torch.as_tensor(index, dtype=torch.long, device=device)
    if index.dim() == 1:
        index = index[None].expand(bsz, -1)
    if index.dim() != 2 or index.shape[0] != bsz:
        raise ValueError(
            f"AttnStatsRequest.query_index has shape {tuple(index.shape)} (accepted: [q] or [B, q] with B={bsz})"
        )
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise ValueError(f"AttnStatsRequest.query_index values must lie in [0, {n}) (rows of input_ids)")
    return index


def checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """``{name: shape}`` from the safetensors headers of a folder (single file or sharded with
    ``model.safetensors.index.json``); None if it has no safetensors weights."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
        with open(folder / name, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(size))
        for key, meta in header.items():
            if key != "__metadata__":
                shapes[key] = tuple(meta["shape"])
    return shapes


# ----------------------------------------------------------------------------------------------
# decoder layer and model
# ----------------------------------------------------------------------------------------------


class DecoderLayer(nn.Module):
    """Pre-norm attention + SwiGLU block computed from modules with family-specific names.

    Subclasses create their modules under the official attribute names and map the roles below to
    attribute paths in ``ROLES``: ``attn_norm, q, k, v, o, mlp_norm, gate, up, down`` and optionally
    ``q_norm, k_norm`` (per-head RMSNorm of q and k before RoPE, SDAR).
    """

    ROLES: dict[str, str] = {}

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, rope_full_precision: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.rope_full_precision = rope_full_precision

    def part(self, role: str) -> nn.Module | None:
        path = self.ROLES.get(role)
        return None if path is None else self.get_submodule(path)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        layer_idx: int,
        cache_position: int,
        stats: AttnStatsRequest | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], tuple | None]:
        bsz, n, _ = x.shape
        h = self.part("attn_norm")(x)
        q = self.part("q")(h).view(bsz, n, self.num_heads, self.head_dim)
        k = self.part("k")(h).view(bsz, n, self.num_kv_heads, self.head_dim)
        v = self.part("v")(h).view(bsz, n, self.num_kv_heads, self.head_dim)
        q_norm, k_norm = self.part("q_norm"), self.part("k_norm")
        if q_norm is not None:
            q, k = q_norm(q), k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = apply_rope(q, cos, sin, self.rope_full_precision)
        k = apply_rope(k, cos, sin, self.rope_full_precision)
        if cache is not None and cache.num_layers:
            k_all, v_all = cache.merged(layer_idx, k, v, cache_position)
        else:
            k_all, v_all = k, v
        scale = 1.0 / math.sqrt(self.head_dim)
        groups = self.num_heads // self.num_kv_heads
        layer_stats = None
        if stats is not None and stats.share_probs:
            attn, layer_stats = attention_with_statistics(q, k_all, v_all, mask, stats, scale)
        else:
            k_rep = k_all.repeat_interleave(groups, dim=1) if groups > 1 else k_all
            v_rep = v_all.repeat_interleave(groups, dim=1) if groups > 1 else v_all
            attn = F.scaled_dot_product_attention(q, k_rep, v_rep, attn_mask=mask, scale=scale)
            if stats is not None:
                layer_stats = attention_statistics(q, k_all, mask, stats, scale)
        attn = attn.transpose(1, 2).reshape(bsz, n, self.num_heads * self.head_dim)
        x = x + self.part("o")(attn)
        h = self.part("mlp_norm")(x)
        x = x + self.part("down")(F.silu(self.part("gate")(h)) * self.part("up")(h))
        return x, (k_all, v_all), layer_stats


@dataclass
class DiffusionLMOutput(ModelOutput):
    """Output of every native family's forward (see docs/ARCHITECTURE.md section 1)."""

    logits: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attn_stats: AttnStats | None = None


class DiffusionLM(PreTrainedModel):
    """Shared forward of the native families. Subclasses build their modules and implement
    ``_parts()`` -> ``(embedding, layers, final_norm, lm_head_weight_module)``."""

    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules: list[str] = []
    #: full-precision RoPE application (LLaDA) vs cos/sin cast to the activation dtype (Qwen)
    rope_full_precision = False

    def __init__(self, config: Any) -> None:
        config.check_supported()
        super().__init__(config)
        self.gradient_checkpointing = False

    # -- family hooks ------------------------------------------------------------------------
    def _parts(self) -> tuple[nn.Embedding, nn.ModuleList, nn.Module, nn.Module]:
        raise NotImplementedError

    def default_attention_mask(
        self, q_positions: torch.Tensor, n_keys: int, device: torch.device
    ) -> torch.Tensor | None:
        """Structural mask ``[n, n_keys]`` (True = may attend) over absolute positions, or None
        for full bidirectional attention. SDAR overrides this with its block-causal pattern."""
        return None

    # -- HF plumbing -------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self._parts()[0]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        raise NotImplementedError("replacing the embedding of a native dLLM is not supported")

    def get_output_embeddings(self) -> nn.Module | None:
        head = self._parts()[3]
        return head if isinstance(head, nn.Linear) else None

    def can_generate(self) -> bool:  # generation goes through dllm_eval.generate
        return False

    def _init_weights(self, module: nn.Module) -> None:
        std = getattr(self.config, "initializer_range", None) or getattr(self.config, "init_std", 0.02)
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)
        elif isinstance(module, RMSNorm):
            module.weight.data.fill_(1.0)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.from_pretrained`` that refuses checkpoints with missing weights or
        mismatched shapes (ValueError naming the parameters) instead of initialising them randomly."""
        want_info = kwargs.pop("output_loading_info", False)
        if args and Path(str(args[0])).is_dir() and not kwargs.get("subfolder"):
            cls._check_checkpoint(Path(str(args[0])), kwargs.get("config"))
        try:
            model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        except RuntimeError as err:
            if "size mismatch" in str(err):
                raise ValueError(f"checkpoint does not fit the {cls.__name__} config: {err}") from err
            raise
        problems = []
        if info.get("missing_keys"):
            problems.append(f"missing weights: {sorted(info['missing_keys'])}")
        if info.get("mismatched_keys"):
            shapes = [f"{name}: checkpoint {tuple(a)} vs model {tuple(b)}" for name, a, b in info["mismatched_keys"]]
            problems.append(f"shape mismatch: {shapes}")
        if problems:
            raise ValueError(f"cannot load {cls.__name__} from {args[0] if args else kwargs}: " + "; ".join(problems))
        return (model, info) if want_info else model

    @classmethod
    def _check_checkpoint(cls, folder: Path, config: Any = None) -> None:
        """Compare the safetensors headers of ``folder`` with the parameters the config implies
        (names and shapes, no tensor is read); ValueError naming every problem."""
        shapes = checkpoint_shapes(folder)
        if shapes is None:
            return
        if not isinstance(config, cls.config_class):
            config = cls.config_class.from_pretrained(folder)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
        problems = []
        missing = sorted(set(expected) - set(shapes))
        if missing:
            problems.append(f"missing weights: {missing}")
        wrong = [
            f"{name}: checkpoint {shapes[name]} vs model {shape}"
            for name, shape in expected.items()
            if name in shapes and shapes[name] != shape
        ]
        if wrong:
            problems.append(f"shape mismatch: {wrong}")
        unexpected = sorted(set(shapes) - set(expected))
        if unexpected:
            problems.append(f"unexpected weights: {unexpected}")
        if problems:
            raise ValueError(f"cannot load {cls.__name__} from {folder}: " + "; ".join(problems))

    # -- forward -----------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: KVCache | None = None,
        cache_position: int = 0,
        use_cache: bool = False,
        attn_stats: AttnStatsRequest | None = None,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
        logits_to_keep: int | slice | torch.Tensor = 0,
    ) -> DiffusionLMOutput:
        """Raw logits ``[B, n, V]`` for ``input_ids`` placed at absolute positions
        ``cache_position + arange(n)`` (see docs/ARCHITECTURE.md section 1 for every argument)."""
        embed, layers, final_norm, head = self._parts()
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids has shape {tuple(input_ids.shape)} (accepted: [B, n])")
        bsz, n = input_ids.shape
        device = input_ids.device
        cache_position = int(cache_position)
        if past_key_values is not None and not isinstance(past_key_values, KVCache):
            raise ValueError(
                f"past_key_values of type {type(past_key_values).__name__} is not supported (accepted: KVCache or None)"
            )
        cache = past_key_values if past_key_values is not None and past_key_values.num_layers else None
        if cache is not None:
            if cache.num_layers != len(layers):
                raise ValueError(f"KVCache has {cache.num_layers} layers, the model {len(layers)}")
            cache.mode(cache_position, n)  # validates
            n_keys = max(len(cache), cache_position + n)
        else:
            if cache_position != 0:
                raise ValueError(f"cache_position={cache_position} needs past_key_values (accepted: 0 without a cache)")
            n_keys = n
        if position_ids is None:
            position_ids = (torch.arange(n, device=device) + cache_position)[None].expand(bsz, -1)
        mask = self._build_mask(attention_mask, bsz, n, n_keys, cache_position, device)
        stats_layers: tuple[int, ...] = ()
        if attn_stats is not None:
            stats_layers = _resolve_stats_request(attn_stats, len(layers), self.config.num_attention_heads)

        x = embed(input_ids)
        cos, sin = rope_cos_sin(position_ids, layers[0].head_dim, float(self.config.rope_theta))
        hidden: list[torch.Tensor] = []
        new_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        layer_out: dict[int, tuple] = {}
        for i, layer in enumerate(layers):
            if output_hidden_states:
                hidden.append(x)
            req = attn_stats if i in stats_layers else None
            args = (x, cos, sin, mask, cache, i, cache_position, req)
            if self.gradient_checkpointing and self.training:
                x, kv, layer_stats = self._gradient_checkpointing_func(layer.__call__, *args)
            else:
                x, kv, layer_stats = layer(*args)
            if use_cache:
                new_cache.append(kv)
            if layer_stats is not None:
                layer_out[i] = layer_stats
        x = final_norm(x)
        if output_hidden_states:
            hidden.append(x)
        # logits_to_keep (transformers' convention): an int N > 0 keeps the last N positions, a
        # slice or a 1-D index tensor the positions it selects; 0 keeps all. The output head is
        # then only applied there (diffusion decoding needs one block's logits per forward).
        if isinstance(logits_to_keep, slice):
            x = x[:, logits_to_keep]
        elif isinstance(logits_to_keep, torch.Tensor):
            x = x.index_select(1, logits_to_keep.to(x.device).long())
        elif int(logits_to_keep) > 0:
            x = x[:, -int(logits_to_keep):]
        elif int(logits_to_keep) < 0:
            raise ValueError(f"logits_to_keep={logits_to_keep} is invalid (accepted: an int >= 0, a slice or an index tensor)")
        logits = F.linear(x, head.weight)
        stats = None
        if attn_stats is not None:
            def gather(j: int) -> torch.Tensor:
                if len(stats_layers) == 1:
                    return layer_out[stats_layers[0]][j].unsqueeze(0)
                return torch.stack([layer_out[i][j] for i in stats_layers])

            stats = AttnStats(
                col_sum=gather(0) if attn_stats.col_sums else None,
                row_sum=None if attn_stats.key_mask is None else gather(1),
                layers=stats_layers,
                probs=gather(2) if attn_stats.return_probs else None,
            )
        return DiffusionLMOutput(
            logits=logits,
            past_key_values=KVCache(new_cache) if use_cache else None,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attn_stats=stats,
        )

    def _build_mask(
        self,
        attention_mask: torch.Tensor | None,
        bsz: int,
        n: int,
        n_keys: int,
        cache_position: int,
        device: torch.device,
    ) -> torch.Tensor | None:
        """Bool mask broadcastable to ``[B, 1, n, n_keys]`` (True = may attend) or None.

        A 2-D ``[B, n_keys]`` padding mask (1 = real token) is combined with the family's
        structural mask (SDAR block-causal); a 3-D/4-D mask is taken as the complete pattern."""
        if attention_mask is not None and attention_mask.dim() in (3, 4):
            m = attention_mask if attention_mask.dim() == 4 else attention_mask[:, None]
            if m.shape[-2:] != (n, n_keys) or m.shape[0] not in (1, bsz) or m.shape[1] != 1:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} (accepted: [B, n_keys], "
                    f"[B, n, n_keys] or [B, 1, n, n_keys] with B={bsz}, n={n}, n_keys={n_keys})"
                )
            m = m.to(device).bool()
            return None if bool(m.all()) else m
        positions = torch.arange(n, device=device) + cache_position
        structural = self.default_attention_mask(positions, n_keys, device)
        mask = None if structural is None else structural[None, None]
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape != (bsz, n_keys):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} (accepted: [B, n_keys] = "
                    f"[{bsz}, {n_keys}], [B, n, n_keys] or [B, 1, n, n_keys])"
                )
            keys = attention_mask.to(device).bool()[:, None, None, :]
            mask = keys if mask is None else (mask & keys)
        if mask is not None and bool(mask.all()):
            return None
        return mask
