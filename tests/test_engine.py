"""The denoising loop on a mock model (hand-built logits) and on the tiny fixture models:
prompt never changed, every mask filled, NFE exact, threshold steps commit >= 1 token,
batched == one-by-one for the same seed, option errors (also under ``python -O``)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from dllm_eval.samplers.config import DecodeConfig
from dllm_eval.samplers.engine import generate

MASK = 50
VOCAB = 64


@dataclass(frozen=True)
class MockAdapter:
    name: str = "mock"
    mask_id: int = MASK
    eos_ids: tuple = (3,)
    eot_id: int | None = None
    pad_id: int | None = 0
    bos_id: int | None = None
    shift_logits: bool = False
    block_size: int | None = None
    supports_attention: bool = False

    def align_logits(self, raw):
        return raw


class MockOutput:
    def __init__(self, logits, past_key_values=None):
        self.logits = logits
        self.past_key_values = past_key_values
        self.attn_stats = None


class MockModel(torch.nn.Module):
    """Logits depend only on each position's token and absolute position: a masked position p
    proposes token ``10 + p % 20`` with a confidence that grows with p (so the confidence order
    is right-to-left), any other position copies its own token. Records every call."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[int, int]] = []

    def forward(self, x, attention_mask=None, position_ids=None, use_cache=False, **kw):
        self.calls.append(tuple(x.shape))
        b, n = x.shape
        pos = torch.arange(n)[None].expand(b, -1)
        logits = torch.full((b, n, VOCAB), -5.0)
        target = torch.where(x == MASK, 10 + pos % 20, x)
        peak = torch.where(x == MASK, 1.0 + 0.25 * pos, torch.full_like(pos, 20.0, dtype=torch.float))
        logits.scatter_(-1, target[..., None], peak[..., None].float())
        return MockOutput(logits)


def run(model=None, ids=None, **options):
    model = model or MockModel()
    ids = torch.tensor([[1, 2, 4, 5]]) if ids is None else ids
    return model, generate(model, ids, adapter=MockAdapter(), **options)


def test_prompt_unchanged_masks_filled_and_nfe_exact():
    model, res = run(gen_length=8, steps=4, block_length=4)
    seq = res.sequences
    assert seq.shape == (1, 12)
    assert seq[0, :4].tolist() == [1, 2, 4, 5]
    assert not bool((seq == MASK).any())
    # each generated position p holds the token the mock proposes there
    assert seq[0, 4:].tolist() == [10 + p % 20 for p in range(4, 12)]
    assert res.nfe == 4 == len(model.calls)
    assert res.tokens_per_forward == 2.0
    # confidence grows with the position: within each block the right-most masks go first
    trace = [t["committed"][0] for t in res.stats["trace"]]
    assert trace == [[6, 7], [4, 5], [10, 11], [8, 9]]


def test_schedule_commits_exactly_the_even_split():
    _, res = run(gen_length=7, steps=3)
    counts = [len(t["committed"][0]) for t in res.stats["trace"]]
    assert counts == [3, 2, 2]  # LLaDA: 7 // 3 = 2 each, the remainder to the first step


def test_threshold_mode_commits_at_least_one_per_step():
    # all mock confidences are far below 0.99: every step must still commit the best token
    model, res = run(gen_length=8, steps=8, threshold=0.99)
    counts = [len(t["committed"][0]) for t in res.stats["trace"]]
    assert counts == [1] * 8
    assert not bool((res.sequences == MASK).any())
    # a low threshold commits everything at once
    _, res = run(gen_length=8, steps=8, threshold=1e-9)
    assert [len(t["committed"][0]) for t in res.stats["trace"]] == [8]
    assert res.nfe == 1


def test_cfg_is_one_forward_of_two_batches():
    model, res = run(gen_length=4, steps=2, cfg_scale=1.0)
    assert res.nfe == 2
    assert model.calls == [(2, 8), (2, 8)]
    assert res.stats["forward_rows"] == [2, 2]


def test_stop_on_eos_stops_and_fills_with_pad():
    class EosModel(MockModel):
        def forward(self, x, **kw):
            out = super().forward(x, **kw)
            out.logits[:, 4, 3] = 100.0  # the first generated position proposes EOS (id 3)
            return out

    _, res = run(EosModel(), gen_length=8, steps=8, block_length=4, stop_on_eos=True)
    seq = res.sequences[0].tolist()
    assert seq[4] == 3
    assert seq[8:] == [0, 0, 0, 0]  # second block never decoded, filled with the pad id
    assert res.nfe == 4 and res.stats["stopped"] == [True]


def test_logits_eos_inf_never_proposes_eos():
    class EosModel(MockModel):
        def forward(self, x, **kw):
            out = super().forward(x, **kw)
            out.logits[..., 3] = 100.0
            return out

    _, res = run(EosModel(), gen_length=4, steps=4, logits_eos_inf=True)
    assert 3 not in res.sequences[0, 4:].tolist()


