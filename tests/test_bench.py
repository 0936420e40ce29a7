"""``dllm-eval bench``: the analytic FLOP counts against hand counts and torch's FLOP counter, and a
smoke run of ``--quick`` (tiny random models) whose JSON rows must have the schema and values
that follow from the settings (NFE of one-token-per-step decoding = gen_length, SDAR's store
forwards, batch rows per forward). Timing thresholds are not asserted: this is a benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from dllm_eval.benchmarks import bench
from dllm_eval.benchmarks.flops import (
    LLADA_8B,
    STATS_ELEMENTWISE_FLOPS,
    ModelShape,
    attention_stats_flops,
    forward_flops,
    overhead_scenarios,
)

SHAPE = ModelShape("hand", hidden=4, layers=1, heads=2, kv_heads=1, head_dim=2, ffn=8, vocab=10)


def test_forward_flops_hand_count() -> None:
    # 3 queries, 5 keys: q/k/v projections 2*3*4*(4+2+2) = 192, o 2*3*4*4 = 96,
    # QK^T and PV 2*2*3*5*4 = 240, SwiGLU 3*2*3*4*8 = 576, head 2*3*4*10 = 240
    assert forward_flops(SHAPE, 3, 5) == 192 + 96 + 240 + 576 + 240
    assert forward_flops(SHAPE, 3, 5, logits_rows=1) == 192 + 96 + 240 + 576 + 80
    with pytest.raises(ValueError, match="n_queries"):
        forward_flops(SHAPE, 6, 5)


def test_stats_flops_hand_count() -> None:
    # 3 rows x 5 keys x 2 heads: scores 2*3*5*2*2 = 120, element-wise 8*30, lse 2*30
    assert attention_stats_flops(SHAPE, 3, 5) == 120 + STATS_ELEMENTWISE_FLOPS * 30 + 60
    # two columns only (log-sum-exp from the kernel): 2*3*2*2*2 = 48 + 8*12
    assert attention_stats_flops(SHAPE, 3, 5, n_columns=2) == 48 + STATS_ELEMENTWISE_FLOPS * 12
    assert attention_stats_flops(SHAPE, 3, 5, stats_layers=4) == 4 * attention_stats_flops(SHAPE, 3, 5)


def test_llada_8b_shape_matches_its_parameter_count() -> None:
    # LLaDA-8B: 8.02e9 parameters (32 x 218.1M layer weights + 2 x 126464 x 4096 embeddings)
    assert LLADA_8B.parameters == 32 * (4 * 4096 * 4096 + 3 * 4096 * 12288 + 2 * 4096) + 2 * 126464 * 4096 + 4096
    assert 8.0e9 < LLADA_8B.parameters < 8.05e9


@torch.no_grad()
def test_flops_match_torch_flop_counter() -> None:
    """torch's FlopCounterMode counts the model's matrix products (SDPA on CPU is not counted, so
    the attention term is added by hand) and the statistics' score products."""
    from dllm_eval.harness.models import AttnStatsRequest
    from torch.utils.flop_counter import FlopCounterMode

    model = bench.build_model("dream-tiny", "cpu")
    c = model.config
    shape = ModelShape("dream-tiny", c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
                       c.num_key_value_heads, c.head_dim, c.intermediate_size, c.vocab_size)
    x = torch.randint(0, 900, (1, 20))

    def counted(*args, **kw) -> int:
        with FlopCounterMode(display=False) as fc:
            out = model(*args, **kw)
        return fc.get_total_flops(), out

    def attention(n_q: int, n_k: int) -> int:
        return c.num_hidden_layers * 4 * n_q * n_k * c.num_attention_heads * c.head_dim

    full, out = counted(x, use_cache=True)
    assert full + attention(20, 20) == forward_flops(shape, 20, 20)
    block, _ = counted(x[:, 8:12], past_key_values=out.past_key_values, cache_position=8)
    assert block + attention(4, 20) == forward_flops(shape, 4, 20)
    with_stats, _ = counted(x, attn_stats=AttnStatsRequest(layers=(-1,)))
    elementwise = (STATS_ELEMENTWISE_FLOPS + 2) * 20 * 20 * c.num_attention_heads
    assert with_stats - full == attention_stats_flops(shape, 20, 20) - elementwise


