"""``dllm-eval regress`` tests: record a baseline from real lm-eval folders, then move metrics.

The inputs are the recorded ``lm_eval --model hf`` folder and one run of the scripted
diffusion-style LM written by lm-eval's own ``simple_evaluate`` + ``EvaluationTracker`` (helpers
in ``test_leaderboard``). A "changed evaluation" is that folder copied with one number of its
results JSON edited, so the expected verdict follows from the edit and the tolerance by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dllm_eval.cli import main
from dllm_eval.results import regress
from dllm_eval.tests.test_leaderboard import HF_RECORDED, make_task, scripted_run

KEY = "exact_match,strict-match"
SE_KEY = "exact_match_stderr,strict-match"


@pytest.fixture(scope="module")
def dllm_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regress")
    make_task(root)
    mp = pytest.MonkeyPatch()
    try:
        scripted_run(root, root / "out", mp, "confidence", steps=16)
    finally:
        mp.undo()
    return root / "out"


def edited_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    for f in dst.rglob("results_*.json"):
        raw = json.loads(f.read_text())
        edit(raw)
        f.write_text(json.dumps(raw))
    return dst


def raw_of(folder: Path) -> dict:
    return json.loads(next(folder.rglob("results_*.json")).read_text())


@pytest.fixture
def baseline(dllm_run, tmp_path) -> Path:
    path = tmp_path / "baseline.json"
    assert (
        main(["regress", str(dllm_run), str(HF_RECORDED), "--baseline", str(path), "--record"]) == 0
    )
    return path


def test_record_writes_values_config_and_environment(baseline, dllm_run):
    doc = json.loads(baseline.read_text())
    raw = raw_of(dllm_run)
    assert doc["format"] == "dllm-eval-baseline" and doc["tolerance"] == ["2se"]
    by_id = {e["id"]: e for e in doc["metrics"]}
    acc = by_id[
        f"scripted-model [scripted_dllm/confidence] gen_length=32 steps=16 :: synth_arith/{KEY}"
    ]
    assert acc["value"] == raw["results"]["synth_arith"][KEY]
    assert acc["stderr"] == raw["results"]["synth_arith"][SE_KEY]
    assert acc["higher_is_better"] is True and acc["n"] == 24
    nfe = by_id[
        "scripted-model [scripted_dllm/confidence] gen_length=32 steps=16 :: synth_arith/nfe_per_sample,-"
    ]
    assert nfe["value"] == 16 and nfe["higher_is_better"] is False
    assert by_id["tiny-llama [hf/autoregressive] :: synth_mc/acc,none"]["value"] == 0.2
    assert len(doc["metrics"]) == 2 + 2 + 4  # 2 filters + nfe + tpf; hf: 4 metrics
    runs = {r["backend"]: r for r in doc["runs"]}
    assert runs["scripted_dllm"]["model_args"]["sampler"] == "confidence"
    assert runs["scripted_dllm"]["lm_eval_config"]["nfe_total"] == 16 * 24
    assert runs["hf"]["lm_eval_version"] == "0.4.13"
    env = doc["environment"]
    assert env["python"] and env["packages"]["lm_eval"] and "platform" in env


def test_unchanged_results_pass(baseline, dllm_run, capsys):
    assert main(["regress", str(dllm_run), str(HF_RECORDED), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "8 within tolerance" in out


def test_drop_beyond_two_stderr_fails_within_passes(baseline, dllm_run, tmp_path, capsys):
    raw = raw_of(dllm_run)
    acc, se = raw["results"]["synth_arith"][KEY], raw["results"]["synth_arith"][SE_KEY]
    assert se > 0

    def drop(k: float):
        def edit(r):
            r["results"]["synth_arith"][KEY] = acc - k * se

        return edit

    small = edited_copy(dllm_run, tmp_path / "small", drop(1.9))
    assert main(["regress", str(small), str(HF_RECORDED), "--baseline", str(baseline)]) == 0
    assert "PASS" in capsys.readouterr().out
    big = edited_copy(dllm_run, tmp_path / "big", drop(2.1))
    assert main(["regress", str(big), str(HF_RECORDED), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("REGRESSED"))
    assert f"synth_arith/{KEY}" in line and f"{-2.1 * se:+.4g}" in line and f"{2 * se:.4g}" in line
    assert "FAIL" in out


def test_absolute_tolerance_and_improvement(baseline, dllm_run, tmp_path, capsys):
    raw = raw_of(dllm_run)
    acc = raw["results"]["synth_arith"][KEY]

    def shift(d: float):
        def edit(r):
            r["results"]["synth_arith"][KEY] = acc + d

        return edit

    down = edited_copy(dllm_run, tmp_path / "down", shift(-0.05))
    args = ["regress", str(down), str(HF_RECORDED), "--baseline", str(baseline)]
    assert main([*args, "--tolerance", "0.06"]) == 0
    assert main([*args, "--tolerance", "0.04"]) == 1
    # the last matching tolerance wins: a loose default, a strict rule for this task
    assert main([*args, "--tolerance", "0.5", "--tolerance", "synth_arith/*=0.01"]) == 1
    capsys.readouterr()
    up = edited_copy(dllm_run, tmp_path / "up", shift(+0.2))
    assert (
        main(
            [
                "regress",
                str(up),
                str(HF_RECORDED),
                "--baseline",
                str(baseline),
                "--tolerance",
                "0.01",
            ]
        )
        == 0
    )
    assert any(
        x.startswith("improved") and f"synth_arith/{KEY}" in x
        for x in capsys.readouterr().out.splitlines()
    )


def test_more_nfe_or_fewer_tokens_per_forward_fail(baseline, dllm_run, tmp_path, capsys):
    def more_nfe(r):
        r["config"]["nfe_total"] = 17 * 24
        r["config"]["tokens_per_forward"] = 32 / 17

    slow = edited_copy(dllm_run, tmp_path / "slow", more_nfe)
    assert main(["regress", str(slow), str(HF_RECORDED), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    regressed = [x for x in out.splitlines() if x.startswith("REGRESSED")]
    assert len(regressed) == 2
    assert any("nfe_per_sample" in x for x in regressed) and any(
        "tokens_per_forward" in x for x in regressed
    )
    # allowed explicitly
    assert (
        main(
            [
                "regress",
                str(slow),
                str(HF_RECORDED),
                "--baseline",
                str(baseline),
                "--tolerance",
                "2se",
                "--tolerance",
                "nfe_per_sample=1",
                "--tolerance",
                "tokens_per_forward=0.2",
            ]
        )
        == 0
    )


def test_missing_metric_fails_new_metric_passes(baseline, dllm_run, tmp_path, capsys):
    assert (
        main(["regress", str(dllm_run), "--baseline", str(baseline)]) == 1
    )  # the hf run is missing
    assert capsys.readouterr().out.count("MISSING") == 4

    def extra(r):
        r["results"]["synth_arith"]["exact_match,other-filter"] = 0.5

    more = edited_copy(dllm_run, tmp_path / "more", extra)
    assert main(["regress", str(more), str(HF_RECORDED), "--baseline", str(baseline)]) == 0
    assert any(x.startswith("new") for x in capsys.readouterr().out.splitlines())


def test_bad_input_exit_two(baseline, dllm_run, tmp_path, capsys):
    assert main(["regress", str(dllm_run), "--baseline", str(baseline), "--tolerance", "abc"]) == 2
    assert "--tolerance" in capsys.readouterr().err
    assert main(["regress", str(dllm_run), "--baseline", str(tmp_path / "none.json")]) == 2
    not_baseline = tmp_path / "x.json"
    not_baseline.write_text("{}")
    assert main(["regress", str(dllm_run), "--baseline", str(not_baseline)]) == 2
    assert "not a dllm-eval-baseline" in capsys.readouterr().err


def test_tolerance_parse():
    t = regress.Tolerance.parse("gsm8k*=2.5se")
    assert (t.glob, t.amount, t.in_stderr) == ("gsm8k*", 2.5, True)
    assert regress.Tolerance.parse("0.02") == regress.Tolerance("*", 0.02, False, "0.02")
    entry = {
        "id": "m [b/s] :: t/acc,none",
        "task": "t",
        "metric": "acc",
        "filter": "none",
        "stderr": 0.1,
    }
    assert t.amount_for(entry, None) == pytest.approx(0.25)
    assert regress.Tolerance.parse("acc=1se").matches(entry)
    assert not regress.Tolerance.parse("gsm8k*=1se").matches(entry)
    no_se = dict(entry, stderr=None)
    assert regress.Tolerance.parse("2se").amount_for(no_se, None) == 0.0
    for bad in ("-1", "x=", "=1", "2ses"):
        with pytest.raises(ValueError, match="--tolerance"):
            regress.Tolerance.parse(bad)
