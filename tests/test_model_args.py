"""Strict model_args: every key typed, unknown keys and bad values rejected with useful messages,
and the per-request resolution of decoding options (precedence and family defaults)."""

from __future__ import annotations

import dataclasses

import pytest
from dllm_eval.harness.lm import resolve_decode_options
from dllm_eval.harness.model_args import (
    LOADER_KEYS,
    LOGLIKELIHOOD_KEYS,
    accepted_keys,
    parse_batch_size,
    parse_model_args,
)
from dllm_eval.samplers.config import DecodeConfig


def test_every_decode_config_field_is_accepted():
    keys = accepted_keys()
    for f in dataclasses.fields(DecodeConfig):
        assert f.name in keys, f.name
    for spec in (*LOADER_KEYS, *LOGLIKELIHOOD_KEYS):
        assert spec.name in keys


def test_string_and_dict_forms_are_typed_the_same():
    text = ("pretrained=/m,dtype=float32,batch_size=auto:2,steps=64,block_length=none,threshold=0.9,"
            "stop_on_eos=true,attn_layers=-1;-2,mc_num=16,ll_cfg_scale=0.5,greedy_check=false")
    a = parse_model_args(text)
    b = parse_model_args({
        "pretrained": "/m", "dtype": "float32", "batch_size": "auto:2", "steps": 64,
        "block_length": None, "threshold": 0.9, "stop_on_eos": True, "attn_layers": [-1, -2],
        "mc_num": 16, "ll_cfg_scale": 0.5, "greedy_check": False,
    })
    assert a == b
    assert a.decode == {"steps": 64, "block_length": None, "threshold": 0.9, "stop_on_eos": True,
                        "attn_layers": (-1, -2)}
    assert (a.mc_num, a.ll_cfg_scale, a.greedy_check, a.dtype) == (16, 0.5, False, "float32")
    assert isinstance(a.decode["steps"], int) and isinstance(a.decode["threshold"], float)


def test_extra_none_values_are_ignored_and_extra_fill_in():
    args = parse_model_args({"pretrained": "/m"}, batch_size=4, max_batch_size=None, device=None)
    assert args.batch_size == 4 and args.max_batch_size == 64 and args.device is None


@pytest.mark.parametrize("key,close", [("samplr", "sampler"), ("mc_nm", "mc_num"),
                                       ("block_lenght", "block_length"), ("treshold", "threshold")])
def test_unknown_key_lists_accepted_keys_with_did_you_mean(key, close):
    with pytest.raises(ValueError) as err:
        parse_model_args({"pretrained": "/m", key: "1"})
    msg = str(err.value)
    assert repr(key) in msg and f"Did you mean {close!r}" in msg
    for accepted in ("pretrained", "sampler", "mc_num", "gen_length", "kv_cache"):
        assert accepted in msg


@pytest.mark.parametrize("key,value,accepted", [
    ("dtype", "fp32", "auto, float32, bfloat16, float16"),
    ("steps", "1.5", "an integer"),
    ("steps", "many", "an integer"),
    ("threshold", "high", "a number"),
    ("stop_on_eos", "maybe", "true or false"),
    ("batch_size", "0", "'auto'"),
    ("batch_size", "big", "'auto'"),
    ("mc_num", "0", "an integer >= 1"),
    ("device", "gpu7", "cuda:N"),
    ("attn_layers", "a;b", "an integer"),
])
def test_bad_values_name_the_key_the_value_and_what_is_accepted(key, value, accepted):
    with pytest.raises(ValueError) as err:
        parse_model_args({"pretrained": "/m", key: value})
    msg = str(err.value)
    assert key in msg and (repr(value) in msg or f"{key}={value}" in msg)
    assert accepted in msg


def test_pretrained_is_required():
    with pytest.raises(ValueError, match="pretrained"):
        parse_model_args({"sampler": "margin"})


def test_batch_size_forms():
    assert parse_batch_size(8) == ("fixed", 8)
    assert parse_batch_size("8") == ("fixed", 8)
    assert parse_batch_size("auto") == ("auto", 1)
    assert parse_batch_size("auto:4") == ("auto", 4)
    with pytest.raises(ValueError, match="batch_size"):
        parse_batch_size(True)


# ----------------------------------------------------------------------------- resolution


def test_llada_defaults_round_max_gen_toks_up_to_whole_blocks():
    opts, budget = resolve_decode_options({}, "llada", {"max_gen_toks": 100, "until": ["\n"]})
    # block 32 (family default) -> 4 blocks of 32 = 128 tokens, output cut back to 100
    assert opts["gen_length"] == 128 and opts["block_length"] == 32 and opts["steps"] == 128
    assert opts["sampler"] == "confidence" and opts["stop_on_eos"] is True and budget == 100
    DecodeConfig(**opts)


def test_short_answers_use_one_block():
    opts, budget = resolve_decode_options({}, "llada", {"max_gen_toks": 8})
    assert (opts["gen_length"], opts["block_length"], opts["steps"], budget) == (8, 8, 8, None)


def test_dream_and_sdar_defaults():
    dream, _ = resolve_decode_options({}, "dream", {"max_gen_toks": 64})
    assert (dream["sampler"], dream["schedule"], dream["block_length"], dream["steps"]) == (
        "entropy", "linspace", None, 64)
    sdar, budget = resolve_decode_options({}, "sdar", {"max_gen_toks": 10}, block_size=4)
    assert (sdar["gen_length"], sdar["block_length"], sdar["steps_per_block"], sdar["schedule"]) == (
        12, 4, 4, "block_even")
    assert budget == 10
    DecodeConfig(**dream)
    DecodeConfig(**sdar)


def test_precedence_model_args_over_task_over_family():
    # the task asks for sampling; model_args fix temperature and the sampler
    opts, budget = resolve_decode_options(
        {"temperature": 0.0, "sampler": "margin", "gen_length": 16, "steps": 8},
        "llada", {"do_sample": True, "temperature": 0.7, "max_gen_toks": 100},
    )
    assert opts["temperature"] == 0.0 and opts["sampler"] == "margin"
    assert opts["gen_length"] == 16 and opts["steps"] == 8 and budget is None  # explicit length wins
    task_only, _ = resolve_decode_options({}, "llada", {"do_sample": True, "temperature": 0.7})
    assert task_only["temperature"] == 0.7
    greedy, _ = resolve_decode_options({}, "llada", {"do_sample": False, "temperature": 0.7})
    assert greedy["temperature"] == 0.0
    sample_default, _ = resolve_decode_options({}, "llada", {"do_sample": True})
    assert sample_default["temperature"] == 1.0
    # a decoding option set by the task itself
    task_opt, _ = resolve_decode_options({}, "llada", {"sampler": "entropy", "max_gen_toks": 32})
    assert task_opt["sampler"] == "entropy"


def test_explicit_steps_disable_sdar_steps_per_block_default():
    opts, _ = resolve_decode_options({"steps": 6}, "sdar", {"max_gen_toks": 12}, block_size=4)
    assert "steps_per_block" not in opts and opts["steps"] == 6
    DecodeConfig(**opts)


def test_unknown_generation_kwarg_is_rejected():
    with pytest.raises(ValueError, match="repetition_penalty"):
        resolve_decode_options({}, "llada", {"repetition_penalty": 1.1})


def test_seed_defaults_to_lm_evals_seed():
    opts, _ = resolve_decode_options({}, "llada", {})
    assert opts["seed"] == 1234
    opts, _ = resolve_decode_options({"seed": 7}, "llada", {})
    assert opts["seed"] == 7
