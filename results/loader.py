"""Read lm-eval output folders into plain records: one ``Run`` per results JSON, one ``Score`` per metric.

lm-eval (0.4.x, ``--output_path DIR``) writes ``DIR/<sanitized model name>/results_<date>.json``
and, with ``--log_samples``, ``samples_<task>_<date>.jsonl`` beside it (a ``--output_path``
ending in ``.json`` writes ``<stem>_<date>.json`` instead). The results JSON holds
``results[task]["<metric>,<filter>"]`` and ``"<metric>_stderr,<filter>"`` (a float or ``"N/A"``),
``n-samples``, ``n-shot``, ``higher_is_better``, ``group_subtasks``, and ``config`` with
``model`` (the backend: ``dllm``, ``hf``, ``vllm``, ...), ``model_args`` (a dict from the CLI or a
``key=value,...`` string from the Python API) and whatever the LM's ``get_model_info()`` returned.
This module is backend-agnostic: the sampler comes from a ``sampler`` (or Dream's ``alg``, LLaDA's
``remasking``) option wherever it appears, decoding settings are the model and generation
options that are not about loading or hardware, and the efficiency numbers (``nfe_total``,
``nfe_per_sample``, ``tokens_per_forward``) are looked up in ``config``, in a nested
``dllm``/``model_info``/``decode`` dict, at the top level, or as per-task metrics, and are
``None`` when a backend does not report them. Where lm-eval could not give a stderr (``"N/A"``)
and the samples file is there, the stderr of the mean is computed from the per-sample values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# model_args keys that say where/how the model is loaded or run, not how it decodes
NON_DECODING_KEYS = frozenset(
    {
        "pretrained",
        "model",
        "path",
        "engine",
        "peft",
        "delta",
        "tokenizer",
        "revision",
        "dtype",
        "device",
        "device_map",
        "batch_size",
        "max_batch_size",
        "trust_remote_code",
        "parallelize",
        "cache_dir",
        "cache",
        "cache_requests",
        "use_fast_tokenizer",
        "tensor_parallel_size",
        "data_parallel_size",
        "pipeline_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "max_length",
        "swap_space",
        "seed",
        "attn_implementation",
        "low_cpu_mem_usage",
        "load_in_8bit",
        "load_in_4bit",
        "enforce_eager",
        "max_num_seqs",
        "backend",
        "logits_cache",
        "offload_folder",
        "add_bos_token",
        "prefix_token_id",
        "lora_local_path",
        "request_cache",
        "output_path",
        "limit",
    }
)
# backends known to decode left to right, one token per forward
AUTOREGRESSIVE_BACKENDS = frozenset(
    {
        "hf",
        "hf-auto",
        "huggingface",
        "vllm",
        "sglang",
        "hf-multimodal",
        "vllm-vlm",
        "openvino",
        "local-completions",
        "local-chat-completions",
        "openai-completions",
        "openai-chat-completions",
        "gguf",
        "ggml",
        "mamba_ssm",
        "nemo_lm",
        "neuronx",
        "ipex",
        "habana",
        "winml",
    }
)
SAMPLER_KEYS = ("sampler", "remasking", "alg")
EFFICIENCY_KEYS = ("nfe_total", "nfe_per_sample", "tokens_per_forward")
_EFFICIENCY_ALIASES = {
    "nfe_total": ("nfe_total", "total_nfe", "nfe"),
    "nfe_per_sample": ("nfe_per_sample", "mean_nfe", "avg_nfe"),
    "tokens_per_forward": ("tokens_per_forward", "tpf"),
}
# where get_model_info() output or a nested decoding dict may sit inside config / the top level
_NESTED = ("dllm", "model_info", "decode", "decoding", "decode_config", "decoding_config")
_RESULTS_RE = re.compile(r"^results_.*\.json$")


@dataclass(frozen=True)
class Score:
    """One metric of one task in one run (``value`` as lm-eval wrote it)."""

    task: str
    metric: str
    filter: str
    value: float | None
    stderr: float | None
    n: int | None = None
    higher_is_better: bool | None = None
    n_shot: int | None = None
    alias: str | None = None
    is_group: bool = False
    is_subtask: bool = False

    @property
    def key(self) -> str:
        """``task/metric,filter`` — the name used by regress tolerances and the long CSV."""
        return f"{self.task}/{self.metric},{self.filter}"


@dataclass(frozen=True)
class Run:
    """One lm-eval results JSON and what it says about the model, its decoding and its scores."""

    path: Path
    backend: str
    model: str
    model_args: dict[str, Any]
    sampler: str | None
    settings: dict[str, Any]
    scores: tuple[Score, ...]
    efficiency: dict[str, float | None]
    task_efficiency: dict[str, dict[str, float | None]]
    samples: dict[str, Path]
    date: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def model_short(self) -> str:
        """The model's last path component (``/ckpt/llada-tiny`` -> ``llada-tiny``)."""
        return short_model_name(self.model)

    @property
    def settings_text(self) -> str:
        return format_settings(self.settings)

    def efficiency_for(self, task: str) -> dict[str, float | None]:
        """Efficiency numbers for ``task``: the task's own where reported, else the run's."""
        own = self.task_efficiency.get(task, {})
        return {
            k: own.get(k) if own.get(k) is not None else self.efficiency.get(k)
            for k in EFFICIENCY_KEYS
        }


