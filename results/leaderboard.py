"""``dllm-eval leaderboard PATH...``: lm-eval output folders -> leaderboard tables and an accuracy-vs-speed plot.

Reads every ``results_*.json`` (and its ``samples_*.jsonl``) under the given paths, from
``--model dllm`` and from any other lm-eval backend (``hf``, ``vllm``, ...), so autoregressive
baselines sit beside diffusion models. One row per model x backend x sampler x decoding settings,
one column per task with its headline metric and stderr (``--metric`` chooses it; otherwise the
first of exact_match, pass@1, acc_norm, acc, ... with the strict-match filter first), plus NFE per
sample and tokens per forward where the run reports them. When the same row and task occur in
several runs, the newest run wins. Writes, under ``--output`` (default ``./leaderboard``):
``leaderboard.md``, ``leaderboard.csv`` (the pivot), ``scores_long.csv`` (every metric of every
run), ``leaderboard.html`` (one self-contained page: inline CSS, inline SVG plot, no network), and
``accuracy_vs_nfe.png`` / ``.svg`` (accuracy against NFE per sample and against tokens per
forward; autoregressive baselines, which report neither, are drawn as dashed horizontal lines).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import html
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dllm_eval.results.loader import Run, Score, format_settings, load_runs, short_model_name

# headline metric preference (first present wins), then filter preference
METRIC_PREFERENCE = (
    "exact_match",
    "pass@1",
    "pass_at_1",
    "acc_norm",
    "acc",
    "em",
    "f1",
    "mc2",
    "mc1",
    "accuracy",
    "bleu",
    "rouge1",
    "word_perplexity",
)
FILTER_PREFERENCE = ("strict-match", "none", "flexible-extract", "custom-extract")
_PROPORTION_PREFIXES = ("acc", "exact_match", "pass@", "pass_at", "em", "f1", "mc1", "mc2", "match")
PLOT_BASENAME = "accuracy_vs_nfe"


@dataclass(frozen=True)
class MetricChoice:
    """``--metric [TASK_GLOB=]METRIC[,FILTER]``."""

    task_glob: str
    metric: str
    filter: str | None

    @classmethod
    def parse(cls, spec: str) -> MetricChoice:
        text = spec.strip()
        glob, sep, rest = text.partition("=")
        if not sep:
            glob, rest = "*", text
        metric, _, filt = rest.partition(",")
        if not metric.strip() or not glob.strip():
            raise ValueError(
                f"--metric: cannot parse {spec!r}; accepted: METRIC, METRIC,FILTER or "
                "TASK_GLOB=METRIC[,FILTER] (e.g. exact_match,strict-match or gsm8k*=exact_match)"
            )
        return cls(glob.strip(), metric.strip(), filt.strip() or None)

    def matches(self, s: Score) -> bool:
        return (
            fnmatch.fnmatchcase(s.task, self.task_glob)
            and s.metric == self.metric
            and (self.filter is None or s.filter == self.filter)
        )


def pick_headline(scores: list[Score], choices: list[MetricChoice]) -> Score | None:
    """The score shown for one task: the first ``--metric`` that matches, else by preference."""
    for c in choices:
        hits = [s for s in scores if c.matches(s)]
        if hits:
            return _by_filter(hits)
    if any(
        c.task_glob != "*" and fnmatch.fnmatchcase(scores[0].task, c.task_glob) for c in choices
    ):
        return None  # the user chose a metric for this task and it is not there
    for m in METRIC_PREFERENCE:
        hits = [s for s in scores if s.metric == m and s.value is not None]
        if hits:
            return _by_filter(hits)
    hits = [s for s in scores if s.value is not None]
    return _by_filter(hits) if hits else None


def _by_filter(hits: list[Score]) -> Score:
    def rank(s: Score) -> tuple[int, str]:
        return (
            FILTER_PREFERENCE.index(s.filter)
            if s.filter in FILTER_PREFERENCE
            else len(FILTER_PREFERENCE),
            s.filter,
        )

    return sorted(hits, key=rank)[0]


def is_proportion(metric: str) -> bool:
    return metric.startswith(_PROPORTION_PREFIXES) or "accuracy" in metric


@dataclass
class Cell:
    score: Score
    run: Run
    efficiency: dict[str, float | None]


@dataclass
class Row:
    backend: str
    model: str
    sampler: str | None
    settings: dict[str, Any]
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def label(self) -> str:
        parts = [short_model_name(self.model), self.sampler or self.backend]
        if self.settings:
            parts.append(format_settings(self.settings))
        return " | ".join(parts)

    def runs(self) -> list[Run]:
        return list({id(c.run): c.run for c in self.cells.values()}.values())

    def efficiency(self) -> dict[str, float | None]:
        """NFE per sample and tokens per forward over the distinct runs behind this row.

        Each run counts once (a run that covers several tasks reports one total); runs are
        weighted by their sample count for NFE per sample and by their NFE for tokens per forward.
        """
        nfe_ps: list[tuple[float, float]] = []
        tpf: list[tuple[float, float]] = []
        totals: list[float] = []
        for run in self.runs():
            eff = run.efficiency
            n = float(sum(c.score.n or 0 for c in self.cells.values() if c.run is run) or 1)
            if eff.get("nfe_per_sample") is not None:
                nfe_ps.append((eff["nfe_per_sample"], n))
            if eff.get("tokens_per_forward") is not None:
                tpf.append((eff["tokens_per_forward"], eff.get("nfe_total") or n))
            if eff.get("nfe_total") is not None:
                totals.append(eff["nfe_total"])
        return {
            "nfe_per_sample": _wmean(nfe_ps),
            "tokens_per_forward": _wmean(tpf),
            "nfe_total": sum(totals) if totals and len(totals) == len(self.runs()) else None,
        }

    def average(self, tasks: list[str]) -> float | None:
        vals = [self.cells[t].score.value for t in tasks if t in self.cells]
        vals = [v for v in vals if v is not None]
        if not vals or len(vals) < len(tasks):
            return None
        return sum(vals) / len(vals)


def _wmean(pairs: list[tuple[float, float]]) -> float | None:
    tot = sum(w for _, w in pairs)
    if not pairs or not tot:
        return None
    return sum(v * w for v, w in pairs) / tot


@dataclass
class Leaderboard:
    rows: list[Row]
    tasks: list[str]
    runs: list[Run]

    def headline(self, task: str) -> tuple[str, str] | None:
        for r in self.rows:
            if task in r.cells:
                s = r.cells[task].score
                return s.metric, s.filter
        return None


def build(
    runs: list[Run], metrics: list[MetricChoice] | None = None, subtasks: bool = False
) -> Leaderboard:
    """Pivot runs into rows (model x backend x sampler x settings) and task columns."""
    metrics = metrics or []
    rows: dict[tuple[str, str, str, str], Row] = {}
    tasks: list[str] = []
    for run in runs:  # oldest first: newer runs overwrite cells
        key = (run.backend, run.model, run.sampler or "", run.settings_text)
        row = rows.setdefault(key, Row(run.backend, run.model, run.sampler, dict(run.settings)))
        by_task: dict[str, list[Score]] = {}
        for s in run.scores:
            if s.is_subtask and not subtasks:
                continue
            by_task.setdefault(s.task, []).append(s)
        for task, scores in by_task.items():
            head = pick_headline(scores, metrics)
            if head is None:
                continue
            row.cells[task] = Cell(head, run, run.efficiency_for(task))
            if task not in tasks:
                tasks.append(task)
    ordered = sorted(
        (r for r in rows.values() if r.cells),
        key=lambda r: (-(r.average(tasks) if r.average(tasks) is not None else -math.inf), r.label),
    )
    return Leaderboard(ordered, sorted(tasks), runs)


# ---------------------------------------------------------------- formatting


def fmt_value(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    if is_proportion(metric) and 0.0 <= value <= 1.0:
        return f"{100 * value:.1f}"
    return f"{value:.4g}"


def fmt_score(s: Score | None) -> str:
    if s is None or s.value is None:
        return "—"
    text = fmt_value(s.value, s.metric)
    if s.stderr is not None:
        se = 100 * s.stderr if is_proportion(s.metric) and 0.0 <= s.value <= 1.0 else s.stderr
        text += (
            f" ± {se:.1f}" if is_proportion(s.metric) and 0.0 <= s.value <= 1.0 else f" ± {se:.3g}"
        )
    return text


def fmt_number(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "—"
    if abs(v - round(v)) < 1e-9 and abs(v) < 1e12:
        return str(int(round(v)))
    return f"{v:.{digits}f}"


def table_rows(lb: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and display cells shared by Markdown and HTML."""
    header = ["Model", "Backend", "Sampler", "Settings", *lb.tasks]
    if len(lb.tasks) > 1:
        header.append("Average")
    header += ["NFE/sample", "Tokens/forward"]
    body = []
    for r in lb.rows:
        cells = [
            short_model_name(r.model),
            r.backend,
            r.sampler or "—",
            format_settings(r.settings) or "—",
        ]
        cells += [fmt_score(r.cells[t].score if t in r.cells else None) for t in lb.tasks]
        if len(lb.tasks) > 1:
            avg = r.average(lb.tasks)
            head = lb.headline(lb.tasks[0])
            cells.append(fmt_value(avg, head[0] if head else "") if avg is not None else "—")
        eff = r.efficiency()
        tpf = eff["tokens_per_forward"]
        cells += [fmt_number(eff["nfe_per_sample"], 1), "—" if tpf is None else f"{tpf:.2f}"]
        body.append(cells)
    return header, body


