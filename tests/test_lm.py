"""The lm-eval model ``dllm``: stock CLI and ``simple_evaluate`` runs on the tiny fixture
checkpoints with a small local task, request batching and ``until`` handling, chat templates,
model info and device/rank bookkeeping.

The helpers at the top (tiny task files, lm-eval subprocess runner, result readers) are also
used by test_cache.py and test_accelerate.py.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

BIN = Path(sys.executable).parent


# ----------------------------------------------------------------------------- helpers


def write_tiny_tasks(root: Path, n_docs: int = 8) -> Path:
    """A generate_until task ``tiny_gen_t`` and a multiple-choice task ``tiny_mc_t`` over a
    local jsonl file (no network); returns the folder to pass as ``--include_path``."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        {"question": f"What is {i} plus {i}?" + " Think." * (i % 3), "answer": str(2 * i),
         "choices": [str(2 * i), str(2 * i + 1), "none"], "label": 0}
        for i in range(n_docs)
    ]
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = (
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\ndoc_to_text: \"Q: {{question}}\\nA:\"\n"
    )
    (root / "tiny_gen_t.yaml").write_text(
        "task: tiny_gen_t\n" + common + "output_type: generate_until\n"
        "doc_to_target: \"{{answer}}\"\n"
        "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 8\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (root / "tiny_mc_t.yaml").write_text(
        "task: tiny_mc_t\n" + common + "output_type: multiple_choice\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return root


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("WORLD_SIZE", None)
    return env


def run_cmd(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=offline_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return proc


def read_output(out_dir: Path) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """(results json, {task: samples sorted by doc_id}) of one lm-eval --output_path folder."""
    results = sorted(glob.glob(str(out_dir / "**" / "results_*.json"), recursive=True))
    assert results, f"no results json under {out_dir}"
    samples: dict[str, list[dict]] = {}
    for path in glob.glob(str(out_dir / "**" / "samples_*.jsonl"), recursive=True):
        task = Path(path).name[len("samples_"):].rsplit("_", 1)[0]
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        samples[task] = sorted(rows, key=lambda r: r["doc_id"])
    return json.loads(Path(results[-1]).read_text()), samples


def cli_args(model_dir: Path, tasks_dir: Path, out: Path, model_args: str = "", tasks: str = "tiny_gen_t,tiny_mc_t",
             limit: int = 4) -> list[str]:
    margs = f"pretrained={model_dir},mc_num=6,mc_batch_size=6" + (f",{model_args}" if model_args else "")
    return ["--model", "dllm", "--model_args", margs, "--tasks", tasks, "--include_path", str(tasks_dir),
            "--limit", str(limit), "--output_path", str(out), "--log_samples"]


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory) -> Path:
    return write_tiny_tasks(tmp_path_factory.mktemp("tiny_tasks"))


@pytest.fixture(scope="module")
def llada_lm(tiny_models):
    from dllm_eval.harness.lm import DLLM

    return DLLM(pretrained=str(tiny_models["llada"]), dtype="float32", batch_size=3, device="cpu")


def gen_request(context: str, **gen_kwargs: Any) -> Any:
    from lm_eval.api.instance import Instance

    return Instance("generate_until", {}, (context, gen_kwargs), 0)


# ----------------------------------------------------------------------------- stock CLI


@pytest.mark.slow
def test_stock_lm_eval_cli_writes_results(tiny_models, tiny_tasks, tmp_path):
    out = tmp_path / "out"
    run_cmd([str(BIN / "lm_eval"), *cli_args(tiny_models["llada"], tiny_tasks, out, "sampler=margin,batch_size=2")])
    results, samples = read_output(out)
    assert set(results["results"]) == {"tiny_gen_t", "tiny_mc_t"}
    assert "exact_match,none" in results["results"]["tiny_gen_t"]
    assert "acc,none" in results["results"]["tiny_mc_t"]
    cfg = results["config"]
    assert cfg["model"] == "dllm" and cfg["model_family"] == "llada" and cfg["sampler"] == "margin"
    assert cfg["nfe_total"] > 0 and cfg["tokens_per_forward"] > 0 and cfg["generated_rows"] == 4
    assert cfg["loglikelihood"]["mc_num"] == 6
    assert len(samples["tiny_gen_t"]) == 4 and len(samples["tiny_mc_t"]) == 4


SAMPLER_FAMILY = [(s, "llada") for s in ("random", "confidence", "margin", "entropy", "sequential", "attn", "agdo")]
SAMPLER_FAMILY += [("entropy", "dream"), ("confidence", "sdar"), ("attn", "dream")]


@pytest.fixture(scope="module")
def task_manager(tiny_tasks):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tiny_tasks), include_defaults=False)


