"""Speed-ups that must not change results: shared attention probabilities and early stopping.

Truth: the reference goldens of ``../shared/fixtures`` (logits within 1e-4, attention
probabilities within 1e-5), the SDPA + separate-statistics forward (statistics within 1e-5), the
decoding without the speed-up (identical tokens; with ``early_stop`` identical up to the first
stop id), and NFE values counted by hand from the decoding trace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dllm_eval.harness.loading import load_model
from dllm_eval.harness.models import AttnStatsRequest
from dllm_eval.samplers import engine
from dllm_eval.samplers.config import DecodeConfig
from dllm_eval.samplers.engine import generate
from safetensors.torch import load_file

FAMILY_DIRS = ("llada", "dream", "sdar")
LOGIT_TOL = 1e-4
PROB_TOL = 1e-5


@pytest.fixture(scope="module")
def fixture_models(fixtures_dir: Path) -> dict[str, torch.nn.Module]:
    return {fam: load_model(fixtures_dir / f"{fam}-tiny", dtype="float32").eval() for fam in FAMILY_DIRS}


@pytest.fixture(scope="module")
def loaded(tiny_models):
    from dllm_eval.harness.loading import load

    return {fam: load(str(path), dtype="float32")[::2] for fam, path in tiny_models.items()}


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# -- 1. shared attention probabilities ----------------------------------------------------------


@pytest.mark.parametrize("fam", FAMILY_DIRS)
def test_shared_probs_match_goldens_and_separate_statistics(fixture_models, fixtures_dir: Path, fam: str) -> None:
    g = load_file(str(fixtures_dir / f"{fam}-tiny" / "golden_forward.safetensors"))
    model = fixture_models[fam]
    ids = g["input_ids"]
    kw = {"attention_mask": g["attention_mask"]} if fam == "sdar" else {}
    bsz, n = ids.shape
    golden_mean = g["attn_probs"].double().mean(dim=2)  # head mean [layers, B, n, n]
    key_mask = torch.rand(bsz, n, generator=torch.Generator().manual_seed(0)) > 0.5
    rows = torch.tensor([[0, 3, 3, n - 1]] * bsz)
    requests = [
        AttnStatsRequest(),
        AttnStatsRequest(layers=(0, -1), key_mask=key_mask, return_probs=True),
        AttnStatsRequest(layers=(1,), query_index=rows, key_mask=key_mask, heads=(0, 2), return_probs=True),
    ]
    with torch.no_grad():
        for req in requests:
            plain = model(ids, attn_stats=req, **kw)
            shared = model(ids, attn_stats=AttnStatsRequest(**{**req.__dict__, "share_probs": True}), **kw)
            assert _diff(shared.logits, g["logits"]) <= LOGIT_TOL
            assert _diff(shared.logits, plain.logits) <= LOGIT_TOL
            assert shared.attn_stats.layers == plain.attn_stats.layers
            assert _diff(shared.attn_stats.col_sum, plain.attn_stats.col_sum) <= PROB_TOL
            for name in ("row_sum", "probs"):
                a, b = getattr(shared.attn_stats, name), getattr(plain.attn_stats, name)
                assert (a is None) == (b is None)
                if a is not None:
                    assert a.shape == b.shape and _diff(a, b) <= PROB_TOL
        # against the golden probabilities directly: all rows, all heads, both layers
        req = AttnStatsRequest(layers=(0, 1), return_probs=True, share_probs=True)
        stats = model(ids, attn_stats=req, **kw).attn_stats
        assert _diff(stats.probs, golden_mean) <= PROB_TOL
        assert _diff(stats.col_sum, golden_mean.sum(dim=2)) <= PROB_TOL * n


def test_shared_probs_padded_dream(fixture_models, fixtures_dir: Path) -> None:
    """Padding queries are fully masked by the 4-D mask: every row still matches the reference."""
    g = load_file(str(fixtures_dir / "dream-tiny" / "golden_forward.safetensors"))
    req = AttnStatsRequest(layers=(0, 1), return_probs=True, share_probs=True)
    with torch.no_grad():
        out = fixture_models["dream"](g["padded_input_ids"], attention_mask=g["padded_attention_mask_4d"],
                                      position_ids=g["padded_position_ids"], attn_stats=req)
    assert _diff(out.logits, g["padded_logits"]) <= LOGIT_TOL
    assert _diff(out.attn_stats.probs, g["padded_attn_probs"].double().mean(dim=2)) <= PROB_TOL


def test_shared_probs_skip_sdpa_only_in_requested_layers(fixture_models, monkeypatch) -> None:
    from dllm_eval.harness.models import common

    calls = {"sdpa": 0}
    sdpa = common.F.scaled_dot_product_attention

    def count_sdpa(*a, **k):
        calls["sdpa"] += 1
        return sdpa(*a, **k)

    monkeypatch.setattr(common.F, "scaled_dot_product_attention", count_sdpa)
    with torch.no_grad():
        fixture_models["llada"](torch.zeros(1, 8, dtype=torch.long), attn_stats=AttnStatsRequest(share_probs=True))
    assert calls["sdpa"] == 1  # 2 layers, the last one attends eagerly


@pytest.mark.parametrize("sampler,query", [("attn", "all"), ("agdo", "all"), ("attn", "masked")])
@pytest.mark.parametrize("fam", ["llada", "dream"])
def test_engine_shares_probs_without_changing_tokens(loaded, monkeypatch, fam, sampler, query) -> None:
    model, adapter = loaded[fam]
    prompts = [[65, 66, 67, 68, 69, 70, 71], [80, 81, 82]]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[adapter.pad_id] * (width - len(p)) + p for p in prompts])
    am = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    options = dict(gen_length=8, steps=8, block_length=4, sampler=sampler, attn_query=query)
    seen: list[bool] = []
    share = engine._share_probs

    def record(req, n):
        req = share(req, n)
        seen.append(req.share_probs)
        return req

    monkeypatch.setattr(engine, "_share_probs", record)
    fast = generate(model, ids, attention_mask=am, adapter=adapter, **options)
    monkeypatch.setattr(engine, "_share_probs", lambda req, n: req)
    slow = generate(model, ids, attention_mask=am, adapter=adapter, **options)
    assert torch.equal(fast.sequences, slow.sequences)
    assert fast.nfe == slow.nfe == 8
    # all rows / AGDO: shared; masked rows: shared while at least half the rows are masked
    # (attn over all rows asks the same at every step: the engine builds that request once)
    assert seen[0] and (query == "masked" or all(seen))
    assert len(seen) == (1 if (sampler, query) == ("attn", "all") else 8)


# -- 2. early stop --------------------------------------------------------------------------


class _Adapter:
    name = "mock"
    mask_id = 50
    eos_ids = (3,)
    eot_id = None
    pad_id = 0
    bos_id = None
    shift_logits = False
    block_size = None
    supports_attention = False

    def align_logits(self, raw):
        return raw


class _Out:
    def __init__(self, logits):
        self.logits, self.past_key_values, self.attn_stats = logits, None, None


class _EosModel(torch.nn.Module):
    """A masked position at generated column c proposes EOS (3) when c equals the row's first
    prompt token, else ``10 + c``; confidence falls with c, so 1-token steps go left to right."""

    def __init__(self, prompt_len: int) -> None:
        super().__init__()
        self.p = prompt_len
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, attention_mask=None, position_ids=None, use_cache=False, **kw):
        b, n = x.shape
        col = torch.arange(n)[None].expand(b, -1) - self.p
        target = torch.where(col == x[:, :1], torch.full_like(col, 3), 10 + col.clamp(min=0))
        target = torch.where(x == 50, target, x)
        logits = torch.full((b, n, 64), -5.0)
        logits.scatter_(-1, target[..., None], (30.0 - 0.5 * col.clamp(min=0)).float()[..., None])
        return _Out(logits)


def _truncate(gen: torch.Tensor, stop_ids: tuple[int, ...]) -> list[list[int]]:
    out = []
    for row in gen.tolist():
        cut = next((j for j, t in enumerate(row) if t in stop_ids), len(row))
        out.append(row[: cut + 1])
    return out


def test_early_stop_mock_rows_stop_at_their_eos() -> None:
    ids = torch.tensor([[5, 1, 2], [2, 1, 2], [30, 1, 2]])  # EOS at column 5, 2, never
    model, adapter = _EosModel(3), _Adapter()
    options = dict(gen_length=16, steps=16, block_length=8)
    base = generate(model, ids, adapter=adapter, **options)
    fast = generate(model, ids, adapter=adapter, early_stop=True, **options)
    assert _truncate(fast.sequences[:, 3:], (3,)) == _truncate(base.sequences[:, 3:], (3,))
    assert fast.sequences[0, 3:].tolist() == [10, 11, 12, 13, 14, 3] + [0] * 10
    assert fast.sequences[1, 3:].tolist() == [10, 11, 3] + [0] * 13
    assert fast.sequences[2].tolist() == base.sequences[2].tolist()
    assert base.stats["nfe_rows"] == [16, 16, 16] and base.nfe == 16
    assert fast.stats["nfe_rows"] == [6, 3, 16] and fast.stats["stopped"] == [True, True, False]
    # finished rows cost no compute: 3 rows run until row 1 stops, 2 until row 0 stops, then 1
    assert base.stats["forward_rows"] == [3] * 16
    assert fast.stats["forward_rows"] == [3] * 3 + [2] * 3 + [1] * 10
    # all rows stopped: the loop ends (row 1 alone stops after 3 forwards)
    alone = generate(model, ids[1:2], adapter=adapter, early_stop=True, **options)
    assert alone.nfe == 3 and alone.sequences[0, 3:].tolist() == [10, 11, 3] + [0] * 13


def _prefix_done_steps(trace: list[dict], row: int, p: int, gen: int) -> tuple[list[int], list[int]]:
    """For each generated column j: the step committing it, and the step after which columns
    0..j were all committed."""
    when = [0] * gen
    for step, t in enumerate(trace):
        for pos in t["committed"][row]:
            if p <= pos < p + gen:
                when[pos - p] = step
    done, worst = [], -1
    for j in range(gen):
        worst = max(worst, when[j])
        done.append(worst)
    return when, done


@pytest.mark.parametrize("fam,kv", [("llada", None), ("llada", "dual"), ("dream", None), ("sdar", None)])
def test_early_stop_tiny_models_same_answer_fewer_forwards(loaded, fam, kv) -> None:
    model, adapter = loaded[fam]
    prompt = [65, 66, 67, 68, 69, 70, 71, 72]
    ids = torch.tensor([prompt])
    p, gen = len(prompt), 16
    options = dict(gen_length=gen, steps=gen, block_length=8, kv_cache=kv)
    base = generate(model, ids, adapter=adapter, **options)
    tokens = base.sequences[0, p:p + gen].tolist()
    when, done = _prefix_done_steps(base.stats["trace"], 0, p, gen)
    # force a stop id: the generated token whose prefix completes first (and is new there)
    j = min((j for j in range(gen - 1) if tokens[j] not in tokens[:j]), key=lambda j: done[j])
    stop = (tokens[j],)
    assert done[j] < gen - 1, "the fixture decodes so that some prefix completes early"
    ref = generate(model, ids, adapter=adapter, stop_ids=stop, **options)
    assert torch.equal(ref.sequences, base.sequences)  # stop_ids alone changes nothing
    fast = generate(model, ids, adapter=adapter, stop_ids=stop, early_stop=True, **options)
    assert _truncate(fast.sequences[:, p:], stop) == _truncate(base.sequences[:, p:], stop)
    # after the stop: what was committed by then, the pad id elsewhere
    expected = [tokens[c] if when[c] <= done[j] else adapter.pad_id for c in range(j + 1, gen)]
    assert fast.sequences[0, p + j + 1:p + gen].tolist() == expected
    assert set(fast.sequences[0, p + gen:].tolist()) <= {adapter.pad_id}
    assert fast.stats["stopped"] == [True]
    assert fast.nfe < base.nfe
    if fam != "sdar":  # bidirectional: one forward per step (the dual cache's block starts included)
        assert fast.nfe == done[j] + 1
    # batched with a left-padded second row: row 0 unchanged, rows stop independently
    ids2 = torch.tensor([prompt, [adapter.pad_id] * 3 + prompt[3:]])
    am2 = torch.tensor([[1] * p, [0] * 3 + [1] * (p - 3)])
    b_base = generate(model, ids2, attention_mask=am2, adapter=adapter, stop_ids=stop, **options)
    b_fast = generate(model, ids2, attention_mask=am2, adapter=adapter, stop_ids=stop, early_stop=True, **options)
    assert _truncate(b_fast.sequences[:, p:], stop) == _truncate(b_base.sequences[:, p:], stop)
    width = fast.sequences.shape[1]  # block-causal rows of other lengths may widen the batch (pad)
    assert b_fast.sequences[0, :width].tolist() == fast.sequences[0].tolist()
    assert set(b_fast.sequences[0, width:].tolist()) <= {adapter.pad_id}


def test_early_stop_option_is_validated() -> None:
    assert DecodeConfig(early_stop="true").early_stop is True
    assert DecodeConfig().early_stop is False
    with pytest.raises(ValueError, match="early_stop"):
        DecodeConfig(early_stop="sometimes")


# -- 3. finished rows cost no compute in batched decoding ----------------------------------------


@pytest.mark.parametrize("fam, options", [
    ("llada", dict(commit="threshold", threshold=0.3)),
    ("llada", dict(sampler="attn", commit="threshold", threshold=0.3)),
    ("llada", dict(commit="threshold", threshold=0.3, cfg_scale=0.5)),
    # cached plans: the cached forwards run only the rows still decoding the block
    ("llada", dict(commit="threshold", threshold=0.3, kv_cache="dual")),
    ("dream", dict(sampler="agdo", commit="threshold", threshold=0.3, kv_cache="prefix")),
    ("sdar", dict(commit="threshold", threshold=0.3)),
])
def test_batched_rows_skip_finished_blocks_same_tokens(loaded, fam, options) -> None:
    model, adapter = loaded[fam]
    prompts = [[65, 66, 67, 68, 69, 70, 71], [80, 81, 82], [90, 91, 92, 93, 94], [100, 101, 102, 103]]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[adapter.pad_id] * (width - len(p)) + p for p in prompts])
    am = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    opts = dict(gen_length=16, steps=16, block_length=8, **options)
    if fam == "sdar":  # (SDAR decodes each prompt length as its own batch: equal lengths here)
        opts = dict(gen_length=16, steps_per_block=4, block_length=4, **options)
        prompts = [[65 + 15 * r + j for j in range(5)] for r in range(4)]
        width = 5
        ids, am = torch.tensor(prompts), None
    batched = generate(model, ids, attention_mask=am, adapter=adapter, **opts)
    rows_run = batched.stats["forward_rows"]
    mult = 2 if options.get("cfg_scale") else 1
    assert max(rows_run) == 4 * mult and min(rows_run) < 4 * mult, "rows finish their blocks at different steps"
    for r, prompt in enumerate(prompts):
        single = generate(model, torch.tensor([prompt]), adapter=adapter, **opts)
        assert batched.sequences[r, width:].tolist() == single.sequences[0, len(prompt):].tolist(), f"row {r}"


# -- logits only where the engine reads them ------------------------------------------------------
@pytest.mark.parametrize("fam", ["llada", "dream", "sdar"])
def test_logits_to_keep_selects_positions(fixture_models, fam) -> None:
    model = fixture_models[fam]
    ids = torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        assert torch.allclose(model(ids, logits_to_keep=slice(4, 8)).logits, full[:, 4:8], atol=1e-5)
        assert torch.allclose(model(ids, logits_to_keep=3).logits, full[:, -3:], atol=1e-5)
        idx = torch.tensor([0, 5, 11])
        assert torch.allclose(model(ids, logits_to_keep=idx).logits, full[:, idx], atol=1e-5)
        assert model(ids, logits_to_keep=0).logits.shape == full.shape
        with pytest.raises(ValueError, match="logits_to_keep=-1"):
            model(ids, logits_to_keep=-1)


@pytest.mark.parametrize("kv_cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("fam", ["llada", "dream"])
def test_engine_keeps_only_block_logits(loaded, monkeypatch, fam, kv_cache) -> None:
    """The engine asks the head for the block's logits only, and decodes exactly what full logits give."""
    from dllm_eval.samplers import engine

    model, adapter = loaded[fam]
    ids = torch.tensor([[65, 66, 67, 68, 69, 70, 71]])
    options = dict(gen_length=8, block_length=4, steps=8, kv_cache=kv_cache, threshold=0.2)
    widths = []
    forward = model.forward

    def spy(input_ids, logits_to_keep=0, **kw):
        out = forward(input_ids, logits_to_keep=logits_to_keep, **kw)
        widths.append(out.logits.shape[1])
        return out

    monkeypatch.setattr(model, "forward", spy)
    fast = generate(model, ids, adapter=adapter, **options)
    assert set(widths) == {4}
    monkeypatch.setattr(engine, "_accepts", lambda m, name: False)
    widths.clear()
    slow = generate(model, ids, adapter=adapter, **options)
    assert max(widths) > 4
    assert torch.equal(fast.sequences, slow.sequences) and fast.nfe == slow.nfe