def test_threshold_loop_ends_when_the_model_proposes_the_mask_token():
    class MaskModel(MockModel):
        def forward(self, x, **kw):
            out = super().forward(x, **kw)
            out.logits[..., MASK] = 100.0
            return out

    _, res = run(MaskModel(), gen_length=4, steps=4, threshold=0.5)
    assert res.nfe == 2 * 4 + 2  # bounded, instead of looping forever like the references


def test_attention_sampler_on_model_without_attention_is_refused():
    with pytest.raises(ValueError, match="attention"):
        run(gen_length=4, steps=4, sampler="attn")


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"gen_length": 10, "block_length": 4}, "not divisible by block_length"),
        ({"gen_length": 8, "block_length": 4, "steps": 3}, "not divisible by the number of blocks"),
        ({"gen_length": 8, "steps": 9}, "steps=9"),
        ({"sampler": "confidance"}, "did you mean 'confidence'"),
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"threshold": 0.0}, "threshold=0.0"),
        ({"commit": "threshold"}, "needs threshold"),
        ({"temperature": -1}, "temperature=-1"),
        ({"kv_cache": "full"}, "kv_cache='full'"),
        ({"cfg_scale": 1.0, "kv_cache": "dual"}, "cfg_scale"),
        ({"steps_per_block": 9, "block_length": 8, "gen_length": 8}, "steps_per_block=9"),
    ],
)
def test_bad_options_raise_value_errors(options, needle):
    base = {"gen_length": 8, "steps": 8}
    with pytest.raises(ValueError, match="(?i)" + needle.replace("(", r"\(").replace(")", r"\)")):
        DecodeConfig.from_options(**{**base, **options})


def test_unknown_option_did_you_mean():
    with pytest.raises(ValueError, match="(?i)did you mean .temperature."):
        DecodeConfig.from_options(temprature=0.5)
    with pytest.raises(ValueError, match="unknown decoding option"):
        generate(MockModel(), torch.tensor([[1, 2]]), adapter=MockAdapter(), gen_len=4)


def test_options_from_strings_like_model_args():
    cfg = DecodeConfig.from_options(gen_length="16", steps="8", threshold="0.9", attn_layers="0,-1",
                                    stop_on_eos="true", top_p="None")
    assert cfg.gen_length == 16 and cfg.threshold == 0.9 and cfg.commit == "threshold"
    assert cfg.attn_layers == (0, -1) and cfg.stop_on_eos is True and cfg.top_p is None


