"""Tests of the offline demo (``dllm-eval demo``) and its CI regression gate.

Fast tests check the pieces against independent truth: the task's regex filter (lm-eval's own
``RegexFilter``) pulls out the value that the arithmetic in each synthetic answer computes, the
task prompt renders (with jinja, as lm-eval does) to exactly the training prompt, the shipped
checkpoint is a small native LLaDA with the byte tokenizer and the architecture that
``make_init_model`` builds, and ``TRAINING.md`` records the demo's training command. The slow
tests run the CI gate: the shipped checkpoint on a fixed slice through the stock lm-eval path,
then ``dllm-eval regress`` against ``results/baselines/demo.json`` (must pass), and against a
baseline raised beyond its tolerance (must fail).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
from dllm_eval.results import demo, synthetic

REPO = Path(demo.__file__).resolve().parents[1]
CI_LIMIT = 40


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(argv)


def _step_value(answer: str) -> int:
    """The result of the last ``a op b = c`` step, recomputed from a and b."""
    line = answer.splitlines()[-2]
    a, op, b = re.fullmatch(r"(\d+)([-+*/])(\d+)=\d+", line).groups()
    a, b = int(a), int(b)
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def test_task_filter_extracts_the_final_answer(tmp_path: Path) -> None:
    import yaml
    from lm_eval.filters.extraction import RegexFilter

    test = synthetic.write_jsonl(synthetic.generate(30, seed=5), tmp_path / "test.jsonl")
    cfg = yaml.safe_load(demo.write_task(tmp_path / "task", test).read_text())
    assert cfg["task"] == demo.TASK_NAME
    assert cfg["dataset_kwargs"]["data_files"]["test"] == str(test.resolve())
    pattern = cfg["filter_list"][0]["filter"][0]["regex_pattern"]
    recs = [json.loads(line) for line in test.read_text().splitlines()]
    # a model answer continues the prompt after the target delimiter, like the training response
    responses = [[demo.sft_record(r)["response"]] for r in recs]
    got = RegexFilter(regex_pattern=pattern).apply(responses, recs)
    assert [g[0] for g in got] == [str(_step_value(r["answer"])) for r in recs]
    assert RegexFilter(regex_pattern=pattern).apply([["7+8=15"]], [{}]) == [["[invalid]"]]


def test_task_prompt_and_target_match_training_data(tmp_path: Path) -> None:
    import jinja2
    import yaml

    paths = synthetic.write_splits(tmp_path, n_train=5, n_test=5, seed=3)
    cfg = yaml.safe_load(demo.write_task(tmp_path / "task", paths["test"]).read_text())
    env = jinja2.Environment()
    for line in paths["test"].read_text().splitlines():
        rec = json.loads(line)
        prompt = env.from_string(cfg["doc_to_text"]).render(**rec)
        target = env.from_string(cfg["doc_to_target"]).render(**rec)
        sft = demo.sft_record(rec)
        assert prompt == sft["prompt"] == f"Question: {rec['question']}\nAnswer:"
        assert sft["response"] == cfg["target_delimiter"] + rec["answer"]
        assert target == str(_step_value(rec["answer"]))


def test_write_data_makes_disjoint_gsm8k_splits(tmp_path: Path) -> None:
    paths = demo.write_data(tmp_path)
    test = [json.loads(x) for x in paths["test"].read_text().splitlines()]
    train = [json.loads(x) for x in paths["train"].read_text().splitlines()]
    sft = [json.loads(x) for x in paths["train_sft"].read_text().splitlines()]
    assert len(test) == demo.N_TEST and len(train) == len(sft) == demo.N_TRAIN
    assert not {r["question"] for r in test} & {r["question"] for r in train}
    assert sft[0] == demo.sft_record(train[0])
    assert all(r["answer"].rsplit("#### ", 1)[1] == str(_step_value(r["answer"])) for r in test)


def test_shipped_checkpoint_is_a_small_native_llada(tmp_path: Path) -> None:
    import dllm_eval

    folder = demo.MODEL_DIR
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "TRAINING.md"):
        assert (folder / name).is_file(), name
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 10 * 2**20
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "llada"
    model, tok, adapter = dllm_eval.load(str(folder), dtype="float32")
    assert type(model).__name__ == "LLaDAModelLM" and adapter.name == "llada"
    assert adapter.mask_id == demo.MASK_ID and demo.EOS_ID in adapter.eos_ids
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n <= 3_000_000
    text = "Question: Ann has 3 cups.\nAnswer: 2*3=6\n#### 6"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode()) and tok.decode(ids) == text
    # same architecture as a fresh initialisation of the demo model
    init = demo.make_init_model(tmp_path / "init")
    fresh = json.loads((init / "config.json").read_text())
    for key, value in demo.MODEL_CONFIG.items():
        assert cfg[key] == fresh[key] == value, key


def test_training_md_records_the_commands() -> None:
    text = (demo.MODEL_DIR / "TRAINING.md").read_text()
    argvs = demo.train_commands("init", "data/train_sft.jsonl", "model")
    assert len(argvs) == len(demo.TRAIN_STAGES) >= 1
    for argv in argvs:
        assert "dllm-eval " + " ".join(argv) in text
    assert argvs[0][3] == "init" and argvs[-1][-1] == "model"
    for earlier, later in zip(argvs, argvs[1:]):  # each stage trains the previous one's output
        assert later[3] == earlier[-1]
    assert "dllm-eval demo --retrain" in text


def test_stage_steps_split_like_the_shipped_recipe() -> None:
    shipped = demo.stage_steps(None)
    assert shipped == [int(f[f.index("--max-steps") + 1]) for f in demo.TRAIN_STAGES]
    for total in (len(shipped), 7, 1001):
        steps = demo.stage_steps(total)
        assert sum(steps) == total and min(steps) >= 1 and len(steps) == len(shipped)
    with pytest.raises(ValueError, match="train_steps=1"):
        demo.stage_steps(len(shipped) - 1 if len(shipped) > 1 else 0)


def test_model_args_and_lm_eval_command() -> None:
    args = demo.model_args("/m/demo_model", "threshold")
    assert args == "pretrained=/m/demo_model,sampler=confidence,threshold=0.9,gen_length=32,steps=16"
    argv = demo.lm_eval_argv("/m", "agdo", "/t", "/o", 5, 8)
    assert argv[:3] == ["run", "--model", "dllm"] and argv[-2:] == ["--limit", "5"]
    assert set(demo.SAMPLERS) >= {"random", "confidence", "margin", "entropy", "attn", "agdo", "threshold"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--samplers", "confidence,greedy"], "'greedy'"),
        (["--limit", "0"], "limit=0"),
        (["--train-steps", "5"], "train_steps=5"),
        (["--baseline", "/nonexistent.json"], "baseline='/nonexistent.json'"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], needle: str, tmp_path: Path, capsys) -> None:
    assert demo.run(_parse(["--output", str(tmp_path / "o"), *argv])) == 2
    err = capsys.readouterr().err
    assert needle in err and "accepted" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ci_gate_shipped_checkpoint_against_committed_baseline(tmp_path: Path, capsys) -> None:
    """The CI step: fixed slice, every sampler, `dllm-eval regress` against the committed baseline."""
    out = tmp_path / "ci"
    code = demo.run(_parse(["--output", str(out), "--limit", str(CI_LIMIT), "--baseline", str(demo.BASELINE)]))
    text = capsys.readouterr().out
    assert code == 0, text
    assert "PASS" in text
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "accuracy_vs_nfe.png",
                 "accuracy_vs_nfe.svg"):
        assert (out / "leaderboard" / name).is_file(), name
    rows = {r["sampler"]: r for r in json.loads((out / "summary.json").read_text())}
    assert set(rows) == set(demo.SAMPLERS)
    assert all(r["n"] == CI_LIMIT for r in rows.values())
    # the threshold mode commits more tokens per forward than the 2 of the fixed schedule
    assert rows["threshold"]["nfe_per_sample"] < rows["confidence"]["nfe_per_sample"]
    assert rows["threshold"]["tokens_per_forward"] > rows["confidence"]["tokens_per_forward"]

    # the same results against a baseline whose accuracies are 0.5 higher must fail
    base = json.loads(demo.BASELINE.read_text())
    raised = 0
    for entry in base["metrics"]:
        if entry["id"].endswith("exact_match,strict-match"):
            entry["value"] = float(entry["value"]) + 0.5
            raised += 1
    assert raised == len(demo.SAMPLERS)
    bad = tmp_path / "raised.json"
    bad.write_text(json.dumps(base))
    assert demo.regress(out / "lm_eval", bad) == 1
    assert "REGRESSED" in capsys.readouterr().out


@pytest.mark.slow
def test_retrain_path_runs_our_agdo_sft(tmp_path: Path, capsys) -> None:
    out = tmp_path / "re"
    code = demo.run(_parse(["--output", str(out), "--retrain", "--train-steps", "2", "--limit", "4",
                            "--samplers", "confidence", "--batch-size", "4"]))
    assert code == 0
    text = capsys.readouterr().out
    assert "--masking agdo" in text and text.count("$ dllm-eval train sft") == len(demo.TRAIN_STAGES)
    assert all(f"--max-steps {n}" in text for n in demo.stage_steps(2))
    model = out / "train" / "model"
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
    init = out / "train" / "init" / "model.safetensors"
    from safetensors.torch import load_file

    a, b = load_file(str(init)), load_file(str(model / "model.safetensors"))
    assert a.keys() == b.keys() and any(not a[k].equal(b[k]) for k in a)
    assert str(model) in text