@pytest.mark.parametrize("sampler,family", SAMPLER_FAMILY)
def test_simple_evaluate_each_sampler(sampler, family, tiny_models, task_manager):
    """``simple_evaluate(model="dllm")`` after ``import dllm_eval``, for every sampler."""
    import dllm_eval  # noqa: F401  (registers the model)
    import lm_eval

    res = lm_eval.simple_evaluate(
        model="dllm",
        model_args={"pretrained": str(tiny_models[family]), "sampler": sampler, "batch_size": 4},
        tasks=["tiny_gen_t"], limit=4, task_manager=task_manager, device="cpu",
    )
    assert "exact_match,none" in res["results"]["tiny_gen_t"]
    assert res["config"]["model_family"] == family and res["config"]["sampler"] == sampler
    assert res["config"]["generated_rows"] == 4 and res["config"]["nfe_total"] > 0


# ----------------------------------------------------------------------------- generate_until


def _fake_engine(lm, plans: dict[int, list[int]], calls: list):
    """A stand-in for ``dllm_eval.generate`` that writes ``plans[prompt_len]`` after each prompt."""
    import torch

    def fake(model, input_ids, attention_mask=None, adapter=None, config=None, **_):
        calls.append(SimpleNamespace(ids=input_ids.clone(), mask=attention_mask, config=config))
        rows = []
        for r in range(input_ids.shape[0]):
            real = int(attention_mask[r].sum()) if attention_mask is not None else input_ids.shape[1]
            plan = plans[real] + [lm.adapter.mask_id] * config.gen_length
            rows.append(plan[: config.gen_length])
        gen = torch.tensor(rows, dtype=torch.long)
        b = input_ids.shape[0]  # each row: 7 forwards, 14 tokens committed -> 2 tokens/forward
        return SimpleNamespace(sequences=torch.cat([input_ids, gen], dim=1), nfe=7, tokens_per_forward=2.0 * b,
                               stats={"nfe_rows": [7] * b, "tokens_committed": 14 * b})

    return fake


def test_generate_until_batches_by_length_and_cuts_at_until_and_eos(llada_lm, monkeypatch):
    import dllm_eval

    lm = llada_lm
    contexts = ["a", "bbbbbbbb", "ccc", "dddddd", "ee"]
    eos = lm.adapter.eos_ids[0]
    plans = {}
    for i, c in enumerate(contexts):
        text = lm.tok_encode(f"ans{i}\n\nrest")
        plans[len(lm.tok_encode(c))] = text + [eos] + lm.tok_encode("junk")
    calls: list = []
    monkeypatch.setattr(dllm_eval, "generate", _fake_engine(lm, plans, calls))
    reqs = [gen_request(c, until=["\n\n"], max_gen_toks=20) for c in contexts]
    out = lm.generate_until(reqs, disable_tqdm=True)
    assert out == [f"ans{i}" for i in range(len(contexts))]  # original order restored
    widths = [c.ids.shape[1] for c in calls]
    assert [c.ids.shape[0] for c in calls] == [3, 2]  # batch_size=3
    assert widths == sorted(widths, reverse=True)  # longest prompts first
    first = calls[0]
    assert first.mask is not None and first.mask.shape == first.ids.shape
    # left padding: every row ends with its real tokens
    assert first.ids[1, -1].item() == lm.tok_encode("dddddd")[-1]
    assert first.mask[1].tolist() == [0, 0] + [1] * 6
    info = lm.get_model_info()
    # per-sample numbers do not depend on the batch size (batches of 3 and 2 here)
    assert info["nfe_total"] == 14 and info["nfe_per_sample"] == 7 and info["tokens_per_forward"] == 2.0


def test_eos_cut_and_token_budget(llada_lm, monkeypatch):
    import dllm_eval

    lm = llada_lm
    ctx = "hello"
    calls: list = []
    plan = lm.tok_encode("0123456789ABCDEFGHIJ")
    monkeypatch.setattr(dllm_eval, "generate", _fake_engine(lm, {len(lm.tok_encode(ctx)): plan}, calls))
    (text,) = lm.generate_until([gen_request(ctx, until=["Z"], max_gen_toks=10)], disable_tqdm=True)
    # a 32-token block longer than the answer becomes one block of max_gen_toks=10 tokens
    assert calls[0].config.gen_length == 10 and text == "0123456789"
    (text,) = lm.generate_until([gen_request(ctx, until=["5"], max_gen_toks=40)], disable_tqdm=True)
    assert calls[1].config.gen_length == 64 and calls[1].config.block_length == 32
    assert text == "01234"  # cut at the stop string
    (text,) = lm.generate_until([gen_request(ctx, until="XYZ", max_gen_toks=40)], disable_tqdm=True)
    assert text == "0123456789ABCDEFGHIJ"  # pad/mask tail removed, string `until` accepted