def short_model_name(model: str) -> str:
    text = str(model).rstrip("/\\")
    return re.split(r"[/\\]", text)[-1] or text


def format_settings(settings: dict[str, Any]) -> str:
    """``{"steps": 64, "threshold": 0.9}`` -> ``"steps=64 threshold=0.9"`` (sorted keys)."""
    return " ".join(f"{k}={_fmt_setting(v)}" for k, v in sorted(settings.items()))


def _fmt_setting(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


def parse_arg_value(text: str) -> Any:
    """Type one ``key=value`` value as lm-eval does: bools, None, ints, floats, quoted strings."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    try:
        return float(s)
    except ValueError:
        return s


def parse_model_args(model_args: str | dict[str, Any] | None) -> dict[str, Any]:
    """``"pretrained=x,steps=64"`` or a dict -> dict (lm-eval's ``simple_parse_args_string`` rules)."""
    if model_args is None:
        return {}
    if isinstance(model_args, dict):
        return dict(model_args)
    if not isinstance(model_args, str):
        raise ValueError(
            f"model_args: expected a 'key=value,...' string or a dict, got {type(model_args).__name__}"
        )
    text = model_args.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = parse_arg_value(value)
    return out


def find_results_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every lm-eval results JSON under ``paths`` (folders are searched recursively)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*.json") if _RESULTS_RE.match(f.name))
        elif p.is_file():
            found.append(p)
        else:
            raise ValueError(
                f"PATH: {str(p)!r} does not exist; give lm-eval output folders or results JSON files"
            )
    unique = list(dict.fromkeys(f.resolve() for f in found))
    return unique


def _date_id(path: Path) -> str:
    """The ``<date>`` part lm-eval puts after the last ``_`` of its file names."""
    return path.stem[path.stem.rfind("_") + 1 :]


def _find_samples(path: Path, tasks: Iterable[str]) -> dict[str, Path]:
    date = _date_id(path)
    out: dict[str, Path] = {}
    for task in tasks:
        cand = path.parent / f"samples_{task}_{date}.jsonl"
        if cand.is_file():
            out[task] = cand
    return out


def iter_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """The per-sample records of one ``samples_<task>_<date>.jsonl`` file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def sample_values(path: str | Path, metric: str, filter_name: str) -> list[float]:
    """Per-sample values of ``metric`` under ``filter_name`` from a samples file."""
    vals: list[float] = []
    for rec in iter_samples(path):
        if rec.get("filter", "none") != filter_name:
            continue
        v = rec.get(metric)
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return vals


def stderr_of_mean(values: list[float]) -> float | None:
    """Sample standard deviation / sqrt(n) (lm-eval's ``mean_stderr``); None for n < 2."""
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    var = sum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _containers(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Dicts that may hold get_model_info() output, most specific first."""
    cfg = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    out: list[dict[str, Any]] = []
    for base in (cfg, raw):
        for name in _NESTED:
            sub = base.get(name)
            if isinstance(sub, dict):
                out.append(sub)
                for name2 in _NESTED:  # e.g. config.dllm.decode
                    sub2 = sub.get(name2)
                    if isinstance(sub2, dict):
                        out.append(sub2)
        out.append(base)
    return out


def _efficiency(
    raw: dict[str, Any], tasks: Iterable[str]
) -> tuple[dict[str, float | None], dict[str, dict[str, float | None]]]:
    run_eff: dict[str, float | None] = dict.fromkeys(EFFICIENCY_KEYS)
    task_eff: dict[str, dict[str, float | None]] = {}
    tasks = set(tasks)
    for cont in _containers(raw):
        for key, aliases in _EFFICIENCY_ALIASES.items():
            for alias in aliases:
                if alias not in cont:
                    continue
                v = cont[alias]
                if isinstance(v, dict):  # {task: value}
                    for t, tv in v.items():
                        if t in tasks and _num(tv) is not None:
                            task_eff.setdefault(t, {}).setdefault(key, _num(tv))
                elif run_eff[key] is None and _num(v) is not None:
                    run_eff[key] = _num(v)
    # per-task efficiency written as task metrics ("nfe_per_sample,none": 12.0)
    for task, entry in (raw.get("results") or {}).items():
        if not isinstance(entry, dict):
            continue
        for mkey, v in entry.items():
            metric = mkey.split(",", 1)[0]
            for key, aliases in _EFFICIENCY_ALIASES.items():
                if metric in aliases and _num(v) is not None:
                    task_eff.setdefault(task, {}).setdefault(key, _num(v))
    return run_eff, task_eff


def _sampler_and_settings(
    backend: str, margs: dict[str, Any], raw: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    settings: dict[str, Any] = {}
    sampler: str | None = None
    info_dicts = [c for c in _containers(raw) if c is not raw and c is not raw.get("config")]
    cfg = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    for source in (margs, *info_dicts, cfg):
        for k in SAMPLER_KEYS:
            if sampler is None and isinstance(source.get(k), str) and source.get(k):
                sampler = source[k]
    for k, v in margs.items():
        if k in NON_DECODING_KEYS or k in SAMPLER_KEYS or k in EFFICIENCY_KEYS:
            continue
        settings[k] = v
    gen_kwargs = cfg.get("gen_kwargs")
    if isinstance(gen_kwargs, str):
        gen_kwargs = parse_model_args(gen_kwargs)
    if isinstance(gen_kwargs, dict):
        for k, v in gen_kwargs.items():
            settings.setdefault(k, v)
    if sampler is None and backend in AUTOREGRESSIVE_BACKENDS:
        sampler = "autoregressive"
    return sampler, settings


def load_run(path: str | Path) -> Run:
    """Parse one lm-eval results JSON (and find its samples files)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"PATH: cannot read lm-eval results from {str(path)!r}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("results"), dict):
        raise ValueError(
            f"PATH: {str(path)!r} is not an lm-eval results JSON (no 'results' object); "
            "give the folder passed to lm_eval --output_path or its results_*.json files"
        )
    cfg = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    margs = parse_model_args(cfg.get("model_args"))
    backend = str(raw.get("model_source") or cfg.get("model") or "unknown")
    model = (
        raw.get("model_name")
        or next(
            (
                margs[k]
                for k in ("peft", "delta", "pretrained", "model", "path", "engine")
                if k in margs
            ),
            None,
        )
        or cfg.get("model")
        or "unknown"
    )
    sampler, settings = _sampler_and_settings(backend, margs, raw)
    results: dict[str, Any] = raw["results"]
    subtasks = {t for subs in (raw.get("group_subtasks") or {}).values() for t in subs}
    groups = set(raw.get("groups") or {}) | set(raw.get("group_subtasks") or {})
    hib_all = raw.get("higher_is_better") or {}
    n_samples = raw.get("n-samples") or {}
    n_shot = raw.get("n-shot") or {}
    samples = _find_samples(path, results)
    scores: list[Score] = []
    for task, entry in results.items():
        if not isinstance(entry, dict):
            continue
        hib = hib_all.get(task) or {}
        n = None
        if isinstance(n_samples.get(task), dict):
            n = n_samples[task].get("effective")
        if n is None and isinstance(entry.get("sample_len"), int):
            n = entry["sample_len"]
        for mkey, value in entry.items():
            if "," not in mkey or "_stderr," in mkey:
                continue
            metric, filt = mkey.split(",", 1)
            if any(metric in aliases for aliases in _EFFICIENCY_ALIASES.values()):
                continue
            val = _num(value)
            se = _num(entry.get(f"{metric}_stderr,{filt}"))
            if se is None and task in samples:
                se = stderr_of_mean(sample_values(samples[task], metric, filt))
            scores.append(
                Score(
                    task=task,
                    metric=metric,
                    filter=filt,
                    value=val,
                    stderr=se,
                    n=n if isinstance(n, int) else None,
                    higher_is_better=hib.get(metric) if isinstance(hib.get(metric), bool) else None,
                    n_shot=n_shot.get(task) if isinstance(n_shot.get(task), int) else None,
                    alias=entry.get("alias"),
                    is_group=task in groups,
                    is_subtask=task in subtasks,
                )
            )
    run_eff, task_eff = _efficiency(raw, results)
    if run_eff["nfe_per_sample"] is None and run_eff["nfe_total"] is not None:
        total_n = sum(
            v.get("effective", 0)
            for t, v in n_samples.items()
            if isinstance(v, dict) and t not in groups
        )
        if total_n:
            run_eff["nfe_per_sample"] = run_eff["nfe_total"] / total_n
    for t, eff in task_eff.items():
        if eff.get("nfe_per_sample") is None and eff.get("nfe_total") is not None:
            n = (n_samples.get(t) or {}).get("effective")
            if n:
                eff["nfe_per_sample"] = eff["nfe_total"] / n
    return Run(
        path=path,
        backend=backend,
        model=str(model),
        model_args=margs,
        sampler=sampler,
        settings=settings,
        scores=tuple(scores),
        efficiency=run_eff,
        task_efficiency=task_eff,
        samples=samples,
        date=_date_id(path),
        raw=raw,
    )


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run under ``paths``, oldest first (lm-eval's date ids sort chronologically)."""
    paths = list(paths)
    files = find_results_files(paths)
    if not files:
        raise ValueError(
            f"PATH: no lm-eval results_*.json found under {', '.join(map(str, paths))}; "
            "run lm_eval with --output_path DIR and give DIR"
        )
    runs = [load_run(f) for f in files]
    runs.sort(key=lambda r: (r.date, str(r.path)))
    return runs