def metric_legend(lb: Leaderboard) -> list[str]:
    lines = []
    for t in lb.tasks:
        hits = [r.cells[t].score for r in lb.rows if t in r.cells]
        kinds = sorted({f"{s.metric} ({s.filter})" for s in hits})
        ns = sorted({s.n for s in hits if s.n is not None})
        pct = (
            " in %"
            if all(
                is_proportion(s.metric) and s.value is not None and 0 <= s.value <= 1 for s in hits
            )
            else ""
        )
        n_text = f", n={'/'.join(map(str, ns))}" if ns else ""
        lines.append(f"{t}: {', '.join(kinds)}{pct}, ± stderr{n_text}")
    return lines


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(lb: Leaderboard, title: str) -> str:
    header, body = table_rows(lb)
    out = [f"# {title}", ""]
    out.append("| " + " | ".join(map(_md_escape, header)) + " |")
    out.append("|" + "|".join("---" if i < 4 else "---:" for i in range(len(header))) + "|")
    for cells in body:
        out.append("| " + " | ".join(map(_md_escape, cells)) + " |")
    out += ["", "Metrics:", ""] + [f"- {line}" for line in metric_legend(lb)]
    out += ["", f"Plot: {PLOT_BASENAME}.png / {PLOT_BASENAME}.svg", ""]
    return "\n".join(out)


