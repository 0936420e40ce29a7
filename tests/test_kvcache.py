"""KV cache (Fast-dLLM prefix and dual modes) of the native models against uncached forwards.

Where cached and uncached forwards must agree (up to float reassociation: fixtures README tolerances), and why:
- prefix or dual cache built by a full forward over the SAME sequence: every cached key/value is
  exactly what the uncached forward computes, so the block's logits (and attention statistics)
  agree, for every family;
- after the current block has changed (tokens committed since the cache was built), LLaDA and
  Dream (bidirectional) legitimately differ from an uncached forward in layers >= 1: the cached
  prefix (and, for dual, suffix) keys/values were computed while attending to the OLD block. Only
  the first layer's keys/values (token + position only) stay exact. This is the Fast-dLLM
  approximation and the test asserts the difference is real;
- SDAR (block-causal): keys of earlier blocks never see later blocks, so a prefix cache of earlier
  blocks stays exact after the current block changes, and building the cache block by block
  (the bd3 sampler's store_kv pattern) equals the full forward's cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dllm_eval.harness.loading import load_model
from dllm_eval.harness.models import AttnStatsRequest, KVCache

FAMILIES = ("llada", "dream", "sdar")
TOL = 1e-5  # keys/values and attention statistics
LOGIT_TOL = 1e-4  # logits reach |40|: float32 reassociation noise is ~1e-5 there (README tolerance)


@pytest.fixture(scope="module")
def tiny(fixtures_dir: Path) -> dict[str, torch.nn.Module]:
    return {fam: load_model(fixtures_dir / f"{fam}-tiny", dtype="float32") for fam in FAMILIES}


def _ids(seed: int, bsz: int = 2, n: int = 24) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 900, (bsz, n), generator=gen)
    ids[:, 12:] = 1010  # masked "generation" region, as during decoding
    return ids


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
@pytest.mark.parametrize("fam", FAMILIES)
def test_cache_from_full_forward_matches_on_block(tiny, fam: str) -> None:
    model = tiny[fam]
    x = _ids(1)
    full = model(x, use_cache=True)
    cache = full.past_key_values
    assert isinstance(cache, KVCache) and len(cache) == x.shape[1] and cache.num_layers == 2
    k0 = cache.layers[0][0]
    assert k0.shape == (2, model.config.num_key_value_heads, 24, model.config.head_dim)
    start, stop = 12, 16
    # prefix mode: the prefix cache plus everything from the block on (Fast-dLLM prefix cache)
    prefix = cache.truncate(start)
    assert len(prefix) == start
    out = model(x[:, start:], past_key_values=prefix, cache_position=start, use_cache=True)
    assert _diff(out.logits, full.logits[:, start:]) <= LOGIT_TOL
    assert len(out.past_key_values) == 24
    # dual mode: only the block's queries, all other keys/values from the cache
    out = model(x[:, start:stop], past_key_values=cache, cache_position=start, use_cache=True)
    assert _diff(out.logits, full.logits[:, start:stop]) <= LOGIT_TOL
    new = out.past_key_values
    assert len(new) == 24
    for (k_old, v_old), (k_new, v_new) in zip(cache.layers, new.layers):
        # outside the block the dual cache is carried over bit-identically
        assert torch.equal(k_new[:, :, :start], k_old[:, :, :start])
        assert torch.equal(v_new[:, :, stop:], v_old[:, :, stop:])
        assert (k_new[:, :, start:stop] - k_old[:, :, start:stop]).abs().max() <= TOL
    # attention statistics with a cache: block rows of the uncached forward
    key_mask = torch.zeros(2, 24, dtype=torch.bool)
    key_mask[:, :start] = True
    req = AttnStatsRequest(layers=(0, 1), key_mask=key_mask)
    cached = model(x[:, start:stop], past_key_values=cache, cache_position=start, attn_stats=req).attn_stats
    rows = torch.arange(start, stop)
    ref = model(x, attn_stats=AttnStatsRequest(layers=(0, 1), key_mask=key_mask, query_index=rows)).attn_stats
    assert _diff(cached.col_sum, ref.col_sum) <= TOL
    assert _diff(cached.row_sum, ref.row_sum) <= TOL


@torch.no_grad()
@pytest.mark.parametrize("fam", ["llada", "dream"])
def test_stale_cache_differs_for_bidirectional_models(tiny, fam: str) -> None:
    model = tiny[fam]
    x = _ids(2)
    cache = model(x, use_cache=True).past_key_values
    start, stop = 12, 16
    y = x.clone()
    y[:, start : start + 2] = torch.tensor([5, 77])  # two tokens committed in the current block
    truth = model(y).logits
    prefix = model(y[:, start:], past_key_values=cache.truncate(start), cache_position=start).logits
    dual = model(y[:, start:stop], past_key_values=cache, cache_position=start).logits
    # legitimately different: layer-1 keys/values of the cached positions attended the old block
    assert _diff(prefix, truth[:, start:]) > 1e-3
    assert _diff(dual, truth[:, start:stop]) > 1e-3
    # the first layer's keys/values depend on token and position only: exact in the cache
    first = model(y, use_cache=True).past_key_values
    assert _diff(first.layers[0][0][:, :, :start], cache.layers[0][0][:, :, :start]) == 0.0
    # refreshing the cache with the new sequence restores agreement
    fresh = model(y, use_cache=True).past_key_values
    again = model(y[:, start:stop], past_key_values=fresh, cache_position=start).logits
    assert _diff(again, truth[:, start:stop]) <= LOGIT_TOL


@torch.no_grad()
def test_sdar_prefix_cache_stays_exact(tiny) -> None:
    model = tiny["sdar"]
    bs = model.config.block_size
    x = _ids(3)
    start = 12  # block-aligned current block [12, 16)
    # cache of the prompt blocks only, built block by block (bd3's store_kv pattern)
    cache = KVCache()
    for b in range(0, start, bs):
        cache = model(x[:, b : b + bs], past_key_values=cache, cache_position=b, use_cache=True).past_key_values
    full = model(x[:, :start], use_cache=True).past_key_values
    for (k1, v1), (k2, v2) in zip(cache.layers, full.layers):
        assert _diff(k1, k2) <= TOL and _diff(v1, v2) <= TOL
    # commit tokens in the current block: the prefix cache is still exact (block-causal)
    y = x.clone()
    y[:, start : start + 2] = torch.tensor([5, 77])
    truth = model(y).logits
    out = model(y[:, start : start + bs], past_key_values=cache, cache_position=start)
    assert _diff(out.logits, truth[:, start : start + bs]) <= LOGIT_TOL
    # dual mode with a stale suffix: later blocks are masked anyway, so still exact
    stale = model(x, use_cache=True).past_key_values
    dual = model(y[:, start : start + bs], past_key_values=stale, cache_position=start).logits
    assert _diff(dual, truth[:, start : start + bs]) <= LOGIT_TOL


@torch.no_grad()
def test_cache_errors_and_utilities(tiny) -> None:
    model = tiny["llada"]
    x = _ids(4)
    cache = model(x[:, :10], use_cache=True).past_key_values
    with pytest.raises(ValueError, match="cache_position=11"):
        model(x[:, 11:14], past_key_values=cache, cache_position=11)
    with pytest.raises(ValueError, match="cache_position=8"):
        model(x[:, 8:14], past_key_values=cache, cache_position=8)  # overlaps the end
    with pytest.raises(ValueError, match="truncate"):
        cache.truncate(11)
    one = cache.select([1])
    assert len(one) == 10 and one.layers[0][0].shape[0] == 1
    assert torch.equal(one.layers[1][1][0], cache.layers[1][1][1])
    # an empty cache behaves like no cache
    plain = model(x).logits
    assert torch.equal(model(x, past_key_values=KVCache(), cache_position=0).logits, plain)
