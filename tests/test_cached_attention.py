"""Attention samplers with KV caches: statistics of the current block's query rows, from cached forwards.

Truth: the head-mean attention probabilities of a plain, uncached forward (``return_probs``,
checked against the reference models' golden probabilities in test_models.py), summed by hand.
For SDAR the prefix cache is exact (earlier blocks never see later ones), so every step's scores
must match an uncached forward of the sequence so far; for LLaDA/Dream the first forward of each
block is a full one, so its scores must match, and the later (cached) steps must request
statistics for the block's rows only.
"""

from __future__ import annotations

import pytest
import torch
from dllm_eval import generate
from dllm_eval.harness.models.common import AttnStatsRequest
from dllm_eval.samplers.agdo import AgdoSampler
from dllm_eval.samplers.attn import AttnSampler

TOL = 1e-5


@pytest.fixture(scope="module")
def loaded(tiny_models):
    from dllm_eval.harness.loading import load

    return {fam: load(str(path), dtype="float32")[::2] for fam, path in tiny_models.items()}


def _record(monkeypatch, model, sampler_cls):
    """Capture every forward's input ids / kwargs and every (state, scores) of the sampler."""
    calls, steps = [], []
    forward = model.forward

    def spy_forward(input_ids, **kw):
        out = forward(input_ids, **kw)
        calls.append((input_ids.clone(), kw))
        return out

    score = sampler_cls.score

    def spy_score(self, state):
        s = score(self, state)
        steps.append((state, s.clone(), len(calls)))
        return s

    monkeypatch.setattr(model, "forward", spy_forward)
    monkeypatch.setattr(sampler_cls, "score", spy_score)
    return calls, steps


def _reference_probs(model, x: torch.Tensor) -> torch.Tensor:
    """[B, n, n] head-mean last-layer probabilities of an uncached forward of ``x``."""
    with torch.no_grad():
        out = model(x, attn_stats=AttnStatsRequest(layers=(-1,), return_probs=True))
    return out.attn_stats.probs[0].double()


def _expected(sampler: str, probs: torch.Tensor, x: torch.Tensor, lo: int, hi: int, mask_id: int) -> torch.Tensor:
    """Hand-computed scores of block [lo, hi) from full probabilities over the block's query rows."""
    rows = probs[:, lo:hi]  # [B, bl, n_keys]
    if sampler == "attn":  # column sums over the block's query rows, at the block's columns
        return rows.sum(1)[:, lo:hi]
    known = (x[:, : probs.shape[-1]] != mask_id).double()
    return (rows * known[:, None, :]).sum(-1)  # AGDO: each block row's mass on known keys