def write_csv(lb: Leaderboard, path: Path) -> None:
    """The pivot with raw values: value, stderr and n per task, then the efficiency columns."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        head = ["model", "model_path", "backend", "sampler", "settings"]
        for t in lb.tasks:
            head += [f"{t}", f"{t}_stderr", f"{t}_n", f"{t}_metric"]
        head += ["nfe_per_sample", "tokens_per_forward", "nfe_total"]
        w.writerow(head)
        for r in lb.rows:
            line: list[Any] = [
                short_model_name(r.model),
                r.model,
                r.backend,
                r.sampler or "",
                format_settings(r.settings),
            ]
            for t in lb.tasks:
                c = r.cells.get(t)
                if c is None:
                    line += ["", "", "", ""]
                else:
                    s = c.score
                    line += [_raw(s.value), _raw(s.stderr), _raw(s.n), f"{s.metric},{s.filter}"]
            eff = r.efficiency()
            line += [
                _raw(eff["nfe_per_sample"]),
                _raw(eff["tokens_per_forward"]),
                _raw(eff["nfe_total"]),
            ]
            w.writerow(line)


def write_long_csv(runs: list[Run], path: Path) -> None:
    """Every metric of every run, one line each (nothing chosen, nothing merged)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "results_file",
                "date",
                "backend",
                "model",
                "sampler",
                "settings",
                "task",
                "metric",
                "filter",
                "value",
                "stderr",
                "n",
                "n_shot",
                "higher_is_better",
                "nfe_per_sample",
                "tokens_per_forward",
                "nfe_total",
            ]
        )
        for run in runs:
            for s in run.scores:
                eff = run.efficiency_for(s.task)
                w.writerow(
                    [
                        str(run.path),
                        run.date,
                        run.backend,
                        run.model,
                        run.sampler or "",
                        run.settings_text,
                        s.task,
                        s.metric,
                        s.filter,
                        _raw(s.value),
                        _raw(s.stderr),
                        _raw(s.n),
                        _raw(s.n_shot),
                        _raw(s.higher_is_better),
                        _raw(eff["nfe_per_sample"]),
                        _raw(eff["tokens_per_forward"]),
                        _raw(eff["nfe_total"]),
                    ]
                )


