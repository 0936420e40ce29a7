"""``dllm-eval train sft|rl``: flags, config file + overrides, errors, and a trained checkpoint
scored by lm-eval's ``dllm`` model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap
from pathlib import Path

import dllm_eval
import pytest
import torch
from dllm_eval import cli
from dllm_eval.trainers import cli as train_cli
from dllm_eval.trainers.config import RLConfig, SFTConfig

WORDS = ["apple", "berry", "cherry", "date"]


def toy_data(tmp_path: Path) -> Path:
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i % 4}:", "response": WORDS[i % 4]}) + "\n" for i in range(16)))
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    return p


def test_every_option_is_a_documented_flag():
    for mode, cls in (("sft", SFTConfig), ("rl", RLConfig)):
        sub = parser()._subparsers._group_actions[0].choices[mode]
        helps = {a.dest: a.help for a in sub._actions}
        for f in dataclasses.fields(cls):
            assert f.name in helps, (mode, f.name)
            assert f.metadata["help"] and f"(default: {f.default!r})" in helps[f.name].replace("%%", "%")


def test_config_file_and_overrides(tmp_path):
    cfg_file = tmp_path / "sft.yaml"
    cfg_file.write_text("masking: blockwise\nmax-steps: 7\nblock_size: 4\nlearning_rate: 0.01\n")
    args = parser().parse_args(["sft", "--config", str(cfg_file), "--max-steps", "3", "--model", "m",
                                "--data", "d", "--output", "o", "--no-progress"])
    cfg = train_cli.build_config("sft", args)
    assert (cfg.masking, cfg.max_steps, cfg.block_size, cfg.learning_rate, cfg.progress) == ("blockwise", 3, 4, 0.01, False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("maskng: agdo\n")
    args = parser().parse_args(["sft", "--config", str(bad)])
    with pytest.raises(ValueError, match="unknown SFTConfig option 'maskng'.*Did you mean 'masking'"):
        train_cli.build_config("sft", args)


def test_bad_values_exit_2_naming_the_option(tmp_path, tiny_models, capsys):
    rc = cli.main(["train", "sft", "--model", str(tiny_models["llada"]), "--data", str(toy_data(tmp_path)),
                   "--masking", "bert", "--output", str(tmp_path / "o")])
    assert rc == 2
    assert "masking='bert' is invalid; accepted: random, blockwise, agdo" in capsys.readouterr().err


def _write_task(tmp_path: Path) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tmp_path / "toy_eval.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}:", "response": WORDS[i]}) + "\n" for i in range(4)))
    (tasks / "toy_words.yaml").write_text(textwrap.dedent(f"""
        task: toy_words
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: generate_until
        doc_to_text: "{{{{prompt}}}}"
        doc_to_target: "{{{{response}}}}"
        generation_kwargs:
          until: []
          max_gen_toks: 8
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """))
    return tasks


def test_train_sft_cli_then_lm_eval_scores_the_checkpoint(tmp_path, tiny_models):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    out = tmp_path / "sft-out"
    rc = cli.main(["train", "sft", "--model", str(tiny_models["llada"]), "--data", str(toy_data(tmp_path)),
                   "--masking", "random", "--max-steps", "80", "--output", str(out), "--learning-rate", "0.003",
                   "--batch-size", "8", "--logging-steps", "80", "--device", "cpu", "--no-progress"])
    assert rc == 0
    model, tok, adapter = dllm_eval.load(str(out))  # official format, loads back

    tasks = _write_task(tmp_path)

    def score(pretrained: str) -> float:
        res = lm_eval.simple_evaluate(
            model="dllm", model_args=f"pretrained={pretrained},steps=8,sampler=confidence,device=cpu",
            tasks=["toy_words"], task_manager=TaskManager(include_path=str(tasks)), batch_size=4,
        )
        return res["results"]["toy_words"]["exact_match,none"]

    before, after = score(str(tiny_models["llada"])), score(str(out))
    # the untrained random model never writes a word; the SFT checkpoint answers the memorised ones
    assert before == 0.0
    assert after >= 0.5, after


def test_train_rl_cli_runs_and_saves(tmp_path, tiny_models):
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}:", "answer": "a"}) + "\n" for i in range(4)))
    out = tmp_path / "rl-out"
    rc = cli.main(["train", "rl", "--model", str(tiny_models["llada"]), "--data", str(data), "--output", str(out),
                   "--estimator", "d1", "--reward", "dllm_eval.tests.test_rl:byte_fraction_reward",
                   "--max-steps", "2", "--group-size", "4", "--gen-length", "8", "--decode", "steps=8",
                   "--learning-rate", "0.003", "--device", "cpu", "--no-progress"])
    assert rc == 0
    trained, _, _ = dllm_eval.load(str(out))
    start, _, _ = dllm_eval.load(str(tiny_models["llada"]))
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters()))
