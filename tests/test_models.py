"""Native LLaDA / Dream / SDAR models against the reference goldens in ../shared/fixtures.

Truth: ``golden_forward.safetensors`` (logits, hidden states and attention probabilities produced
by the families' reference code, see fixtures/README.md, tolerances from there), the parameter
counts of the released checkpoints (SDAR-4B: its safetensors index's byte total / 2 for bf16;
Dream-7B = Qwen2.5-7B and SDAR-8B = Qwen3-8B published sizes; LLaDA-8B about 8.02e9), and the
fixture weights themselves for the save/load round trip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dllm_eval.harness import models
from dllm_eval.harness.loading import load, load_config, load_model
from dllm_eval.harness.models import FAMILIES, AttnStatsRequest
from safetensors.torch import load_file, save_file

FAMILY_DIRS = ("llada", "dream", "sdar")
LOGIT_TOL = 1e-4
HIDDEN_TOL = 1e-4
PROB_TOL = 1e-5


@pytest.fixture(scope="module")
def fixture_models(fixtures_dir: Path) -> dict[str, torch.nn.Module]:
    return {fam: load_model(fixtures_dir / f"{fam}-tiny", dtype="float32").eval() for fam in FAMILY_DIRS}


def _golden(fixtures_dir: Path, fam: str) -> dict[str, torch.Tensor]:
    return load_file(str(fixtures_dir / f"{fam}-tiny" / "golden_forward.safetensors"))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def _check_probs_exact(model, ids, golden_probs, attention_mask=None, position_ids=None) -> None:
    """Every golden probability ``attn_probs[l, b, h, i, :]`` recovered from col_sum with a
    single head and a single query row (exact statistics, not a summary): the batch is repeated
    once per query row and replica (b, i) selects row i."""
    n_layers, bsz, n_heads, n, _ = golden_probs.shape

    def rep(t):
        return None if t is None else t.repeat_interleave(n, dim=0) if t.shape[0] == bsz else t

    rows = torch.arange(n).repeat(bsz)[:, None]  # replica b*n + i -> row i
    for h in range(n_heads):
        req = AttnStatsRequest(layers=tuple(range(n_layers)), query_index=rows, heads=(h,))
        with torch.no_grad():
            stats = model(rep(ids), attention_mask=rep(attention_mask), position_ids=rep(position_ids), attn_stats=req).attn_stats
        assert stats.col_sum.shape == (n_layers, bsz * n, n)
        expected = golden_probs[:, :, h].reshape(n_layers, bsz * n, n)
        diff = _max_diff(stats.col_sum, expected)
        assert diff <= PROB_TOL, f"head {h}: {diff}"


@pytest.mark.parametrize("fam", FAMILY_DIRS)
def test_golden_logits_and_hidden_states(fixture_models, fixtures_dir: Path, fam: str) -> None:
    g = _golden(fixtures_dir, fam)
    model = fixture_models[fam]
    kw = {"attention_mask": g["attention_mask"]} if fam == "sdar" else {}
    with torch.no_grad():
        out = model(g["input_ids"], output_hidden_states=True, **kw)
    assert out.logits.shape == g["logits"].shape
    assert _max_diff(out.logits, g["logits"]) <= LOGIT_TOL
    assert len(out.hidden_states) == g["hidden_states"].shape[0]
    for mine, ref in zip(out.hidden_states, g["hidden_states"]):
        assert _max_diff(mine, ref) <= HIDDEN_TOL
    assert out.past_key_values is None and out.attn_stats is None


def test_sdar_default_mask_is_block_causal(fixture_models, fixtures_dir: Path) -> None:
    """Without a mask the model applies its block-causal pattern: same goldens as the explicit
    [1, L, L] float mask the reference sampler builds; full attention would differ."""
    g = _golden(fixtures_dir, "sdar")
    model = fixture_models["sdar"]
    assert int(g["block_size"]) == model.config.block_size
    with torch.no_grad():
        default = model(g["input_ids"]).logits
        full = model(g["input_ids"], attention_mask=torch.ones(1, 32, 32, dtype=torch.bool)).logits
    assert _max_diff(default, g["logits"]) <= LOGIT_TOL
    assert _max_diff(full, g["logits"]) > 1e-2


def test_llada_ignores_all_ones_mask(fixture_models, fixtures_dir: Path) -> None:
    g = _golden(fixtures_dir, "llada")
    with torch.no_grad():
        out = fixture_models["llada"](g["input_ids"], attention_mask=torch.ones_like(g["input_ids"]))
    assert _max_diff(out.logits, g["logits"]) <= LOGIT_TOL


def test_dream_padded_goldens(fixture_models, fixtures_dir: Path) -> None:
    g = _golden(fixtures_dir, "dream")
    model = fixture_models["dream"]
    ids, pos = g["padded_input_ids"], g["padded_position_ids"]
    with torch.no_grad():
        out = model(ids, attention_mask=g["padded_attention_mask_4d"], position_ids=pos, output_hidden_states=True)
    # 4-D mask as the reference passes it: pad query rows are fully masked (zero attention) there
    # too, so every row matches
    assert _max_diff(out.logits, g["padded_logits"]) <= LOGIT_TOL
    for mine, ref in zip(out.hidden_states, g["padded_hidden_states"]):
        assert _max_diff(mine, ref) <= HIDDEN_TOL
    # 2-D padding mask (1 = real token): pad queries still attend the real keys, so only the
    # non-pad rows are comparable with the reference
    real = g["padded_attention_mask"].bool()
    with torch.no_grad():
        out2 = model(ids, attention_mask=g["padded_attention_mask"], position_ids=pos)
    assert _max_diff(out2.logits[real], g["padded_logits"][real]) <= LOGIT_TOL
    _check_probs_exact(model, ids, g["padded_attn_probs"], attention_mask=g["padded_attention_mask_4d"], position_ids=pos)


@pytest.mark.parametrize("fam", FAMILY_DIRS)
def test_attention_probabilities_exact(fixture_models, fixtures_dir: Path, fam: str) -> None:
    g = _golden(fixtures_dir, fam)
    kw = {"attention_mask": g["attention_mask"]} if fam == "sdar" else {}
    _check_probs_exact(fixture_models[fam], g["input_ids"], g["attn_probs"], **kw)


@pytest.mark.parametrize("fam", FAMILY_DIRS)
def test_attention_column_and_row_sums(fixture_models, fixtures_dir: Path, fam: str) -> None:
    g = _golden(fixtures_dir, fam)
    model = fixture_models[fam]
    probs = g["attn_probs"].double().mean(dim=2)  # head mean [layers, B, n, n]
    ids = g["input_ids"]
    gen = torch.Generator().manual_seed(0)
    key_mask = torch.rand(ids.shape, generator=gen) < 0.4
    with torch.no_grad():
        default = model(ids, attn_stats=AttnStatsRequest()).attn_stats
        both = model(ids, attn_stats=AttnStatsRequest(layers=(0, -1), key_mask=key_mask)).attn_stats
        rows = torch.tensor([[3, 7, 30], [0, 31, 12]])
        sub = model(ids, attn_stats=AttnStatsRequest(layers=(1,), query_index=rows, key_mask=key_mask)).attn_stats
    # default: last layer, all rows, no row sums
    assert default.layers == (1,) and default.row_sum is None
    assert _max_diff(default.col_sum[0], probs[-1].sum(1)) <= 32 * PROB_TOL
    assert both.layers == (0, 1)
    assert _max_diff(both.col_sum, probs.sum(2)) <= 32 * PROB_TOL
    assert _max_diff(both.row_sum, (probs * key_mask[None, :, None, :]).sum(-1)) <= 32 * PROB_TOL
    picked = torch.stack([probs[1, b, rows[b]] for b in range(2)])  # [B, q, n]
    assert _max_diff(sub.col_sum[0], picked.sum(1)) <= 3 * PROB_TOL
    assert sub.row_sum.shape == (1, 2, 3)
    assert _max_diff(sub.row_sum[0], (picked * key_mask[:, None, :]).sum(-1)) <= 32 * PROB_TOL
    # the rows themselves on request (selected rows only)
    with torch.no_grad():
        req = AttnStatsRequest(layers=(0, 1), query_index=rows, return_probs=True)
        got = model(ids, attn_stats=req).attn_stats
    assert got.probs.shape == (2, 2, 3, 32) and default.probs is None
    expected = torch.stack([torch.stack([probs[layer, b, rows[b]] for b in range(2)]) for layer in range(2)])
    assert _max_diff(got.probs, expected) <= PROB_TOL
    # each full row sums to one
    assert _max_diff(default.col_sum[0].sum(-1), torch.full((2,), 32.0)) <= 1e-4


def test_attention_stats_bad_requests(fixture_models) -> None:
    model = fixture_models["llada"]
    ids = torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="layers"):
        model(ids, attn_stats=AttnStatsRequest(layers=(5,)))
    with pytest.raises(ValueError, match="heads"):
        model(ids, attn_stats=AttnStatsRequest(heads=(9,)))
    with pytest.raises(ValueError, match="key_mask"):
        model(ids, attn_stats=AttnStatsRequest(key_mask=torch.ones(1, 3, dtype=torch.bool)))
    with pytest.raises(ValueError, match="query_index"):
        model(ids, attn_stats=AttnStatsRequest(query_index=torch.tensor([8])))


def test_auto_classes_after_import_dllm_eval(fixtures_dir: Path) -> None:
    """``import dllm_eval`` stays torch-free, and afterwards the Auto classes return the native
    models without trust_remote_code (the checkpoints' auto_map points at remote code)."""
    code = f"""
import sys
import dllm_eval
assert 'torch' not in sys.modules, 'import dllm_eval imported torch'
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
root = {str(fixtures_dir)!r}
for fam, auto in (('llada', AutoModel), ('dream', AutoModel), ('sdar', AutoModelForCausalLM), ('sdar', AutoModel)):
    cfg = AutoConfig.from_pretrained(root + '/' + fam + '-tiny')
    model = auto.from_pretrained(root + '/' + fam + '-tiny')
    print(fam, type(cfg).__module__, type(model).__module__, type(model).__name__)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.split("\n")
    expected = {"llada": "LLaDAModelLM", "dream": "DreamModel", "sdar": "SDARForCausalLM"}
    for line in filter(None, lines):
        fam, cfg_mod, model_mod, name = line.split()
        assert cfg_mod == "dllm_eval.harness.models.configs"
        assert model_mod.startswith("dllm_eval.harness.models.")
        assert name == expected[fam]


@pytest.mark.parametrize("fam", FAMILY_DIRS)
def test_save_pretrained_round_trip(fixture_models, fixtures_dir: Path, tmp_path: Path, fam: str) -> None:
    from transformers import AutoModelForCausalLM

    model = fixture_models[fam]
    original = load_file(str(fixtures_dir / f"{fam}-tiny" / "model.safetensors"))
    # the loaded model holds exactly the checkpoint's tensors under the official names
    state = model.state_dict()
    assert set(state) == set(original)
    assert all(torch.equal(state[k], original[k]) for k in original)
    model.save_pretrained(tmp_path / "single")
    saved = load_file(str(tmp_path / "single" / "model.safetensors"))
    assert set(saved) == set(original) and all(torch.equal(saved[k], original[k]) for k in original)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "single")
    assert type(reloaded) is type(model)
    assert all(torch.equal(v, reloaded.state_dict()[k]) for k, v in state.items())
    cfg = json.loads((tmp_path / "single" / "config.json").read_text())
    assert cfg["model_type"] == model.config.model_type and cfg["architectures"] == [type(model).__name__]
    # sharded with an index, and bf16
    model.to(torch.bfloat16).save_pretrained(tmp_path / "sharded", max_shard_size="300KB")
    model.float()
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    bf16 = load_model(tmp_path / "sharded")  # dtype auto: the saved torch_dtype
    assert bf16.dtype == torch.bfloat16
    assert all(torch.equal(v.to(torch.bfloat16), bf16.state_dict()[k]) for k, v in state.items())
    fp16 = load_model(tmp_path / "sharded", dtype="float16")
    assert fp16.dtype == torch.float16


def test_load_errors(fixtures_dir: Path, tmp_path: Path) -> None:
    import shutil

    src = fixtures_dir / "llada-tiny"
    # unknown family
    bad = tmp_path / "gpt2"
    shutil.copytree(src, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'.*accepted"):
        load(bad)
    # missing weight
    missing = tmp_path / "missing"
    shutil.copytree(src, missing)
    tensors = load_file(str(missing / "model.safetensors"))
    del tensors["model.transformer.blocks.1.ff_norm.weight"]
    save_file(tensors, str(missing / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing weights.*model\.transformer\.blocks\.1\.ff_norm\.weight"):
        load_model(missing)
    # shape mismatch names the parameter
    wrong = tmp_path / "wrong"
    shutil.copytree(src, wrong)
    tensors = load_file(str(wrong / "model.safetensors"))
    tensors["model.transformer.blocks.0.q_proj.weight"] = tensors["model.transformer.blocks.0.q_proj.weight"][:32]
    save_file(tensors, str(wrong / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model\.transformer\.blocks\.0\.q_proj\.weight"):
        load_model(wrong)
    with pytest.raises(ValueError, match="dtype='int8'.*accepted"):
        load_model(src, dtype="int8")
    with pytest.raises(ValueError, match="device='bogus'"):
        load_model(src, device="bogus")
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path)


def test_forward_input_errors(fixture_models) -> None:
    model = fixture_models["dream"]
    ids = torch.zeros(2, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(ids, attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="cache_position=3 needs past_key_values"):
        model(ids, cache_position=3)
    with pytest.raises(ValueError, match="past_key_values"):
        model(ids, past_key_values=((torch.zeros(1),),))


# released sizes (independent of this code): SDAR-4B from its index's bf16 byte total;
# Qwen2.5-7B (Dream's base) 7,615,616,512; Qwen3-8B (SDAR-8B's base) 8,190,735,360
EXPECTED_PARAMS = {
    "Dream-v0-Instruct-7B": (7_615_616_512, 0),
    "SDAR-8B-Chat": (8_190_735_360, 0),
    "LLaDA-8B-Instruct": (8.02e9, 0.01e9),
}


def test_real_configs_parameter_count(shared_dir: Path) -> None:
    folders = sorted(p for p in (shared_dir / "models").iterdir() if (p / "config.json").is_file())
    assert len(folders) >= 4
    for folder in folders:
        config = load_config(folder)
        cls = getattr(models, FAMILIES[config.model_type][1])
        with torch.device("meta"):
            model = cls(config)
        count = sum(p.numel() for p in model.parameters())
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            expected, tol = json.loads(index.read_text())["metadata"]["total_size"] // 2, 0
            names = set(json.loads(index.read_text())["weight_map"])
            assert names == set(model.state_dict()), f"{folder.name}: parameter names differ from the index"
        else:
            expected, tol = EXPECTED_PARAMS[folder.name]
        assert abs(count - expected) <= tol, f"{folder.name}: {count} parameters, expected {expected}"


def test_statistics_only_for_requested_layers(fixture_models, monkeypatch) -> None:
    """Every layer attends through SDPA; only requested layers form probabilities."""
    from dllm_eval.harness.models import common

    calls = {"sdpa": 0, "stats": 0}
    sdpa, stats = common.F.scaled_dot_product_attention, common.attention_statistics

    def count_sdpa(*a, **k):
        calls["sdpa"] += 1
        return sdpa(*a, **k)

    def count_stats(*a, **k):
        calls["stats"] += 1
        return stats(*a, **k)

    monkeypatch.setattr(common.F, "scaled_dot_product_attention", count_sdpa)
    monkeypatch.setattr(common, "attention_statistics", count_stats)
    model = fixture_models["sdar"]
    ids = torch.zeros(1, 8, dtype=torch.long)
    with torch.no_grad():
        model(ids)
        assert calls == {"sdpa": 2, "stats": 0}
        model(ids, attn_stats=AttnStatsRequest())
        assert calls == {"sdpa": 4, "stats": 1}
