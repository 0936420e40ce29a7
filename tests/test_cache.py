"""The request cache: keys cover the model identity and every decoding option, writes are atomic,
and an evaluation killed with SIGKILL resumes without recomputing finished requests."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dllm_eval.harness.cache import (
    RequestCache,
    atomic_write_text,
    checkpoint_fingerprint,
    model_key,
    request_key,
)
from dllm_eval.harness.lm import cache_identity
from dllm_eval.harness.model_args import LOGLIKELIHOOD_KEYS, parse_model_args
from dllm_eval.samplers.config import DecodeConfig
from dllm_eval.tests.test_lm import BIN, cli_args, offline_env, read_output, write_tiny_tasks

CHECKPOINT = {"pretrained": "/m", "commit": None, "files": {"model.safetensors": [10, "ab"]}}
TOKENIZER = {"name": "/m", "vocab_size": 1024, "files": None}


def _key(model_args: dict, family: str = "llada", checkpoint=CHECKPOINT, dtype="torch.float32",
         tokenizer=TOKENIZER, max_length=512) -> str:
    args = parse_model_args({"pretrained": "/m", **model_args})
    return model_key(cache_identity(args, family, checkpoint, dtype, tokenizer, max_length, block_size=4))


# one changed value per decoding option, grouped by option family
OPTION_FAMILIES: dict[str, dict[str, object]] = {
    "schedule": {"gen_length": 64, "steps": 64, "block_length": 64, "steps_per_block": 16,
                 "schedule": "linspace", "eps": 0.01},
    "sampler": {"sampler": "margin"},
    "commit rule": {"commit": "schedule", "threshold": 0.9, "threshold_min": "schedule", "factor": 1.0,
                    "entropy_bound": 0.1, "alg_temp": 0.5},
    "token choice": {"temperature": 0.7, "top_p": 0.9, "top_k": 5, "score_filtered": True},
    "guidance": {"cfg_scale": 1.0},
    "eos controls": {"logits_eos_inf": True, "confidence_eos_eot_inf": True, "stop_on_eos": False, "early_stop": True,
                     "stop_ids": (5, 6)},
    "randomness": {"seed": 7},
    "kv cache": {"kv_cache": "prefix", "cache_extra_forward": True},
    "attention": {"attn_layers": (-2,), "attn_heads": (0,), "attn_query": "masked"},
}


def test_option_families_cover_every_decode_config_field():
    covered = {name for fam in OPTION_FAMILIES.values() for name in fam}
    assert covered == {f.name for f in dataclasses.fields(DecodeConfig)}


@pytest.mark.parametrize("family", list(OPTION_FAMILIES))
def test_changing_any_decoding_option_changes_the_key(family):
    base = _key({})
    for name, value in OPTION_FAMILIES[family].items():
        assert _key({name: value}) != base, name


def test_identity_covers_every_resolved_option():
    args = parse_model_args({"pretrained": "/m", "sampler": "margin"})
    ident = cache_identity(args, "llada", CHECKPOINT, "torch.float32", TOKENIZER, 512)
    assert set(ident["decode_base"]) == {f.name for f in dataclasses.fields(DecodeConfig)}
    assert ident["decode_base"]["sampler"] == "margin" and ident["decode_base"]["block_length"] == 32


def test_model_identity_and_loglikelihood_options_change_the_key():
    base = _key({})
    assert _key({}) == base  # stable
    assert _key({}, family="dream") != base
    assert _key({}, dtype="torch.bfloat16") != base
    assert _key({}, max_length=1024) != base
    assert _key({}, tokenizer={**TOKENIZER, "vocab_size": 1025}) != base
    assert _key({}, checkpoint={**CHECKPOINT, "files": {"model.safetensors": [10, "cd"]}}) != base
    assert _key({}, checkpoint={**CHECKPOINT, "commit": "abc"}) != base
    changes = {"mc_num": 64, "mc_batch_size": 8, "ll_cfg_scale": 0.5, "greedy_check": False}
    assert set(changes) == {s.name for s in LOGLIKELIHOOD_KEYS}
    for name, value in changes.items():
        assert _key({name: value}) != base, name


def test_checkpoint_fingerprint_sees_content_not_mtime(tmp_path, monkeypatch):
    import dllm_eval.harness.cache as cache_mod

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"a": 1}')
    weights = ckpt / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 64)
    monkeypatch.setattr(cache_mod, "SMALL_FILE", 1024)  # weights take the large-file path
    monkeypatch.setattr(cache_mod, "EDGE", 512)
    first = checkpoint_fingerprint(ckpt)
    os.utime(weights, (1, 1))
    assert checkpoint_fingerprint(ckpt) == first
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # change the last byte (inside the hashed tail)
    weights.write_bytes(bytes(data))
    assert checkpoint_fingerprint(ckpt) != first
    (ckpt / "config.json").write_text('{"a": 2}')
    assert set(checkpoint_fingerprint(ckpt)) == {"config.json", "model.safetensors"}
    assert checkpoint_fingerprint(tmp_path / "not-a-folder") is None


def test_put_get_roundtrip_is_exact(tmp_path):
    cache = RequestCache(tmp_path, {"model": "x"})
    args = ("Q: 1+1?", {"until": ["\n"], "max_gen_toks": 8})
    assert cache.get("generate_until", args) == (False, None)
    cache.put("generate_until", args, "two")
    assert cache.get("generate_until", args) == (True, "two")
    ll_args = ("ctx", " cont")
    cache.put("loglikelihood", ll_args, [-1.2345678901234567, True])
    assert cache.get("loglikelihood", ll_args) == (True, [-1.2345678901234567, True])
    assert request_key("generate_until", args) != request_key("generate_until", (args[0], {"until": ["\n"]}))
    meta = json.loads((cache.dir / "meta.json").read_text())
    assert meta["model_key"] == cache.key and meta["identity"] == {"model": "x"}
    other = RequestCache(tmp_path, {"model": "y"})
    assert other.dir != cache.dir and other.get("generate_until", args) == (False, None)


def test_interrupted_writes_leave_no_entry(tmp_path, monkeypatch):
    cache = RequestCache(tmp_path, {"model": "x"})
    args = ("a", {})

    def boom(src, dst):
        raise KeyboardInterrupt  # killed between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.put("generate_until", args, "text")
    monkeypatch.undo()
    assert cache.get("generate_until", args) == (False, None)
    assert list((cache.dir / "generate_until").iterdir()) == []
    # a temporary file left by SIGKILL (no cleanup possible) and a torn file are ignored
    (cache.dir / "generate_until" / ".x.json.abc.tmp").write_text('{"args": ["a", {}], "res')
    cache.path("generate_until", args).write_text('{"args": ["a", {}], "res')
    assert cache.get("generate_until", args) == (False, None)
    assert cache.count("generate_until") == 1  # only the torn final file counts as a name...
    cache.put("generate_until", args, "text")  # ...and is replaced on the rerun
    assert cache.get("generate_until", args) == (True, "text")
    atomic_write_text(tmp_path / "deep" / "f.json", "{}")
    assert (tmp_path / "deep" / "f.json").read_text() == "{}"


# ----------------------------------------------------------------------------- SIGKILL resume


def _entries(cache_root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in cache_root.glob("*/generate_until/*.json")}


@pytest.mark.slow
def test_sigkill_mid_run_resumes_with_identical_outputs(tiny_models, tmp_path):
    tasks = write_tiny_tasks(tmp_path / "tasks", n_docs=8)
    cache_root = tmp_path / "request_cache"
    margs = f"gen_length=16,steps=16,batch_size=1,request_cache={cache_root}"
    args = cli_args(tiny_models["llada"], tasks, tmp_path / "out_killed", margs, tasks="tiny_gen_t", limit=8)
    proc = subprocess.Popen([str(BIN / "dllm-eval"), "run", *args], env=offline_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while len(_entries(cache_root)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _entries(cache_root)
    assert 2 <= len(done) < 8, f"kill landed outside the run ({len(done)} of 8 finished)"
    assert not list((tmp_path / "out_killed").glob("**/results_*.json"))

    out = tmp_path / "out_resumed"
    args = cli_args(tiny_models["llada"], tasks, out, margs, tasks="tiny_gen_t", limit=8)
    from dllm_eval.tests.test_lm import run_cmd

    run_cmd([str(BIN / "python"), "-m", "lm_eval", *args])
    results, samples = read_output(out)
    stats = results["config"]["request_cache"]
    assert stats["hits"] == len(done) and stats["computed"] == 8 - len(done)
    assert {p: t for p, t in _entries(cache_root).items() if p in done} == done  # not rewritten
    assert len(_entries(cache_root)) == 8

    # identical to an uninterrupted, uncached run on the same requests
    from dllm_eval.harness.lm import DLLM
    from lm_eval.api.instance import Instance

    lm = DLLM(pretrained=str(tiny_models["llada"]), gen_length=16, steps=16, batch_size=8,
              mc_num=6, mc_batch_size=6, device="cpu")
    rows = samples["tiny_gen_t"]
    reqs = [Instance("generate_until", {}, tuple(r["arguments"]["gen_args_0"].values()), 0) for r in rows]
    expected = lm.generate_until(reqs, disable_tqdm=True)
    assert [r["resps"][0][0] for r in rows] == expected