def test_errors_survive_python_O():
    code = (
        "from dllm_eval.samplers.config import DecodeConfig\n"
        "try:\n    DecodeConfig(gen_length=10, block_length=4)\n"
        "except ValueError as e:\n    print('OK', e)\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("OK") and "block_length=4" in out.stdout, out.stderr


def test_right_padding_is_refused():
    with pytest.raises(ValueError, match="left"):
        generate(MockModel(), torch.tensor([[1, 2, 0]]), attention_mask=torch.tensor([[1, 1, 0]]),
                 adapter=MockAdapter(), gen_length=4, steps=4)


# ---- tiny fixture models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tiny_models):
    from dllm_eval.harness.loading import load

    return {fam: load(str(path), dtype="float32")[::2] for fam, path in tiny_models.items()}


def _padded(prompts, pad):
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    am = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, am


@pytest.mark.parametrize("family", ["llada", "dream", "sdar"])
def test_batched_equals_one_by_one(loaded, family):
    model, adapter = loaded[family]
    prompts = [[65, 66, 67, 68, 69, 70, 71], [80, 81, 82], [90, 91, 92, 93, 94]]
    options = dict(gen_length=8, steps=8, block_length=4, temperature=0.9, seed=1234)
    ids, am = _padded(prompts, adapter.pad_id)
    batched = generate(model, ids, attention_mask=am, adapter=adapter, **options)
    gen_b = batched.sequences[:, ids.shape[1]:]
    for r, prompt in enumerate(prompts):
        single = generate(model, torch.tensor([prompt]), adapter=adapter, **options)
        gen_s = single.sequences[0, len(prompt):]
        assert gen_b[r, : gen_s.shape[0]].tolist() == gen_s.tolist(), f"row {r}"
        assert batched.sequences[r, : ids.shape[1]].tolist() == ids[r].tolist()
    assert not bool((batched.sequences == adapter.mask_id).any())


@pytest.mark.parametrize("options", [
    dict(commit="threshold", threshold=0.3, temperature=0.9),
    dict(sampler="random", temperature=0.7),
])
def test_batched_equals_one_by_one_when_rows_finish_blocks_at_different_steps(loaded, options):
    """Threshold rules finish a row's block early; while it waits for its batch-mates it must not
    consume random draws, or its later tokens would differ from decoding it alone."""
    model, adapter = loaded["llada"]
    prompts = [[65, 66, 67, 68, 69, 70, 71], [80, 81, 82], [90, 91, 92, 93, 94]]
    opts = dict(gen_length=8, steps=8, block_length=4, seed=99, **options)
    ids, am = _padded(prompts, adapter.pad_id)
    batched = generate(model, ids, attention_mask=am, adapter=adapter, **opts)
    for r, prompt in enumerate(prompts):
        single = generate(model, torch.tensor([prompt]), adapter=adapter, **opts)
        assert batched.sequences[r, ids.shape[1]:].tolist() == single.sequences[0, len(prompt):].tolist(), f"row {r}"


def test_same_seed_same_tokens_other_seed_differs(loaded):
    model, adapter = loaded["llada"]
    ids = torch.tensor([[65, 66, 67, 68]])
    runs = [generate(model, ids, adapter=adapter, gen_length=16, steps=16, temperature=1.5, seed=s).sequences
            for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("sampler", ["attn", "agdo"])
@pytest.mark.parametrize("family", ["llada", "dream"])
def test_attention_samplers_run_on_native_models(loaded, sampler, family):
    model, adapter = loaded[family]
    ids = torch.tensor([[65, 66, 67, 68, 69]])
    res = generate(model, ids, adapter=adapter, gen_length=8, steps=8, sampler=sampler)
    assert res.sequences[0, :5].tolist() == [65, 66, 67, 68, 69]
    assert not bool((res.sequences == adapter.mask_id).any())
    assert [len(t["committed"][0]) for t in res.stats["trace"]] == [1] * 8


def test_attn_parallel_dominance_commits_at_least_one(loaded):
    model, adapter = loaded["llada"]
    ids = torch.tensor([[65, 66, 67, 68, 69]])
    res = generate(model, ids, adapter=adapter, gen_length=8, steps=8, sampler="attn",
                   commit="dominance", threshold=0.5)
    counts = [len(t["committed"][0]) for t in res.stats["trace"]]
    assert all(c >= 1 for c in counts) and sum(counts) == 8
    assert res.nfe == len(counts)


def test_block_causal_refuses_dual_cache(loaded):
    model, adapter = loaded["sdar"]
    with pytest.raises(ValueError, match="kv_cache='dual'"):
        generate(model, torch.tensor([[65, 66]]), adapter=adapter, gen_length=4, steps=4, kv_cache="dual")


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize(
    "options",
    [
        {"kv_cache": "prefix", "threshold": 0.3},
        {"kv_cache": "dual"},
        {"kv_cache": "dual", "cache_extra_forward": True, "factor": 1.0},
        {"cfg_scale": 0.5, "temperature": 0.7, "top_k": 5, "seed": 3},
        {"sampler": "margin", "top_p": 0.9, "temperature": 0.5, "seed": 3, "schedule": "linspace"},
        {"sampler": "entropy", "entropy_bound": 0.5},
        {"sampler": "random", "alg_temp": 0.5, "seed": 1},
        {"confidence_eos_eot_inf": True, "logits_eos_inf": True},
    ],
)
def test_option_combinations_fill_every_mask(loaded, family, options):
    model, adapter = loaded[family]
    ids, am = _padded([[65, 66, 67, 68, 69, 70], [80, 81, 82]], adapter.pad_id)
    res = generate(model, ids, attention_mask=am, adapter=adapter, gen_length=8, steps=8, block_length=4, **options)
    assert torch.equal(res.sequences[:, :6], ids)
    assert not bool((res.sequences == adapter.mask_id).any())
    assert res.sequences.shape == (2, 14)
    assert res.nfe == len(res.stats["trace"]) == res.stats["nfe_denoise"]
    if "threshold" in options or "factor" in options or "entropy_bound" in options:
        # every row with masks left in its block commits at least one token per step
        left: dict = {}
        for t in res.stats["trace"]:
            for r, c in enumerate(t["committed"]):
                remaining = left.setdefault((t["block"], r), 4)
                assert len(c) >= 1 or remaining == 0, (t, r)
                left[(t["block"], r)] = remaining - len(c)
        assert all(v == 0 for v in left.values())


def test_prefix_cache_extra_forward_counts_one_more_call(loaded):
    model, adapter = loaded["llada"]
    ids = torch.tensor([[65, 66, 67, 68]])
    base = generate(model, ids, adapter=adapter, gen_length=8, steps=8, block_length=4,
                    kv_cache="prefix", threshold=1e-9)
    extra = generate(model, ids, adapter=adapter, gen_length=8, steps=8, block_length=4,
                     kv_cache="prefix", threshold=1e-9, cache_extra_forward=True)
    assert base.nfe == 2 and extra.nfe == 4  # each block done in its full forward (+1 cached each)
    assert torch.equal(base.sequences, extra.sequences)
