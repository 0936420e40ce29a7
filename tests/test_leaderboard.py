"""Leaderboard tests on real lm-eval output folders.

Folders come from three places: (1) ``tests/data/lmeval_hf_tiny``, recorded from the stock
``lm_eval --model hf`` on a tiny random Llama (see its README.md for the command); (2) lm-eval's
``simple_evaluate`` + ``EvaluationTracker`` (what its CLI runs) with a scripted diffusion-style LM (``ScriptedDLLM`` below) whose
answers and forward counts are known in advance, so that the expected accuracy, NFE and tokens
per forward are computed here independently of lm-eval and of the leaderboard code; (3) a slow
test that runs ``lm_eval --model hf`` live and feeds its folder through the leaderboard.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from dllm_eval.results import leaderboard, loader
from dllm_eval.results.synthetic import generate, write_jsonl

HF_RECORDED = Path(__file__).parent / "data" / "lmeval_hf_tiny"

# scripted "samplers": percent of questions answered wrong, and tokens committed per forward
SAMPLER_ERROR_PCT = {"random": 55, "confidence": 20, "margin": 35}
GEN_LENGTH = 32

TASK_YAML = """task: synth_arith
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer.split('####')[-1].strip()}}}}"
generation_kwargs:
  until: ["\\n\\n", "Question:"]
  do_sample: false
  max_gen_toks: 32
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: take_first
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
metadata:
  version: 1.0
"""


def is_wrong(question: str, sampler: str) -> bool:
    return zlib.crc32(question.encode()) % 100 < SAMPLER_ERROR_PCT[sampler]


def nfe_per_answer(steps: int, threshold: float | None) -> int:
    # threshold mode: the scripted model commits 4 tokens per forward
    return GEN_LENGTH // 4 if threshold is not None else steps


def _register_scripted_lm() -> None:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import model_registry, register_model

    if "scripted_dllm" in model_registry:
        return

    @register_model("scripted_dllm")
    class ScriptedDLLM(LM):
        """Answers synthetic problems from a key; wrong where crc32(question) % 100 < sampler's pct."""

        def __init__(
            self,
            pretrained: str,
            sampler: str = "confidence",
            steps: int = 32,
            gen_length: int = GEN_LENGTH,
            threshold: float | None = None,
            batch_size: int | str | None = None,
            max_batch_size: int | None = None,
            device: str | None = None,
        ) -> None:
            super().__init__()
            self.key = {
                json.loads(line)["question"]: json.loads(line)["answer"]
                for line in Path(pretrained, "key.jsonl").read_text().splitlines()
            }
            self.sampler, self.steps, self.gen_length, self.threshold = (
                sampler,
                steps,
                gen_length,
                threshold,
            )
            self.nfe = 0
            self.tokens = 0

        def generate_until(self, requests, disable_tqdm: bool = False):
            out = []
            for req in requests:
                q = req.args[0].split("Question: ")[-1].split("\nAnswer:")[0]
                answer = self.key[q]
                if is_wrong(q, self.sampler):
                    value = int(answer.rsplit("#### ", 1)[1])
                    answer = answer.rsplit("#### ", 1)[0] + f"#### {value + 1}"
                self.nfe += nfe_per_answer(self.steps, self.threshold)
                self.tokens += self.gen_length
                out.append(" " + answer)
            return out

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("scripted model: generation only")

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("scripted model: generation only")

        def get_model_info(self) -> dict:
            return {
                "family": "llada",
                "sampler": self.sampler,
                "decode": {
                    "steps": self.steps,
                    "gen_length": self.gen_length,
                    "threshold": self.threshold,
                },
                "nfe_total": self.nfe,
                "tokens_per_forward": self.tokens / self.nfe if self.nfe else None,
            }