@pytest.mark.parametrize("sampler", ["attn", "agdo"])
def test_sdar_prefix_cache_scores_equal_uncached_attention(loaded, monkeypatch, sampler) -> None:
    model, adapter = loaded["sdar"]
    bl = int(adapter.block_size)
    prompt = torch.tensor([[65 + i for i in range(bl + 3)], [90 + i for i in range(bl + 3)]])
    cls = AttnSampler if sampler == "attn" else AgdoSampler
    calls, steps = _record(monkeypatch, model, cls)
    res = generate(model, prompt, adapter=adapter, gen_length=2 * bl, steps=2 * bl, sampler=sampler)
    final = res.sequences
    masked = -(-(prompt.shape[1] + 2 * bl) // bl) * bl - prompt.shape[1]  # absolute blocks
    assert len(steps) == masked  # one sampler call per denoising forward (1 token per step)
    for state, scores, n_calls in steps:
        block_ids, kw = calls[n_calls - 1]
        lo = int(state.positions[0, 0])
        hi = lo + block_ids.shape[1]
        rows = kw["attn_stats"].query_index  # the forward runs the block only: all its rows
        assert rows is None or rows.tolist() == list(range(block_ids.shape[1]))
        x = torch.cat([final[:, :lo], block_ids], dim=1)  # earlier blocks are final in SDAR
        want = _expected(sampler, _reference_probs(model, x), x, lo, hi, adapter.mask_id)
        assert (scores - want).abs().max().item() <= TOL


@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
@pytest.mark.parametrize("sampler", ["attn", "agdo"])
@pytest.mark.parametrize("fam", ["llada", "dream"])
def test_bidirectional_cached_attention_samplers(loaded, monkeypatch, fam, sampler, kv_cache) -> None:
    model, adapter = loaded[fam]
    prompt = torch.tensor([[65, 66, 67, 68, 69, 70]])
    bl, gen = 4, 12
    cls = AttnSampler if sampler == "attn" else AgdoSampler
    calls, steps = _record(monkeypatch, model, cls)
    res = generate(model, prompt, adapter=adapter, gen_length=gen, block_length=bl, steps=gen,
                   sampler=sampler, kv_cache=kv_cache)
    assert not bool((res.sequences == adapter.mask_id).any())
    assert res.nfe == gen and len(steps) == gen
    lead = 1 if adapter.shift_logits else 0
    p = prompt.shape[1]
    for j, (state, scores, n_calls) in enumerate(steps):
        ids, kw = calls[n_calls - 1]
        lo = p + (j // bl) * bl
        assert state.positions[0].tolist() == list(range(lo, lo + bl))
        req = kw["attn_stats"]
        if j % bl == 0:  # the block's full forward: exact statistics of the block's rows
            assert ids.shape[1] == p + gen and "past_key_values" not in kw
            assert req.query_index.tolist() == list(range(lo, lo + bl))
            want = _expected(sampler, _reference_probs(model, ids), ids, lo, lo + bl, adapter.mask_id)
            assert (scores - want).abs().max().item() <= TOL
        else:  # cached forward: only the block's rows (after the shifted-logits lead) are scored
            width = (p + gen if kv_cache == "prefix" else lo + bl) - (lo - lead)
            assert ids.shape[1] == width
            rows = list(range(width)) if req.query_index is None else req.query_index.tolist()
            assert rows == list(range(lead, lead + bl))
            if sampler == "agdo":  # the key mask spans every key, cached ones included
                assert req.key_mask.shape == (1, p + gen)
        assert bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("sampler", ["attn", "agdo"])
def test_cached_attention_batched_equals_one_by_one(loaded, sampler) -> None:
    model, adapter = loaded["llada"]
    prompts = [[65, 66, 67, 68, 69, 70, 71], [80, 81, 82]]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[adapter.pad_id] * (width - len(p)) + p for p in prompts])
    am = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    options = dict(gen_length=8, steps=8, block_length=4, sampler=sampler, kv_cache="dual")
    batched = generate(model, ids, attention_mask=am, adapter=adapter, **options)
    for r, p in enumerate(prompts):
        alone = generate(model, torch.tensor([p]), adapter=adapter, **options)
        assert batched.sequences[r, width:].tolist() == alone.sequences[0, len(p):].tolist()


def test_attn_parallel_dominance_with_dual_cache(loaded) -> None:
    model, adapter = loaded["llada"]
    res = generate(model, torch.tensor([[65, 66, 67, 68, 69]]), adapter=adapter, gen_length=8,
                   block_length=4, steps=8, sampler="attn", commit="dominance", threshold=0.5,
                   kv_cache="dual")
    counts = [len(t["committed"][0]) for t in res.stats["trace"]]
    assert all(c >= 1 for c in counts) and sum(counts) == 8


@pytest.mark.parametrize("query", ["masked", "unmasked"])
@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
def test_attn_query_rows_with_cache_are_the_blocks(loaded, monkeypatch, kv_cache, query) -> None:
    model, adapter = loaded["llada"]
    prompt = torch.tensor([[65, 66, 67, 68, 69, 70]])
    p, bl, gen = 6, 4, 8
    calls, steps = _record(monkeypatch, model, AttnSampler)
    generate(model, prompt, adapter=adapter, gen_length=gen, block_length=bl, steps=gen, sampler="attn",
             attn_query=query, kv_cache=kv_cache)
    assert len(steps) == gen
    for j, (state, _, n_calls) in enumerate(steps):
        _, kw = calls[n_calls - 1]
        start = p + (j // bl) * bl if j % bl == 0 else 0  # full forward: absolute rows; cached: block first
        masked = state.eligible[0]  # the block's mask positions before this step's commit
        want = torch.nonzero(masked if query == "masked" else ~masked).flatten() + start
        got = kw["attn_stats"].query_index
        if want.numel() == 0:  # no such row in the block yet: every row of the block
            want = torch.arange(bl) + start
        rows = torch.arange(kw["attn_stats"].query_index.shape[-1]) if got is None else got.flatten()
        assert rows.tolist() == want.tolist()