def test_overhead_scenarios_at_8b_are_small() -> None:
    rows = overhead_scenarios(LLADA_8B)
    assert {r["forward"] for r in rows} == {"uncached", "dual cache (block)", "prefix cache (block..end, mean)"}
    # one layer over all 512 rows: 512*512*32*(2*128 + 10) FLOPs of ~7.8 TFLOPs
    one = next(r for r in rows if r["forward"] == "uncached" and r["stats rows"] == "all query rows"
               and r["stats layers"] == "1 layer")
    assert one["extra_gflops"] == pytest.approx(512 * 512 * 32 * (256 + STATS_ELEMENTWISE_FLOPS + 2) / 1e9)
    assert all(0 < r["extra_percent"] < 2.0 for r in rows)


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = []
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return parser.parse_args(argv)


def test_bench_quick_json(tmp_path: Path, tiny_models: dict[str, Path], capsys) -> None:
    out = tmp_path / "bench.json"
    rc = bench.run(_args(quick=True, json=out, repeats=1, no_progress=True, device="cpu",
                         model=tiny_models["llada"], limit=3, gen_length=16, block_length=8))
    assert rc == 0
    printed = capsys.readouterr().out
    assert "hardware: CPU" in printed and "targets (issue 8)" in printed
    data = json.loads(out.read_text())
    hw = data["hardware"]
    assert hw["cpu_cores"] >= 1 and hw["torch"] == torch.__version__ and hw["gpu"] is None
    rows = data["rows"]
    assert {r["shape"] for r in rows} == {"llada-tiny", "dream-tiny", "sdar-tiny", "trained"}
    for row in rows:
        assert set(bench.ROW_KEYS) <= set(row)
        assert row["error"] is None, row
        assert row["nfe"] >= 1 and row["seconds_per_sample"] > 0
        assert 0 < row["tokens_per_forward"] <= row["block_length"]
        assert row["cache"] in ("none", "prefix", "dual") and row["commit_rule"] in ("schedule", "threshold")
    random_rows = [r for r in rows if r["model"] == "random"]
    for row in random_rows:
        assert row["accuracy"] is None
        assert row["rows_per_forward"] == row["batch_size"]  # nobody stops early on random prompts
        assert row["seconds_per_forward"] == pytest.approx(row["seconds_per_sample"] * row["batch_size"] / row["nfe"])
        if row["setting"].endswith("1 tok/step") and row["family"] != "sdar":
            # one token per forward: the block-start full forward of a cache also commits one
            assert row["nfe"] == row["gen_length"] and row["tokens_per_forward"] == 1.0
    sdar = next(r for r in random_rows if r["shape"] == "sdar-tiny" and r["setting"] == "prefix 1 tok/step")
    # prompt 16 = 2 blocks of 8 prefilled in one forward, then 4 blocks x (8 steps + 1 store)
    assert (sdar["prompt_length"], sdar["gen_length"], sdar["block_length"]) == (16, 32, 8)
    assert sdar["nfe"] == 1 + 4 * (8 + 1)
    trained = [r for r in rows if r["model"] != "random"]
    assert trained and all(r["n_samples"] == 3 and 0.0 <= r["accuracy"] <= 1.0 for r in trained)
    one = [r for r in trained if r["setting"] == "uncached 1 tok/step"]
    assert one and all(r["nfe"] == 16 and r["tokens_per_forward"] == 1.0 for r in one)
    checks = {c["check"]: c for c in data["checks"]}
    flops = next(c for name, c in checks.items() if name.startswith("analytic extra FLOPs") and "worst" not in name)
    assert flops["met"] is True and 0 < flops["value"] < 2
    assert any(name.startswith("batch 8 vs batch 1 throughput") for name in checks)
    assert any(name.startswith("attn sampler overhead") for name in checks)


def test_bench_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="--device"):
        bench.resolve_devices("tpu")
    with pytest.raises(ValueError, match="--limit"):
        bench.load_problems(None, 0)
    with pytest.raises(ValueError, match="need --model"):
        bench.run(_args(quick=True, limit=3))