def make_task(root: Path, n: int = 24, seed: int = 7) -> tuple[Path, list[dict]]:
    """A local lm-eval task over ``n`` synthetic problems; returns (include_path, records)."""
    recs = generate(n, seed=seed)
    data = write_jsonl(recs, root / "data" / "test.jsonl")
    tasks = root / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "synth_arith.yaml").write_text(TASK_YAML.format(data=data))
    model = root / "scripted-model"
    write_jsonl(recs, model / "key.jsonl")
    return tasks, recs


def run_lm_eval(
    model_args: str, tasks_dir: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``lm_eval --model scripted_dllm ... --output_path OUT --log_samples`` does, through the API.

    The same calls as lm-eval's ``_cli/run.py`` (``simple_evaluate``, then the tracker's
    ``save_results_aggregated`` and ``save_results_samples``), but with a task manager limited
    to our task folder: indexing lm-eval's 14,000 bundled task YAMLs costs ~10 s per run.
    """
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    _register_scripted_lm()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # torch's collect_env takes seconds (it shells out to pip); the key stays in the JSON
    import torch.utils.collect_env

    monkeypatch.setattr(
        torch.utils.collect_env, "get_pretty_env_info", lambda: "collect_env skipped in tests"
    )
    tracker = EvaluationTracker(output_path=str(out))
    results = simple_evaluate(
        model="scripted_dllm",
        model_args=model_args,
        tasks=["synth_arith"],
        log_samples=True,
        evaluation_tracker=tracker,
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])


def scripted_run(
    root: Path,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    sampler: str,
    steps: int = 32,
    threshold: float | None = None,
) -> None:
    margs = f"pretrained={root / 'scripted-model'},sampler={sampler},steps={steps},gen_length={GEN_LENGTH}"
    if threshold is not None:
        margs += f",threshold={threshold}"
    run_lm_eval(margs, root / "tasks", out, monkeypatch)


def expected_accuracy(recs: list[dict], sampler: str) -> float:
    return sum(not is_wrong(r["question"], sampler) for r in recs) / len(recs)


def expected_stderr(p: float, n: int) -> float:
    # lm-eval's mean_stderr: sample std (ddof=1) / sqrt(n) of 0/1 values
    return math.sqrt(p * (1 - p) * n / (n - 1) / n)


@pytest.fixture(scope="module")
def scripted_folders(tmp_path_factory) -> dict:
    """Four lm-eval runs of the scripted LM (three samplers + a threshold mode) in one folder."""
    root = tmp_path_factory.mktemp("scripted")
    _, recs = make_task(root)
    out = root / "out"
    mp = pytest.MonkeyPatch()
    try:
        for sampler in SAMPLER_ERROR_PCT:
            scripted_run(root, out, mp, sampler)
        scripted_run(root, out, mp, "confidence", threshold=0.9)
    finally:
        mp.undo()
    return {"root": root, "out": out, "recs": recs}


# ---------------------------------------------------------------- loader


def test_parse_model_args_string_and_dict():
    assert loader.parse_model_args(
        "pretrained=a/b,steps=64,threshold=0.9,cache=true,x=None,s='12'"
    ) == {"pretrained": "a/b", "steps": 64, "threshold": 0.9, "cache": True, "x": None, "s": "12"}
    assert loader.parse_model_args({"pretrained": "x", "steps": 8}) == {
        "pretrained": "x",
        "steps": 8,
    }
    assert loader.parse_model_args(None) == {}
    with pytest.raises(ValueError, match="model_args"):
        loader.parse_model_args(3)  # type: ignore[arg-type]


def test_recorded_hf_folder_loads():
    runs = loader.load_runs([HF_RECORDED])
    assert len(runs) == 1
    run = runs[0]
    raw = json.loads(next(HF_RECORDED.rglob("results_*.json")).read_text())
    assert run.backend == "hf" and run.sampler == "autoregressive"
    assert run.model_short == "tiny-llama"
    assert run.settings == {}  # pretrained and dtype are loading options, not decoding settings
    got = {s.key: (s.value, s.stderr, s.n) for s in run.scores}
    assert got["synth_mc/acc,none"] == (
        raw["results"]["synth_mc"]["acc,none"],
        raw["results"]["synth_mc"]["acc_stderr,none"],
        10,
    )
    assert set(got) == {
        "synth_gen/exact_match,strict-match",
        "synth_gen/exact_match,flexible-extract",
        "synth_mc/acc,none",
        "synth_mc/acc_norm,none",
    }
    assert set(run.samples) == {"synth_gen", "synth_mc"}
    assert run.efficiency == {"nfe_total": None, "nfe_per_sample": None, "tokens_per_forward": None}


def test_model_args_as_string_and_nfe_in_nested_info(tmp_path):
    """Python-API runs store model_args as a string; get_model_info may nest its numbers."""
    raw = json.loads(next(HF_RECORDED.rglob("results_*.json")).read_text())
    raw["config"]["model"] = "vllm"
    raw["model_source"] = "vllm"
    raw["config"]["model_args"] = (
        "pretrained=org/Some-Model,tensor_parallel_size=2,max_gen_toks=256"
    )
    raw["config"]["dllm"] = {"nfe_total": 440, "tokens_per_forward": 2.5}
    raw.pop("model_name")
    p = tmp_path / "results_2026-01-01T00-00-00.000001.json"
    p.write_text(json.dumps(raw))
    run = loader.load_run(p)
    assert run.backend == "vllm" and run.model == "org/Some-Model"
    assert run.settings == {"max_gen_toks": 256}
    assert run.efficiency["nfe_total"] == 440
    assert run.efficiency["nfe_per_sample"] == pytest.approx(440 / 22)  # 12 + 10 samples
    assert run.efficiency["tokens_per_forward"] == 2.5


def test_na_stderr_recomputed_from_samples(tmp_path):
    src = next(HF_RECORDED.rglob("results_*.json")).parent
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    res = next(dst.glob("results_*.json"))
    raw = json.loads(res.read_text())
    raw["results"]["synth_mc"]["acc_stderr,none"] = "N/A"
    res.write_text(json.dumps(raw))
    vals = [
        json.loads(line)["acc"]
        for line in next(dst.glob("samples_synth_mc_*.jsonl")).read_text().splitlines()
    ]
    p = sum(vals) / len(vals)
    run = loader.load_run(res)
    se = next(s.stderr for s in run.scores if s.key == "synth_mc/acc,none")
    assert se == pytest.approx(expected_stderr(p, len(vals)))


def test_missing_path_and_non_results_json(tmp_path):
    with pytest.raises(ValueError, match="PATH"):
        loader.load_runs([tmp_path / "nope"])
    with pytest.raises(ValueError, match="no lm-eval results"):
        loader.load_runs([tmp_path])
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not an lm-eval results JSON"):
        loader.load_run(bad)


def test_scripted_runs_parse(scripted_folders):
    runs = loader.load_runs([scripted_folders["out"]])
    recs = scripted_folders["recs"]
    assert len(runs) == 4
    by = {(r.sampler, r.settings.get("threshold")): r for r in runs}
    assert set(by) == {
        ("random", None),
        ("confidence", None),
        ("margin", None),
        ("confidence", 0.9),
    }
    for (sampler, thr), run in by.items():
        assert run.backend == "scripted_dllm"
        assert run.settings["steps"] == 32 and run.settings["gen_length"] == GEN_LENGTH
        acc = next(s for s in run.scores if s.key == "synth_arith/exact_match,strict-match")
        assert acc.value == pytest.approx(expected_accuracy(recs, sampler))
        assert acc.stderr == pytest.approx(expected_stderr(acc.value, len(recs)))
        nfe = nfe_per_answer(32, thr)
        assert run.efficiency["nfe_total"] == nfe * len(recs)
        assert run.efficiency["nfe_per_sample"] == nfe
        assert run.efficiency["tokens_per_forward"] == pytest.approx(GEN_LENGTH / nfe)


# ---------------------------------------------------------------- leaderboard


def test_metric_choice_parse():
    c = leaderboard.MetricChoice.parse("gsm8k*=exact_match,flexible-extract")
    assert (c.task_glob, c.metric, c.filter) == ("gsm8k*", "exact_match", "flexible-extract")
    assert leaderboard.MetricChoice.parse("acc") == leaderboard.MetricChoice("*", "acc", None)
    with pytest.raises(ValueError, match="--metric"):
        leaderboard.MetricChoice.parse("gsm8k=")


def test_leaderboard_outputs(scripted_folders, tmp_path, capsys):
    from dllm_eval.cli import main

    recs = scripted_folders["recs"]
    out = tmp_path / "lb"
    rc = main(["leaderboard", str(scripted_folders["out"]), str(HF_RECORDED), "--output", str(out)])
    assert rc == 0
    for name in (
        "leaderboard.md",
        "leaderboard.csv",
        "scores_long.csv",
        "leaderboard.html",
        "accuracy_vs_nfe.png",
        "accuracy_vs_nfe.svg",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_nfe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "accuracy_vs_nfe.svg").read_text()

    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert len(rows) == 5  # 4 scripted configurations + the hf baseline
    scripted = {
        (r["sampler"], "threshold=0.9" in r["settings"]): r
        for r in rows
        if r["backend"] == "scripted_dllm"
    }
    for (sampler, thr), r in scripted.items():
        acc = expected_accuracy(recs, sampler)
        nfe = nfe_per_answer(32, 0.9 if thr else None)
        assert float(r["synth_arith"]) == pytest.approx(acc)
        assert float(r["synth_arith_stderr"]) == pytest.approx(expected_stderr(acc, len(recs)))
        assert r["synth_arith_n"] == str(len(recs))
        assert r["synth_arith_metric"] == "exact_match,strict-match"
        assert float(r["nfe_per_sample"]) == nfe
        assert float(r["tokens_per_forward"]) == pytest.approx(GEN_LENGTH / nfe)
    hf = next(r for r in rows if r["backend"] == "hf")
    assert hf["sampler"] == "autoregressive" and hf["nfe_per_sample"] == ""
    assert float(hf["synth_mc"]) == 0.0 and hf["synth_mc_metric"] == "acc_norm,none"
    # rows sorted by average accuracy, best first
    assert rows[0]["sampler"] == "confidence"

    md = (out / "leaderboard.md").read_text()
    acc = expected_accuracy(recs, "margin")
    cell = f"{100 * acc:.1f} ± {100 * expected_stderr(acc, len(recs)):.1f}"
    margin_line = next(line for line in md.splitlines() if "| margin |" in line)
    assert cell in margin_line and f"| {nfe_per_answer(32, None)} |" in margin_line
    assert "synth_arith: exact_match (strict-match) in %, ± stderr, n=24" in md

    page = (out / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and cell in page
    assert not re.search(
        r"(src|href)\s*=\s*[\"']?(https?:|//)", page
    )  # self-contained: nothing fetched
    assert "<link" not in page

    long_rows = list(csv.DictReader((out / "scores_long.csv").open()))
    # 4 scripted runs x 2 filters + hf: 2 gen filters + 2 mc metrics
    assert len(long_rows) == 4 * 2 + 4
    assert str(out / "leaderboard.html") in capsys.readouterr().out


def test_metric_option_selects_filter(scripted_folders, tmp_path):
    runs = loader.load_runs([scripted_folders["out"]])
    lb = leaderboard.build(
        runs, [leaderboard.MetricChoice.parse("synth_arith=exact_match,flexible-extract")]
    )
    assert {r.cells["synth_arith"].score.filter for r in lb.rows} == {"flexible-extract"}


def test_newest_run_wins(scripted_folders, tmp_path):
    """Two results files for the same configuration: the later date id is shown."""
    src = next(r for r in loader.load_runs([scripted_folders["out"]]) if r.sampler == "margin")
    folder = tmp_path / "rerun"
    folder.mkdir()
    raw = dict(src.raw)
    old = json.loads(json.dumps(raw))
    old["results"]["synth_arith"]["exact_match,strict-match"] = 0.01
    (folder / "results_2020-01-01T00-00-00.000001.json").write_text(json.dumps(old))
    (folder / "results_2030-01-01T00-00-00.000001.json").write_text(json.dumps(raw))
    lb = leaderboard.build(loader.load_runs([folder]))
    assert len(lb.rows) == 1
    assert (
        lb.rows[0].cells["synth_arith"].score.value
        == src.raw["results"]["synth_arith"]["exact_match,strict-match"]
    )


def test_group_subtasks_hidden_unless_asked(tmp_path, capsys):
    raw = json.loads(next(HF_RECORDED.rglob("results_*.json")).read_text())
    raw["results"] = {
        "synth": {"alias": "synth", "acc,none": 0.5, "acc_stderr,none": "N/A"},
        **{t: dict(v, alias=f" - {t}") for t, v in raw["results"].items()},
    }
    raw["group_subtasks"] = {"synth": ["synth_gen", "synth_mc"]}
    (tmp_path / "results_2026-01-01T00-00-00.000001.json").write_text(json.dumps(raw))
    runs = loader.load_runs([tmp_path])
    assert leaderboard.build(runs).tasks == ["synth"]
    assert leaderboard.build(runs, subtasks=True).tasks == ["synth", "synth_gen", "synth_mc"]
    group = next(s for s in runs[0].scores if s.task == "synth")
    assert group.is_group and group.stderr is None  # "N/A" and no samples file for a group


def test_cli_bad_input_exit_two(tmp_path, capsys):
    from dllm_eval.cli import main

    assert main(["leaderboard", str(tmp_path / "missing")]) == 2
    assert "PATH" in capsys.readouterr().err
    assert main(["leaderboard", str(HF_RECORDED), "--metric", "x=", "--output", str(tmp_path)]) == 2
    assert "--metric" in capsys.readouterr().err


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_html_opens_in_headless_chromium(scripted_folders, tmp_path):
    browser = _find_chromium()
    if browser is None:
        pytest.skip("no chromium/chrome binary on PATH")
    out = tmp_path / "lb"
    leaderboard.write_all(
        leaderboard.build(loader.load_runs([scripted_folders["out"], HF_RECORDED])), out
    )
    shot = tmp_path / "shot.png"
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (out / "leaderboard.html").as_uri()
    proc = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1400,1000", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert '<table class="lb">' in dom and dom.count("<tr>") == 1 + 5


@pytest.mark.slow
def test_live_hf_run_through_leaderboard(tmp_path):
    """The stock `lm_eval --model hf` on a tiny random Llama, then the leaderboard on its folder."""
    import torch
    from dllm_eval.harness.tokenization import make_byte_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model_dir = tmp_path / "tiny-llama"
    tok = make_byte_tokenizer(
        mask_token_id=258, eos_token_id=256, bos_token_id=257, pad_token_id=256
    )
    cfg = LlamaConfig(
        vocab_size=260,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=257,
        eos_token_id=256,
        pad_token_id=256,
    )
    LlamaForCausalLM(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    tasks, recs = make_task(tmp_path, n=6)
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    lm_eval = Path(sys.executable).with_name("lm_eval")
    cmd = [
        str(lm_eval) if lm_eval.exists() else "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model_dir},dtype=float32",
        "--include_path",
        str(tasks),
        "--tasks",
        "synth_arith",
        "--output_path",
        str(tmp_path / "out"),
        "--log_samples",
        "--device",
        "cpu",
        "--batch_size",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    lb = leaderboard.build(loader.load_runs([tmp_path / "out"]))
    assert len(lb.rows) == 1 and lb.rows[0].backend == "hf"
    cell = lb.rows[0].cells["synth_arith"].score
    assert cell.value == raw["results"]["synth_arith"]["exact_match,strict-match"]
    assert cell.n == len(recs)
    paths = leaderboard.write_all(lb, tmp_path / "lb")
    assert paths["png"].stat().st_size > 0 and paths["svg"].stat().st_size > 0