def test_batched_generation_matches_one_by_one(tiny_models):
    """Padding + attention mask must not change a row's tokens (per-row generators)."""
    from dllm_eval.harness.lm import DLLM

    reqs = [gen_request(c, until=["\n\n"], max_gen_toks=8) for c in ("Q: 1", "Question: longer one", "Q: 12")]
    for family in ("llada", "dream"):
        one = DLLM(pretrained=str(tiny_models[family]), batch_size=1, sampler="margin", device="cpu")
        many = DLLM(pretrained=str(tiny_models[family]), batch_size=3, sampler="margin", device="cpu")
        assert one.generate_until(reqs, disable_tqdm=True) == many.generate_until(reqs, disable_tqdm=True)


def test_unknown_model_arg_fails_before_loading(tmp_path):
    from dllm_eval.harness.lm import DLLM

    with pytest.raises(ValueError, match="Did you mean 'sampler'"):
        DLLM(pretrained=str(tmp_path / "missing"), samplr="margin")


def test_unknown_gen_kwarg_is_rejected(llada_lm):
    with pytest.raises(ValueError, match="repetition_penalty"):
        llada_lm.generate_until([gen_request("x", until=["\n"], repetition_penalty=1.2)], disable_tqdm=True)


def test_invalid_decode_combination_fails_at_construction(tiny_models):
    from dllm_eval.harness.lm import DLLM

    with pytest.raises(ValueError, match="threshold"):
        DLLM(pretrained=str(tiny_models["llada"]), threshold=1.5)


# ----------------------------------------------------------------------------- chat, info, devices


def test_chat_template_and_gen_prefix(llada_lm):
    lm = llada_lm
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    prompt = lm.apply_chat_template(msgs, add_generation_prompt=True)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "What is 2+2?<|eot_id|>" in prompt
    # lm-eval passes add_generation_prompt=False with a gen_prefix as the last assistant message
    cont = lm.apply_chat_template(msgs + [{"role": "assistant", "content": "The answer is"}],
                                  add_generation_prompt=False)
    assert cont.endswith("The answer is") and cont.count("<|eot_id|>") == 1
    assert lm.chat_template(True) == lm.adapter.chat_template and lm.chat_template(False) is None
    assert lm.tokenizer_name == str(lm.tokenizer.name_or_path).replace("/", "__")


def test_model_info_lists_every_decoding_option(llada_lm):
    from dllm_eval.samplers.config import DecodeConfig

    info = llada_lm.get_model_info()
    assert info["model_family"] == "llada" and info["world_size"] == 1
    assert info["model_num_parameters"] > 0 and info["model_dtype"] == "torch.float32"
    names = {f.name for f in dataclasses.fields(DecodeConfig)}
    for cfg in info["decode_configs"]:
        assert set(cfg) == names
    assert {"mc_num", "mc_batch_size", "ll_cfg_scale", "greedy_check", "seed"} <= set(info["loglikelihood"])


def test_device_rank_world_size(llada_lm, tiny_models):
    import torch
    from dllm_eval.harness.lm import DLLM

    lm = llada_lm
    assert lm.device == torch.device("cpu") and lm.rank == 0 and lm.world_size == 1
    assert "device" not in vars(lm)  # the read-only property of lm-eval's LM is never shadowed
    assert next(lm.model.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        # lm-eval always passes --device (default cuda:0): without CUDA it falls back to cpu...
        built = DLLM.create_from_arg_obj({"pretrained": str(tiny_models["sdar"])},
                                         {"device": "cuda:0", "batch_size": 2})
        assert built.device == torch.device("cpu") and built.args.batch_size == 2
        # ...but an explicit model_args device must exist
        with pytest.raises(ValueError, match="device='cuda'"):
            DLLM(pretrained=str(tiny_models["sdar"]), device="cuda")
    # model_args win over lm-eval's --batch_size
    built = DLLM.create_from_arg_string(f"pretrained={tiny_models['sdar']},batch_size=5",
                                        {"batch_size": 1, "device": "cpu"})
    assert built.args.batch_size == 5