def _raw(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


# ---------------------------------------------------------------- plot


def _varying_settings(rows: list[Row]) -> list[str]:
    """Setting keys whose value differs between rows (shown next to the plotted points)."""
    keys = sorted({k for r in rows for k in r.settings})
    return [k for k in keys if len({json_key(r.settings.get(k)) for r in rows}) > 1]


def json_key(v: Any) -> str:
    return repr(v)


def plot(lb: Leaderboard, output: Path) -> tuple[Path, Path]:
    """Accuracy vs NFE per sample and vs tokens per forward; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    samplers = sorted({r.sampler or r.backend for r in lb.rows})
    colors = plt.get_cmap("tab10")
    color_of = {s: colors(i % 10) for i, s in enumerate(samplers)}
    markers = "osD^vP*XhP<>"
    marker_of = {t: markers[i % len(markers)] for i, t in enumerate(lb.tasks)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    axis_keys = (
        ("nfe_per_sample", "NFE per sample (model forwards)"),
        ("tokens_per_forward", "tokens per forward"),
    )
    scale = (
        100.0
        if all(
            is_proportion(c.score.metric) and c.score.value is not None and 0 <= c.score.value <= 1
            for r in lb.rows
            for c in r.cells.values()
        )
        else 1.0
    )
    plotted = [
        r
        for r in lb.rows
        if any(
            c.efficiency.get(k) is not None
            for c in r.cells.values()
            for k in ("nfe_per_sample", "tokens_per_forward")
        )
    ]
    varying = _varying_settings(plotted)
    for ax, (key, xlabel) in zip(axes, axis_keys):
        xs_seen: list[float] = []
        labels_at: dict[tuple[float, float], int] = {}  # points sharing a place stack their labels
        baselines: dict[tuple[float, str, str], list[str]] = {}
        n_points = sum(len(r.cells) for r in lb.rows)
        for r in lb.rows:
            name = r.sampler or r.backend
            for task, c in r.cells.items():
                if c.score.value is None:
                    continue
                y = c.score.value * scale
                x = c.efficiency.get(key)
                if x is None:
                    baselines.setdefault(
                        (y, f"{short_model_name(r.model)} {name}", name), []
                    ).append(task)
                    continue
                xs_seen.append(x)
                yerr = c.score.stderr * scale if c.score.stderr is not None else None
                ax.errorbar(
                    x,
                    y,
                    yerr=yerr,
                    fmt=marker_of[task],
                    color=color_of[name],
                    capsize=3,
                    ms=7,
                    alpha=0.9,
                )
                if n_points <= 16:
                    extra = " ".join(
                        f"{k}={r.settings[k]:g}"
                        if isinstance(r.settings[k], float)
                        else f"{k}={r.settings[k]}"
                        for k in varying
                        if k in r.settings
                    )
                    spot = (round(float(x), 3), round(float(y), 3))
                    stacked = labels_at.get(spot, 0)
                    labels_at[spot] = stacked + 1
                    ax.annotate(
                        f"{name} {extra}".strip(),
                        (x, y),
                        textcoords="offset points",
                        xytext=(5, 4 + 9 * stacked),
                        fontsize=7,
                    )
        for i, ((y, text, name), tasks) in enumerate(sorted(baselines.items())):
            ax.axhline(y, ls="--", lw=1.2, color=color_of[name], alpha=0.8)
            ax.annotate(
                f"{text} ({', '.join(tasks)})",
                xy=(0.01, y),
                xycoords=("axes fraction", "data"),
                xytext=(0, 3 + 9 * (i % 3)),
                textcoords="offset points",
                fontsize=7,
                color=color_of[name],
            )
        if not xs_seen:
            ax.text(
                0.5,
                0.5,
                f"no run reports {key}",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="0.4",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)" if scale == 100.0 else "score")
        ax.grid(True, alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color_of[s], marker="o", ls="", label=s) for s in samplers]
    if len(lb.tasks) > 1:
        handles += [
            Line2D([], [], color="0.3", marker=marker_of[t], ls="", label=t) for t in lb.tasks
        ]
    axes[1].legend(
        handles=handles, fontsize=8, loc="best", title="sampler / task", title_fontsize=8
    )
    fig.suptitle("Accuracy vs decoding cost (" + ", ".join(lb.tasks) + ")", fontsize=11)
    png, svg = output / f"{PLOT_BASENAME}.png", output / f"{PLOT_BASENAME}.svg"
    fig.savefig(png, dpi=120, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return png, svg


# ---------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;background:#fff}
h1{font-size:1.4rem}table{border-collapse:collapse;font-size:.9rem;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.35rem .6rem;text-align:left;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}.legend{color:#555;font-size:.85rem}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}code{font-size:.85rem}
"""

_JS = """
document.querySelectorAll('table.lb th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var tbody = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    var asc = th.getAttribute('data-asc') !== '1';
    th.setAttribute('data-asc', asc ? '1' : '0');
    rows.sort(function(a, b){
      var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach(function(r){ tbody.appendChild(r); });
  });
});
"""


def to_html(lb: Leaderboard, title: str, svg_text: str, sources: list[str]) -> str:
    header, body = table_rows(lb)
    e = html.escape
    sort_values: list[list[str]] = []
    for r, cells in zip(lb.rows, body):
        vals = cells[:4]
        vals += [_raw(r.cells[t].score.value) if t in r.cells else "" for t in lb.tasks]
        if len(lb.tasks) > 1:
            vals.append(_raw(r.average(lb.tasks)))
        eff = r.efficiency()
        vals += [_raw(eff["nfe_per_sample"]), _raw(eff["tokens_per_forward"])]
        sort_values.append(vals)
    rows_html = []
    for cells, vals in zip(body, sort_values):
        tds = "".join(
            f'<td{" class=num" if i >= 4 else ""} data-v="{e(v)}">{e(c)}</td>'
            for i, (c, v) in enumerate(zip(cells, vals))
        )
        rows_html.append(f"<tr>{tds}</tr>")
    svg_body = svg_text[svg_text.find("<svg") :] if "<svg" in svg_text else ""
    legend = "".join(f"<li>{e(line)}</li>" for line in metric_legend(lb))
    src = "".join(f"<li><code>{e(s)}</code></li>" for s in sources)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n<h1>{e(title)}</h1>\n"
        f"<p class=legend>{len(lb.rows)} configurations, {len(lb.tasks)} tasks, {len(lb.runs)} lm-eval runs; "
        f"generated {e(stamp)}. Click a column header to sort.</p>\n"
        "<table class=lb><thead><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in header)
        + "</tr></thead>\n<tbody>"
        + "\n".join(rows_html)
        + "</tbody></table>\n"
        f"<ul class=legend>{legend}</ul>\n<figure>{svg_body}<figcaption class=legend>Accuracy against NFE per "
        "sample and tokens per forward; dashed lines: runs that report neither (autoregressive baselines)."
        f"</figcaption></figure>\n<details><summary>Sources</summary><ul class=legend>{src}</ul></details>\n"
        f"<script>{_JS}</script>\n</body></html>\n"
    )


