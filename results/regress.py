"""``dllm-eval regress RESULTS --baseline FILE``: a pass/fail verdict on lm-eval results against a recorded baseline.

Every metric of every run under RESULTS (lm-eval output folders or results JSON files; the newest
run wins per configuration and task) is matched by a portable id, ``model [backend/sampler]
settings :: task/metric,filter``, to the baseline's entries; NFE per sample and tokens per
forward are gated too when the runs report them (lower NFE and higher tokens per forward are
better). A metric *regresses* when it moves in its worse direction (lm-eval's
``higher_is_better``; both directions when unknown) by more than its tolerance, or when it is in
the baseline but missing from the results. Tolerances are ``--tolerance [GLOB=]AMOUNT[se]``
(repeatable, the last matching one wins; GLOB is matched against the full id, against
``task/metric,filter`` and against the metric name): an absolute amount (``0.02``) or a number of
baseline standard errors (``2se``; the current run's stderr if the baseline has none; a metric
with no stderr at all then gets tolerance 0). Without ``--tolerance`` the baseline's recorded
tolerances apply, else ``2se``. Prints a table of what moved and exits 1 on a regression, 0
otherwise, 2 on unusable input. ``--record`` writes the baseline instead (values, stderrs,
tolerances, the lm-eval config of each run, and the environment) — recording is separate from
checking, as in TRL's invariant tests.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dllm_eval.results.loader import Run, load_runs

BASELINE_FORMAT = "dllm-eval-baseline"
BASELINE_VERSION = 1
DEFAULT_TOLERANCES = ("2se",)
EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2
_EFFICIENCY_DIRECTION = {"nfe_per_sample": False, "tokens_per_forward": True}


@dataclass(frozen=True)
class Tolerance:
    """``[GLOB=]AMOUNT[se]``: absolute, or in units of standard error."""

    glob: str
    amount: float
    in_stderr: bool
    spec: str

    @classmethod
    def parse(cls, spec: str) -> Tolerance:
        text = spec.strip()
        glob, sep, amount = text.rpartition("=")
        if not sep:
            glob = "*"
        amount = amount.strip().lower()
        in_se = False
        for suffix in ("stderr", "se"):
            if amount.endswith(suffix):
                amount, in_se = amount[: -len(suffix)].strip(), True
                break
        try:
            value = float(amount)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or value < 0 or not glob.strip():
            raise ValueError(
                f"--tolerance: cannot parse {spec!r}; accepted: [GLOB=]AMOUNT or [GLOB=]AMOUNTse with "
                "AMOUNT >= 0, e.g. 0.02, 2se, 'gsm8k*=0.03', 'nfe_per_sample=0'"
            )
        return cls(glob.strip(), value, in_se, text)

    def matches(self, entry: dict[str, Any]) -> bool:
        names = (
            entry["id"],
            f"{entry['task']}/{entry['metric']},{entry['filter']}",
            entry["metric"],
        )
        return any(fnmatch.fnmatchcase(n, self.glob) for n in names)

    def amount_for(self, baseline: dict[str, Any], current: dict[str, Any] | None) -> float:
        if not self.in_stderr:
            return self.amount
        se = baseline.get("stderr")
        if se is None and current is not None:
            se = current.get("stderr")
        return self.amount * se if se is not None else 0.0


def entry_id(run: Run, task: str, metric: str, filt: str) -> str:
    settings = run.settings_text
    head = f"{run.model_short} [{run.backend}/{run.sampler or '-'}]"
    return (
        f"{head} {settings} :: {task}/{metric},{filt}"
        if settings
        else f"{head} :: {task}/{metric},{filt}"
    )


def collect(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Every metric (and efficiency number) of ``runs`` by id; newer runs overwrite older ones."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:  # oldest first
        common = {
            "model": run.model_short,
            "backend": run.backend,
            "sampler": run.sampler,
            "settings": run.settings_text,
            "results_file": str(run.path),
        }
        tasks: list[str] = []
        for s in run.scores:
            if s.value is None:
                continue
            i = entry_id(run, s.task, s.metric, s.filter)
            out[i] = {
                "id": i,
                **common,
                "task": s.task,
                "metric": s.metric,
                "filter": s.filter,
                "value": s.value,
                "stderr": s.stderr,
                "n": s.n,
                "higher_is_better": s.higher_is_better,
            }
            if s.task not in tasks and not s.is_group:
                tasks.append(s.task)
        for task in tasks:
            eff = run.efficiency_for(task)
            for metric, hib in _EFFICIENCY_DIRECTION.items():
                if eff.get(metric) is None:
                    continue
                i = entry_id(run, task, metric, "-")
                out[i] = {
                    "id": i,
                    **common,
                    "task": task,
                    "metric": metric,
                    "filter": "-",
                    "value": eff[metric],
                    "stderr": None,
                    "n": None,
                    "higher_is_better": hib,
                }
    return out


@dataclass(frozen=True)
class Verdict:
    id: str
    baseline: float | None
    current: float | None
    tolerance: float | None
    status: str  # ok | improved | REGRESSED | MISSING | new

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def failed(self) -> bool:
        return self.status in ("REGRESSED", "MISSING")


def compare(
    baseline: dict[str, dict[str, Any]],
    current: dict[str, dict[str, Any]],
    tolerances: list[Tolerance],
) -> list[Verdict]:
    """One verdict per metric in the baseline or the results."""
    out: list[Verdict] = []
    for i, b in baseline.items():
        c = current.get(i)
        tol_rule = next((t for t in reversed(tolerances) if t.matches(b)), None)
        tol = tol_rule.amount_for(b, c) if tol_rule else 0.0
        if c is None:
            out.append(Verdict(i, b["value"], None, tol, "MISSING"))
            continue
        delta = c["value"] - b["value"]
        eps = 1e-12 * max(1.0, abs(b["value"]))
        hib = b.get("higher_is_better")
        if abs(delta) <= tol + eps:
            status = "ok"
        elif hib is None:
            status = "REGRESSED"  # direction unknown: any move beyond tolerance fails
        else:
            status = "improved" if (delta > 0) == hib else "REGRESSED"
        out.append(Verdict(i, b["value"], c["value"], tol, status))
    for i, c in current.items():
        if i not in baseline:
            out.append(Verdict(i, None, c["value"], None, "new"))
    return out


def format_table(verdicts: list[Verdict], show_all: bool = False) -> str:
    rows = [v for v in verdicts if show_all or v.status != "ok" or (v.delta or 0.0) != 0.0]
    header = ("status", "metric", "baseline", "current", "delta", "tolerance")
    body = [
        (
            v.status,
            v.id,
            _f(v.baseline),
            _f(v.current),
            "" if v.delta is None else f"{v.delta:+.4g}",
            "" if v.tolerance is None else f"{v.tolerance:.4g}",
        )
        for v in rows
    ]
    if not body:
        return "nothing moved"
    widths = [max(len(h), *(len(r[k]) for r in body)) for k, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


# ---------------------------------------------------------------- baseline file


def environment() -> dict[str, Any]:
    """Where a baseline was recorded: interpreter, platform, package versions, git commit."""
    from importlib import metadata

    versions = {}
    for pkg in ("dllm-eval", "lm_eval", "torch", "transformers", "datasets", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
        "git_commit": commit,
    }


def run_record(run: Run) -> dict[str, Any]:
    raw = run.raw
    keep = (
        "lm_eval_version",
        "transformers_version",
        "git_hash",
        "date",
        "pretty_env_info",
        "task_hashes",
        "versions",
        "n-shot",
        "n-samples",
    )
    return {
        "results_file": str(run.path),
        "backend": run.backend,
        "model": run.model,
        "model_args": run.model_args,
        "sampler": run.sampler,
        "settings": run.settings,
        "efficiency": run.efficiency,
        "lm_eval_config": raw.get("config"),
        **{k: raw.get(k) for k in keep if k in raw},
    }


def record(runs: list[Run], path: Path, tolerances: list[Tolerance]) -> dict[str, Any]:
    entries = collect(runs)
    doc = {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tolerance": [t.spec for t in tolerances] or list(DEFAULT_TOLERANCES),
        "metrics": list(entries.values()),
        "runs": [run_record(r) for r in runs],
        "environment": environment(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    return doc


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(
            f"--baseline: {str(path)!r} does not exist; create it with --record"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--baseline: cannot read {str(path)!r}: {exc}") from exc
    if (
        not isinstance(doc, dict)
        or doc.get("format") != BASELINE_FORMAT
        or not isinstance(doc.get("metrics"), list)
    ):
        raise ValueError(
            f"--baseline: {str(path)!r} is not a {BASELINE_FORMAT} file (written by `dllm-eval regress --record`)"
        )
    if doc.get("version") != BASELINE_VERSION:
        raise ValueError(
            f"--baseline: version {doc.get('version')!r} in {str(path)!r}; accepted: {BASELINE_VERSION}"
        )
    return doc


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="lm-eval --output_path folders or results_*.json files",
    )
    parser.add_argument(
        "--baseline", required=True, metavar="FILE", help="baseline JSON (written by --record)"
    )
    parser.add_argument(
        "--record", action="store_true", help="write FILE from RESULTS instead of checking"
    )
    parser.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[GLOB=]AMOUNT[se]",
        help="absolute (0.02) or stderr units (2se); repeatable, last match wins "
        "(default: the baseline's recorded tolerances, else 2se)",
    )
    parser.add_argument("--all", action="store_true", help="list every metric, not only what moved")


def run(args: argparse.Namespace) -> int:
    try:
        tolerances = [Tolerance.parse(t) for t in args.tolerance]
        runs = load_runs(args.results)
        path = Path(args.baseline)
        if args.record:
            doc = record(runs, path, tolerances)
            print(
                f"recorded {len(doc['metrics'])} metrics from {len(runs)} run(s) to {path} "
                f"(tolerance: {', '.join(doc['tolerance'])})"
            )
            return EXIT_OK
        doc = load_baseline(path)
        if not tolerances:
            tolerances = [Tolerance.parse(t) for t in doc.get("tolerance") or DEFAULT_TOLERANCES]
    except ValueError as exc:
        print(f"dllm-eval regress: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    baseline = {e["id"]: e for e in doc["metrics"]}
    verdicts = compare(baseline, collect(runs), tolerances)
    print(format_table(verdicts, show_all=args.all))
    counts = {
        s: sum(v.status == s for v in verdicts)
        for s in ("ok", "improved", "REGRESSED", "MISSING", "new")
    }
    failed = counts["REGRESSED"] + counts["MISSING"]
    print(
        f"\n{len(baseline)} baseline metrics: {counts['ok']} within tolerance, {counts['improved']} improved, "
        f"{counts['REGRESSED']} regressed, {counts['MISSING']} missing; {counts['new']} new "
        f"(tolerance: {', '.join(t.spec for t in tolerances)})"
    )
    print("FAIL: regression against " + str(path) if failed else "PASS")
    return EXIT_REGRESSION if failed else EXIT_OK
