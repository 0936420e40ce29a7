"""``dllm-eval demo``: the whole pipeline offline on a CPU — train, evaluate every sampler, leaderboard.

A tiny LLaDA-architecture model (``model_type: llada``, our native class, byte-level tokenizer)
learns the bundled synthetic GSM8K-format task (:mod:`dllm_eval.results.synthetic`: templated
arithmetic word problems whose step-by-step answers end ``#### N``) with our own AGDO SFT
(``dllm-eval train sft --masking agdo``; AGDO: "Beyond Fully Random Masking: Attention-Guided
Denoising and Optimization for Diffusion Language Models", arXiv 2606.12273). The checkpoint that
this produces is shipped in ``results/demo_model`` (its ``TRAINING.md`` has the exact commands), so
by default the demo only evaluates it; ``--retrain`` trains it again from a fresh random
initialisation. Evaluation goes through the stock lm-eval command line (``lm_eval --model dllm
--model_args pretrained=...,sampler=...``, run in this process so torch is imported once) on a
task YAML written at run time next to the synthetic test split (exact match on the ``#### N``
answer with lm-eval's regex filter), once per sampler: random, confidence, margin, entropy, attn,
agdo, and the Fast-dLLM threshold parallel mode. The lm-eval output folders are then turned into
the leaderboard (Markdown/CSV/HTML) and the accuracy-vs-NFE plot with
:mod:`dllm_eval.results.leaderboard`, and the paths are printed. ``--baseline FILE`` gates the
results with ``dllm-eval regress`` (the CI step), ``--record-baseline FILE`` writes one.

    dllm-eval demo [--output DIR] [--retrain] [--limit N] [--samplers a,b,...] [--baseline FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from dllm_eval.results import synthetic

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "demo_model"
BASELINE = HERE / "baselines" / "demo.json"
TASK_NAME = "dllm_demo_arith"
PROMPT = "Question: {question}\nAnswer:"
"""Prompt of the training data and of the task's ``doc_to_text`` (GSM8K's lm-eval format)."""

N_TRAIN, N_TEST, DATA_SEED = 20000, 200, 0

# the tiny LLaDA: byte ids 0-255, EOS 257, mask 258 (no BOS, no chat template)
EOS_ID, MASK_ID, VOCAB = 257, 258, 260
MODEL_CONFIG: dict[str, Any] = {
    "d_model": 64,
    "n_heads": 4,
    "n_kv_heads": 4,
    "n_layers": 4,
    "mlp_hidden_size": 256,
    "vocab_size": VOCAB,
    "embedding_size": VOCAB,
    "max_sequence_length": 256,
    "mask_token_id": MASK_ID,
    "eos_token_id": EOS_ID,
    "pad_token_id": EOS_ID,
    "rope_theta": 10000.0,
    "init_std": 0.02,
}
INIT_SEED = 0

# `dllm-eval train sft` flags after --model/--data/--output (TRAINING.md records the same): two
# stages of our AGDO SFT, a constant learning rate, then the same rate decayed linearly to 0 from
# the first stage's weights (the decay phase is what lifts accuracy: measured in TRAINING.md)
_COMMON_FLAGS: list[str] = [
    "--masking", "agdo",
    "--agdo-tokens-per-step", "6",
    "--agdo-rows-per-sample", "1",
    "--batch-size", "32",
    "--learning-rate", "3e-3",
    "--max-length", "160",
    "--logging-steps", "100",
    "--device", "cpu",
]
TRAIN_STAGES: list[list[str]] = [
    [*_COMMON_FLAGS, "--max-steps", "10000", "--warmup-steps", "100", "--lr-scheduler", "constant", "--seed", "0"],
    [*_COMMON_FLAGS, "--max-steps", "10000", "--warmup-steps", "0", "--lr-scheduler", "linear", "--seed", "1"],
]

# decoding: answers are at most 24 bytes + EOS, so one block of 32 tokens, 2 tokens per step
DECODE: dict[str, Any] = {"gen_length": 32, "steps": 16}
SAMPLERS: dict[str, dict[str, Any]] = {
    "random": {"sampler": "random"},
    "confidence": {"sampler": "confidence"},
    "margin": {"sampler": "margin"},
    "entropy": {"sampler": "entropy"},
    "attn": {"sampler": "attn"},
    "agdo": {"sampler": "agdo"},
    "threshold": {"sampler": "confidence", "threshold": 0.9},
}
"""Demo runs: label -> ``--model_args`` on top of ``DECODE`` (``threshold``: Fast-dLLM parallel mode)."""

BASELINE_TOLERANCES = ("2se", "nfe_per_sample=0.5", "tokens_per_forward=0.5")
"""Tolerances recorded with ``--record-baseline``: accuracy within 2 standard errors; NFE and
tokens per forward (no stderr) within 0.5 (the threshold mode's counts may move by float noise)."""


# ----------------------------------------------------------------------------------------- data
def write_data(folder: str | Path) -> dict[str, Path]:
    """Synthetic splits under ``folder``: ``test.jsonl`` (GSM8K records, what the task reads),
    ``train.jsonl`` and ``train_sft.jsonl`` (``{"prompt", "response"}`` for the trainer)."""
    folder = Path(folder)
    paths = synthetic.write_splits(folder, n_train=N_TRAIN, n_test=N_TEST, seed=DATA_SEED)
    records = [json.loads(line) for line in paths["train"].read_text(encoding="utf-8").splitlines()]
    paths["train_sft"] = synthetic.write_jsonl([sft_record(r) for r in records], folder / "train_sft.jsonl")
    return paths


def sft_record(record: dict[str, str]) -> dict[str, str]:
    """A GSM8K record as a trainer record: the task's prompt and the answer after one space
    (lm-eval's ``target_delimiter``)."""
    return {"prompt": PROMPT.format(question=record["question"]), "response": " " + record["answer"]}


def task_yaml(test_file: str | Path) -> str:
    """The lm-eval task config of the demo (GSM8K layout, strict ``#### N`` exact match)."""
    doc_to_text = PROMPT.replace("{question}", "{{question}}")
    return "\n".join([
        f"task: {TASK_NAME}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(Path(test_file).resolve()))}",
        "test_split: test",
        "output_type: generate_until",
        f"doc_to_text: {json.dumps(doc_to_text)}",
        "doc_to_target: \"{{answer.split('####')[-1].strip()}}\"",
        "target_delimiter: \" \"",
        "generation_kwargs:",
        "  until: [\"Question:\", \"\\n\\n\"]",
        f"  max_gen_toks: {DECODE['gen_length']}",
        "  do_sample: false",
        "filter_list:",
        "  - name: strict-match",
        "    filter:",
        "      - function: regex",
        "        regex_pattern: \"#### (\\\\-?[0-9\\\\.\\\\,]+)\"",
        "      - function: take_first",
        "metric_list:",
        "  - metric: exact_match",
        "    aggregation: mean",
        "    higher_is_better: true",
        "    ignore_case: true",
        "    ignore_punctuation: false",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def write_task(folder: str | Path, test_file: str | Path) -> Path:
    """Write ``<folder>/dllm_demo_arith.yaml`` (pass ``folder`` to lm-eval's ``--include_path``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TASK_NAME}.yaml"
    path.write_text(task_yaml(test_file), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- model
def make_init_model(folder: str | Path, seed: int = INIT_SEED) -> Path:
    """Write the randomly initialised tiny LLaDA (config, weights, byte tokenizer, generation config)."""
    import torch
    from dllm_eval.harness.models.configs import LLaDAConfig
    from dllm_eval.harness.models.llada import LLaDAModelLM
    from dllm_eval.harness.tokenization import make_byte_tokenizer
    from transformers import GenerationConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = LLaDAModelLM(LLaDAConfig(**MODEL_CONFIG))
    model.save_pretrained(folder, safe_serialization=True)
    GenerationConfig(eos_token_id=EOS_ID, pad_token_id=EOS_ID, mask_token_id=MASK_ID).save_pretrained(folder)
    make_byte_tokenizer(mask_token_id=MASK_ID, eos_token_id=EOS_ID, model_max_length=256).save_pretrained(folder)
    return folder


def stage_steps(total: int | None) -> list[int]:
    """Optimizer steps of each stage: the shipped ones, or ``total`` split in the same proportions."""
    shipped = [int(f[f.index("--max-steps") + 1]) for f in TRAIN_STAGES]
    if total is None:
        return shipped
    if total < len(TRAIN_STAGES):
        raise ValueError(f"train_steps={total} is invalid; accepted: an integer >= {len(TRAIN_STAGES)} "
                         f"(one step per training stage at least)")
    steps = [max(1, round(total * n / sum(shipped))) for n in shipped[:-1]]
    return [*steps, max(1, total - sum(steps))]


def train_commands(init: str | Path, data: str | Path, output: str | Path,
                   max_steps: int | None = None) -> list[list[str]]:
    """The ``dllm-eval train sft ...`` argument lists of every stage (stage ``k`` trains the
    output of stage ``k - 1``; the last one writes ``output``)."""
    output = Path(output)
    argvs, model = [], str(init)
    for k, (flags, steps) in enumerate(zip(TRAIN_STAGES, stage_steps(max_steps)), 1):
        flags = list(flags)
        flags[flags.index("--max-steps") + 1] = str(steps)
        out = output if k == len(TRAIN_STAGES) else output.parent / f"{output.name}-stage{k}"
        argvs.append(["train", "sft", "--model", model, "--data", str(data), *flags, "--output", str(out)])
        model = str(out)
    return argvs


def train(workdir: str | Path, data: str | Path, max_steps: int | None = None) -> Path:
    """Train the demo model from a fresh initialisation with our AGDO SFT; returns its folder."""
    from dllm_eval import cli

    workdir = Path(workdir)
    init = make_init_model(workdir / "init")
    for argv in train_commands(init, data, workdir / "model", max_steps):
        print("$ dllm-eval " + " ".join(argv), flush=True)
        code = cli.main(argv)
        if code != 0:
            raise RuntimeError(f"dllm-eval train sft failed with exit status {code}")
    for p in workdir.glob("model*/checkpoint-*"):
        shutil.rmtree(p, ignore_errors=True)
    return workdir / "model"


# ------------------------------------------------------------------------------------ evaluation
def model_args(pretrained: str | Path, label: str) -> str:
    """``--model_args`` of one demo run."""
    if label not in SAMPLERS:
        raise ValueError(f"samplers: unknown demo sampler {label!r}; accepted: {', '.join(SAMPLERS)}")
    opts = {"pretrained": str(pretrained), **SAMPLERS[label], **DECODE}
    return ",".join(f"{k}={v}" for k, v in opts.items())


def lm_eval_argv(pretrained: str | Path, label: str, task_dir: str | Path, output: str | Path,
                 limit: int | None, batch_size: int) -> list[str]:
    """Arguments of the stock ``lm_eval`` command for one sampler."""
    argv = ["run", "--model", "dllm", "--model_args", model_args(pretrained, label),
            "--tasks", TASK_NAME, "--include_path", str(task_dir), "--batch_size", str(batch_size),
            "--output_path", str(output), "--log_samples", "--verbosity", "WARNING"]
    if limit is not None:
        argv += ["--limit", str(int(limit))]
    return argv


def evaluate(pretrained: str | Path, labels: list[str], task_dir: str | Path, output: str | Path,
             limit: int | None = None, batch_size: int = 64) -> dict[str, Path]:
    """Run lm-eval once per sampler label; returns label -> its output folder."""
    from dllm_eval.harness import run_cli

    folders = {}
    for i, label in enumerate(labels, 1):
        folder = Path(output) / label
        if folder.exists():
            shutil.rmtree(folder)
        argv = lm_eval_argv(pretrained, label, task_dir, folder, limit, batch_size)
        print(f"[{i}/{len(labels)}] $ lm_eval " + " ".join(argv[1:]), flush=True)
        t0 = time.time()
        code = run_cli.main(argv)
        if code != 0:
            raise RuntimeError(f"lm_eval for sampler {label!r} failed with exit status {code}")
        print(f"[{i}/{len(labels)}] {label}: done in {time.time() - t0:.0f}s", flush=True)
        folders[label] = folder
    return folders


def summary(folders: dict[str, Path]) -> list[dict[str, Any]]:
    """One row per sampler: accuracy, stderr, NFE per sample and tokens per forward (from lm-eval's results files)."""
    rows = []
    for label, folder in folders.items():
        files = sorted(Path(folder).rglob("results_*.json"))
        if not files:
            raise RuntimeError(f"no lm-eval results file under {folder}")
        data = json.loads(files[-1].read_text(encoding="utf-8"))
        res = data["results"][TASK_NAME]
        cfg = data.get("config", {})
        samples = data.get("n-samples", {}).get(TASK_NAME, {}).get("effective")
        rows.append({
            "sampler": label,
            "accuracy": res["exact_match,strict-match"],
            "stderr": res.get("exact_match_stderr,strict-match"),
            "nfe_per_sample": cfg.get("nfe_per_sample"),
            "tokens_per_forward": cfg.get("tokens_per_forward"),
            "n": samples,
        })
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`summary` rows."""
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [f"{'sampler':<12} {'accuracy':>9} {'stderr':>7} {'NFE/sample':>10} {'tok/forward':>11} {'n':>4}"]
    for r in rows:
        lines.append(f"{r['sampler']:<12} {f(r['accuracy'], '.3f'):>9} {f(r['stderr'], '.3f'):>7} "
                     f"{f(r['nfe_per_sample'], '.1f'):>10} {f(r['tokens_per_forward'], '.2f'):>11} "
                     f"{f(r['n'], 'd'):>4}")
    return "\n".join(lines)


def leaderboard(results: str | Path, output: str | Path) -> int:
    """Build the leaderboard and plot with ``dllm-eval leaderboard``."""
    from dllm_eval.results import leaderboard as lb

    parser = argparse.ArgumentParser(prog="dllm-eval leaderboard")
    lb.add_arguments(parser)
    args = parser.parse_args([str(results), "--output", str(output), "--metric", "exact_match,strict-match",
                              "--title", "dllm-eval demo: tiny LLaDA (AGDO SFT) on synthetic GSM8K"])
    return int(lb.run(args) or 0)


def regress(results: str | Path, baseline: str | Path, record: bool = False) -> int:
    """``dllm-eval regress RESULTS --baseline FILE [--record]``; returns its exit status."""
    from dllm_eval.results import regress as rg

    parser = argparse.ArgumentParser(prog="dllm-eval regress")
    rg.add_arguments(parser)
    argv = [str(results), "--baseline", str(baseline)]
    if record:
        argv.append("--record")
        for tol in BASELINE_TOLERANCES:
            argv += ["--tolerance", tol]
    return int(rg.run(parser.parse_args(argv)) or 0)


# ------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="dllm-eval-demo", metavar="DIR",
                        help="output folder (data, task, lm-eval results, leaderboard); default ./dllm-eval-demo")
    parser.add_argument("--retrain", action="store_true",
                        help="train the tiny model again with `dllm-eval train sft --masking agdo` "
                             "instead of using the shipped results/demo_model")
    parser.add_argument("--train-steps", type=int, default=None, metavar="N",
                        help="with --retrain: optimizer steps in all, split between the training stages "
                             "like the shipped recipe (default: those of the shipped model)")
    parser.add_argument("--model", default=None, metavar="DIR",
                        help="evaluate this checkpoint instead of the shipped one")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help=f"evaluate only the first N test problems (default: all {N_TEST})")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), metavar="A,B,...",
                        help=f"comma-separated demo samplers (default: all: {', '.join(SAMPLERS)})")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="lm-eval batch size (default 64)")
    parser.add_argument("--baseline", default=None, metavar="FILE",
                        help="gate the results with `dllm-eval regress` against FILE (exit 1 on a regression); "
                             f"the committed one is {BASELINE.relative_to(HERE.parent)}")
    parser.add_argument("--record-baseline", default=None, metavar="FILE",
                        help="write a baseline of these results to FILE (`dllm-eval regress --record`)")


def _check_args(args: argparse.Namespace) -> list[str]:
    labels = [s.strip() for s in str(args.samplers).split(",") if s.strip()]
    if not labels:
        raise ValueError(f"samplers={args.samplers!r} names no sampler; accepted: a comma-separated "
                         f"subset of {', '.join(SAMPLERS)}")
    for label in labels:
        if label not in SAMPLERS:
            raise ValueError(f"samplers: unknown demo sampler {label!r}; accepted: {', '.join(SAMPLERS)}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"limit={args.limit!r} is invalid; accepted: an integer >= 1")
    if args.batch_size < 1:
        raise ValueError(f"batch_size={args.batch_size!r} is invalid; accepted: an integer >= 1")
    if args.train_steps is not None and (args.train_steps < len(TRAIN_STAGES) or not args.retrain):
        raise ValueError(f"train_steps={args.train_steps!r} is invalid; accepted: an integer >= "
                         f"{len(TRAIN_STAGES)} (one per training stage), together with --retrain")
    if args.retrain and args.model:
        raise ValueError("model and retrain exclude each other; accepted: one of --model DIR or --retrain")
    if args.model and not Path(args.model).is_dir():
        raise ValueError(f"model={args.model!r}: no such checkpoint folder; accepted: a folder")
    if args.baseline and not Path(args.baseline).is_file():
        raise ValueError(f"baseline={args.baseline!r}: no such file; accepted: a baseline written by "
                         "`dllm-eval regress --record` (e.g. results/baselines/demo.json)")
    return labels


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0, 1 when ``--baseline`` finds a regression, 2 on a usage error."""
    try:
        labels = _check_args(args)
    except ValueError as exc:
        print(f"dllm-eval demo: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.time()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = write_data(out / "data")
    task_dir = out / "task"
    write_task(task_dir, data["test"])
    if args.retrain:
        print(f"training the demo model ({'default' if args.train_steps is None else args.train_steps} steps) "
              f"into {out / 'train'} ...", flush=True)
        model = train(out / "train", data["train_sft"], args.train_steps)
    else:
        model = Path(args.model).resolve() if args.model else MODEL_DIR
    print(f"model: {model}", flush=True)
    results = out / "lm_eval"
    folders = evaluate(model, labels, task_dir, results, limit=args.limit, batch_size=args.batch_size)
    rows = summary(folders)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    code = leaderboard(results, out / "leaderboard")
    if code != 0:
        print(f"dllm-eval demo: the leaderboard failed (exit status {code})", file=sys.stderr)
        return code
    print()
    print(format_summary(rows))
    print()
    board = out / "leaderboard"
    print(f"leaderboard table: {board / 'leaderboard.md'} (also .csv, .html)")
    print(f"plot:              {board / 'accuracy_vs_nfe.png'} (also .svg)")
    print(f"lm-eval results:   {results}")
    print(f"done in {time.time() - t0:.0f}s")
    if args.record_baseline:
        code = regress(results, args.record_baseline, record=True)
        if code != 0:
            return code
    if args.baseline:
        return regress(results, args.baseline)
    return 0