# ---------------------------------------------------------------- CLI


def write_all(
    lb: Leaderboard, output: Path, title: str = "dllm-eval leaderboard"
) -> dict[str, Path]:
    """Write every output file; return their paths by kind."""
    output.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": output / "leaderboard.md",
        "csv": output / "leaderboard.csv",
        "long_csv": output / "scores_long.csv",
        "html": output / "leaderboard.html",
    }
    paths["markdown"].write_text(to_markdown(lb, title), encoding="utf-8")
    write_csv(lb, paths["csv"])
    write_long_csv(lb.runs, paths["long_csv"])
    png, svg = plot(lb, output)
    paths["png"], paths["svg"] = png, svg
    sources = [str(r.path) for r in lb.runs]
    paths["html"].write_text(
        to_html(lb, title, svg.read_text(encoding="utf-8"), sources), encoding="utf-8"
    )
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="lm-eval --output_path folders (searched recursively) or results_*.json files",
    )
    parser.add_argument(
        "--output",
        default="leaderboard",
        metavar="DIR",
        help="folder for leaderboard.md/.csv/.html, scores_long.csv and the plot (default: ./leaderboard)",
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="[TASK_GLOB=]METRIC[,FILTER]",
        help="headline metric (repeatable), e.g. exact_match,flexible-extract or 'gsm8k*=exact_match'",
    )
    parser.add_argument(
        "--subtasks", action="store_true", help="also show the subtasks of task groups"
    )
    parser.add_argument("--title", default="dllm-eval leaderboard", help="page and table title")


def run(args: argparse.Namespace) -> int:
    try:
        choices = [MetricChoice.parse(m) for m in args.metric]
        runs = load_runs(args.paths)
        lb = build(runs, choices, subtasks=args.subtasks)
        if not lb.rows:
            raise ValueError(
                f"PATH: the results under {', '.join(args.paths)} hold no scores to tabulate"
            )
    except ValueError as exc:
        print(f"dllm-eval leaderboard: error: {exc}", file=sys.stderr)
        return 2
    paths = write_all(lb, Path(args.output), title=args.title)
    print(to_markdown(lb, args.title))
    for kind, p in paths.items():
        print(f"{kind:>9}: {p}")
    return 0
