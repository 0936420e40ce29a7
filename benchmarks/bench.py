"""``dllm-eval bench``: decoding speed (and, with a trained model, accuracy) of the one engine.

Builds native LLaDA, Dream and SDAR models with random weights from embedded configs (tiny
shapes as the test fixtures, a small LLaDA-layout shape that a CPU runs in seconds per forward,
and the real LLaDA-8B shape when a GPU is present), decodes random prompts with
``dllm_eval.generate`` under several samplers, commit rules, KV caches and batch sizes, and
prints one table row per setting: forwards (NFE), tokens per forward, seconds per sample. With
``--model DIR`` (a trained checkpoint such as the demo model) it also decodes problems of the
bundled synthetic GSM8K-format task (or ``--data FILE.jsonl`` with ``question``/``answer``
records) and reports accuracy. A second table checks the issue-8 targets (attention-sampler
overhead at equal NFE, analytic extra FLOPs at LLaDA-8B shape from ``benchmarks/flops.py``,
batch-8 vs batch-1 throughput, dual cache + threshold vs uncached one-token-per-step, and on a
GPU the time per cached forward against the memory-bandwidth floor). The hardware (CPU model and
cores, torch version and threads, GPU name) heads the output; ``--json FILE`` writes everything.

    dllm-eval bench --quick                      # ~1 minute on 2 CPU cores
    dllm-eval bench --json bench.json            # tiny + small shapes (+ LLaDA-8B on a GPU)
    dllm-eval bench --model DIR --json out.json  # adds accuracy rows for a trained checkpoint

This is a benchmark, not a test: it never fails on a missed target, it reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllm_eval.benchmarks.flops import LLADA_8B, ModelShape, overhead_scenarios

# ------------------------------------------------------------------------------------------------
# model shapes (random weights); the tiny ones are the test fixtures' configs
# ------------------------------------------------------------------------------------------------

_TINY_LLADA = {
    "d_model": 64, "n_heads": 4, "n_kv_heads": 4, "n_layers": 2, "mlp_hidden_size": 128,
    "vocab_size": 1024, "embedding_size": 1024, "max_sequence_length": 512, "rope_theta": 500000.0,
    "mask_token_id": 1010, "eos_token_id": 1001, "pad_token_id": 1001,
}
_TINY_QWEN = {
    "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
    "intermediate_size": 128, "vocab_size": 1024, "max_position_embeddings": 512,
    "rope_theta": 1000000.0, "mask_token_id": 1010, "eos_token_id": 1000, "pad_token_id": 1000,
    "bos_token_id": 1000,
}

#: name -> (family model_type, config keyword arguments, highest id used in random prompts)
SHAPES: dict[str, tuple[str, dict[str, Any], int]] = {
    "llada-tiny": ("llada", _TINY_LLADA, 1000),
    "dream-tiny": ("Dream", _TINY_QWEN, 1000),
    "sdar-tiny": ("sdar", {**_TINY_QWEN, "head_dim": 32}, 1000),
    # LLaDA layout (MHA, SwiGLU 3x, untied head), 44M parameters: seconds per forward on a CPU
    "llada-small": ("llada", {
        "d_model": 512, "n_heads": 8, "n_kv_heads": 8, "n_layers": 8, "mlp_hidden_size": 1536,
        "vocab_size": 16384, "embedding_size": 16384, "max_sequence_length": 2048,
        "rope_theta": 500000.0, "mask_token_id": 16000, "eos_token_id": 16001, "pad_token_id": 16001,
    }, 16000),
    # GSAI-ML/LLaDA-8B-Instruct config.json (GPU only)
    "llada-8b": ("llada", {
        "d_model": LLADA_8B.hidden, "n_heads": LLADA_8B.heads, "n_kv_heads": LLADA_8B.kv_heads,
        "n_layers": LLADA_8B.layers, "mlp_hidden_size": LLADA_8B.ffn, "vocab_size": LLADA_8B.vocab,
        "embedding_size": LLADA_8B.vocab, "max_sequence_length": 4096, "rope_theta": 500000.0,
        "mask_token_id": 126336, "eos_token_id": 126081, "pad_token_id": 126081,
    }, 126000),
}

#: peak memory bandwidth (bytes/s) of GPUs whose floor the bench reports, by name substring
GPU_BANDWIDTH = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100": 3.35e12, "A100": 2.0e12}

ROW_KEYS = (
    "family", "shape", "sampler", "commit_rule", "cache", "batch_size", "gen_length", "nfe",
    "tokens_per_forward", "seconds_per_sample", "accuracy",
)


@dataclass(frozen=True, eq=False)
class Case:
    """One decoding setting to time."""

    label: str
    shape: str
    prompt: int
    options: dict[str, Any]
    batch: int = 1
    trained: bool = False

    @property
    def family(self) -> str:
        return SHAPES[self.shape][0].lower() if self.shape in SHAPES else self.shape


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    accuracy: float | None = None
    n_samples: int = 0


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny models and short sequences only (about a minute on 2 CPU cores)")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write hardware, rows and checks as JSON")
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="a trained checkpoint (or 'demo': the shipped results/demo_model): adds "
                             "accuracy rows on the synthetic GSM8K-format task")
    parser.add_argument("--data", metavar="FILE", default=None,
                        help="with --model: JSONL of {question, answer ending '#### N'} instead of the synthetic task")
    parser.add_argument("--limit", type=int, default=None,
                        help="with --model: number of problems (default 16 with --quick, else 64)")
    parser.add_argument("--gen-length", type=int, default=32,
                        help="with --model: tokens to generate (default 32, the demo's answer length)")
    parser.add_argument("--block-length", type=int, default=8, help="with --model: block length (default 8)")
    parser.add_argument("--device", default="auto",
                        help="auto (CPU, plus the GPU when one is present), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 with --quick, where tiny models gain nothing from "
                             "threads and lose much on a busy machine; otherwise torch's choice)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per setting after one warm-up; the minimum is reported (default 3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    threads = args.threads if args.threads is not None else (1 if args.quick else None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads={threads} is invalid; accepted: an integer >= 1")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous)


def _run(args: argparse.Namespace) -> int:
    devices = resolve_devices(args.device)
    repeats = args.repeats if args.repeats is not None else 3
    if repeats < 1:
        raise ValueError(f"--repeats={repeats} is invalid; accepted: an integer >= 1")
    if args.model is None and (args.data is not None or args.limit is not None):
        raise ValueError("--data and --limit need --model DIR (a trained checkpoint)")
    hardware = hardware_info(devices)
    print(format_hardware(hardware))
    rows: list[dict[str, Any]] = []
    for device in devices:
        cases = synthetic_cases(args.quick, device)
        rows += run_cases(cases, device, repeats, progress=not args.no_progress)
        if args.model is not None:
            limit = args.limit if args.limit is not None else (16 if args.quick else 64)
            rows += run_trained(args.model, device, args.data, limit, args.gen_length, args.block_length,
                                args.quick, progress=not args.no_progress)
    print()
    print(format_table(rows))
    flops = overhead_scenarios(LLADA_8B)
    checks = target_checks(rows, flops, hardware)
    print()
    print(format_flops(flops))
    print()
    print(format_checks(checks))
    if args.json:
        payload = {"hardware": hardware, "command": "dllm-eval bench " + " ".join(sys.argv[2:]),
                   "rows": rows, "checks": checks, "flops": flops}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=1))
        print(f"\nwrote {args.json}")
    return 0


def resolve_devices(device: str) -> list[str]:
    """``auto`` -> ``['cpu']`` plus ``'cuda'`` when available; otherwise the one device asked for."""
    import torch

    if device == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if device == "cpu":
        return ["cpu"]
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device={device!r}: no CUDA device is available; accepted: auto or cpu")
        return [device]
    raise ValueError(f"--device={device!r} is invalid; accepted: auto, cpu, cuda, cuda:N")


# ------------------------------------------------------------------------------------------------
# hardware
# ------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_info(devices: list[str]) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": None,
    }
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    gpus = [d for d in devices if d.startswith("cuda")]
    if gpus:
        info["gpu"] = torch.cuda.get_device_name(torch.device(gpus[0]))
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(torch.device(gpus[0])).total_memory / 2**30, 1)
    return info


def format_hardware(hw: dict[str, Any]) -> str:
    gpu = hw["gpu"] or "none"
    load = f", load average {hw['load_average_1min']}" if "load_average_1min" in hw else ""
    return (f"hardware: CPU {hw['cpu']} ({hw['cpu_cores']} cores{load}), torch {hw['torch']} "
            f"({hw['torch_threads']} threads), python {hw['python']}, GPU {gpu}")


# ------------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------------


def _decode_sets(shape: str, prompt: int, gen: int, block: int, batch8: bool, attn: bool,
                 attn_cached: bool = False, agdo: bool = True) -> list[Case]:
    """The settings compared on one bidirectional shape (``attn_cached``: also the attention
    sampler with the dual cache, statistics of the block's query rows only)."""
    one = {"gen_length": gen, "block_length": block, "steps": gen}  # one token per forward
    thr = {"gen_length": gen, "block_length": block, "steps": gen, "threshold": 0.9}
    cases = [
        Case("uncached 1 tok/step", shape, prompt, {**one, "sampler": "confidence", "kv_cache": "none"}),
        Case("dual 1 tok/step", shape, prompt, {**one, "sampler": "confidence", "kv_cache": "dual"}),
        Case("prefix + threshold", shape, prompt, {**thr, "sampler": "confidence", "kv_cache": "prefix"}),
        Case("dual + threshold", shape, prompt, {**thr, "sampler": "confidence", "kv_cache": "dual"}),
    ]
    if attn:
        cases.append(Case("attn 1 tok/step", shape, prompt, {**one, "sampler": "attn", "kv_cache": "none"}))
    if attn and agdo:
        cases.append(Case("agdo 1 tok/step", shape, prompt, {**one, "sampler": "agdo", "kv_cache": "none"}))
    if attn_cached:
        cases.append(Case("attn dual 1 tok/step", shape, prompt, {**one, "sampler": "attn", "kv_cache": "dual"}))
    if attn_cached and agdo:
        cases.append(Case("agdo dual 1 tok/step", shape, prompt, {**one, "sampler": "agdo", "kv_cache": "dual"}))
    if batch8:
        cases.append(Case("uncached 1 tok/step", shape, prompt,
                          {**one, "sampler": "confidence", "kv_cache": "none"}, batch=8))
        cases.append(Case("dual 1 tok/step", shape, prompt,
                          {**one, "sampler": "confidence", "kv_cache": "dual"}, batch=8))
        cases.append(Case("dual + threshold", shape, prompt,
                          {**thr, "sampler": "confidence", "kv_cache": "dual"}, batch=8))
    return cases


def synthetic_cases(quick: bool, device: str) -> list[Case]:
    """Random-weight settings for one device (sizes: prompt, gen_length, block_length)."""
    prompt, gen, block = (16, 32, 8) if quick else (32, 64, 16)
    cases = _decode_sets("llada-tiny", prompt, gen, block, batch8=True, attn=True, attn_cached=True)
    cases += [
        Case("uncached 1 tok/step", "dream-tiny", prompt,
             {"gen_length": gen, "block_length": block, "steps": gen, "sampler": "confidence"}),
        Case("dual + threshold", "dream-tiny", prompt,
             {"gen_length": gen, "block_length": block, "steps": gen, "threshold": 0.9, "kv_cache": "dual"}),
        Case("prefix 1 tok/step", "sdar-tiny", prompt,
             {"gen_length": gen, "block_length": block, "steps_per_block": block, "kv_cache": "prefix"}),
        Case("prefix + threshold", "sdar-tiny", prompt,
             {"gen_length": gen, "block_length": block, "steps_per_block": block, "threshold": 0.9,
              "kv_cache": "prefix"}),
    ]
    if quick:
        return cases
    cases += _decode_sets("llada-small", 128, 128, 32, batch8=True, attn=True, attn_cached=True, agdo=False)
    cases = [c for c in cases if not (c.shape == "llada-small" and c.batch == 8 and c.options["kv_cache"] == "none")]
    if device.startswith("cuda"):
        cases += _decode_sets("llada-8b", 256, 256, 32, batch8=True, attn=True, attn_cached=True)
    return cases


# ------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------


def build_model(shape: str, device: str, block_size: int | None = None) -> Any:
    """A native model of ``shape`` with random weights (seeded), in eval mode, on ``device``
    (bfloat16 on a GPU, float32 on the CPU)."""
    import torch
    from dllm_eval.harness import models
    from dllm_eval.harness.models.configs import CONFIG_CLASSES

    model_type, kwargs, _ = SHAPES[shape]
    kwargs = dict(kwargs)
    if model_type == "sdar" and block_size is not None:
        kwargs["block_size"] = block_size
    config = CONFIG_CLASSES[model_type](**kwargs)
    cls = {"llada": models.LLaDAModelLM, "Dream": models.DreamModel, "sdar": models.SDARForCausalLM}[model_type]
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def _prompts(shape: str, batch: int, length: int, device: str) -> Any:
    import torch

    high = SHAPES[shape][2]
    gen = torch.Generator().manual_seed(1234 + length)
    return torch.randint(0, high, (batch, length), generator=gen).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(device))


def run_cases(cases: list[Case], device: str, repeats: int, progress: bool = True,
              time_budget_s: float = 30.0) -> list[dict[str, Any]]:
    """Warm up every case once, then time ``repeats`` rounds over all cases in turn (so that a
    change of machine load spreads over the cases); a case whose runs already took
    ``time_budget_s`` stops repeating (a warm-up longer than a third of it counts as a run). Returns one row per case."""
    import dllm_eval
    from tqdm.auto import tqdm

    built: dict[tuple[str, int | None], Any] = {}
    timings = [Timing() for _ in cases]
    bar = tqdm(total=len(cases) * (repeats + 1), desc=f"bench {device}", unit="run", disable=not progress,
               leave=False)
    for rnd in range(repeats + 1):
        for case, t in zip(cases, timings):
            if t.error is not None or (rnd > 0 and t.seconds and sum(t.seconds) >= time_budget_s):
                bar.update(1)
                continue
            block = case.options.get("block_length")
            key = (case.shape, block if SHAPES[case.shape][0] == "sdar" else None)
            if key not in built:
                built[key] = build_model(case.shape, device, block)
            model = built[key]
            ids = _prompts(case.shape, case.batch, case.prompt, device)
            try:
                _sync(device)
                start, cpu_start = time.perf_counter(), time.process_time()
                res = dllm_eval.generate(model, ids, **case.options)
                _sync(device)
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            except ValueError as err:  # a setting this engine does not accept: report it
                t.error = str(err)
                bar.update(1)
                continue
            if rnd > 0 or elapsed > time_budget_s / 3:  # a slow warm-up counts as a run
                t.seconds.append(elapsed)
                t.cpu_seconds.append(cpu)
            t.result = res
            bar.update(1)
        if device.startswith("cuda") and rnd == 0:
            import torch

            torch.cuda.empty_cache()
    bar.close()
    return [make_row(c, t, device) for c, t in zip(cases, timings)]


def make_row(case: Case, t: Timing, device: str) -> dict[str, Any]:
    """The JSON row of one timed case."""
    opts = case.options
    res = t.result
    row: dict[str, Any] = {
        "family": case.family,
        "shape": case.shape,
        "device": device,
        "setting": case.label,
        "sampler": opts.get("sampler", "confidence"),
        "commit_rule": opts.get("commit") or ("threshold" if opts.get("threshold") is not None else "schedule"),
        "threshold": opts.get("threshold"),
        "cache": opts.get("kv_cache") or "none",
        "batch_size": case.batch,
        "prompt_length": case.prompt,
        "gen_length": opts["gen_length"],
        "block_length": opts.get("block_length"),
        "nfe": None,
        "tokens_per_forward": None,
        "rows_per_forward": None,
        "seconds_per_sample": None,
        "seconds_per_forward": None,
        "cpu_seconds_per_sample": None,
        "accuracy": t.accuracy,
        "model": "trained" if case.trained else "random",
        "n_samples": t.n_samples or case.batch,
        "repeats": len(t.seconds),
        "error": t.error,
    }
    if res is not None and t.seconds:
        seconds = min(t.seconds)
        stats = res.stats if isinstance(res.stats, dict) else {}
        row["nfe"] = int(res.nfe)
        row["tokens_per_forward"] = round(per_sequence_tpf(res, case.batch), 4)
        forward_rows = stats.get("forward_rows") or []
        if forward_rows:
            row["rows_per_forward"] = round(sum(forward_rows) / len(forward_rows), 3)
        n = t.n_samples or case.batch
        row["seconds_per_sample"] = seconds / n
        row["seconds_per_forward"] = seconds / max(1, res.nfe) if not t.n_samples else None
        row["seconds"] = seconds
        if t.cpu_seconds:
            row["cpu_seconds_per_sample"] = min(t.cpu_seconds) / n
    return row


def per_sequence_tpf(res: Any, batch: int) -> float:
    """Tokens committed per sequence per forward (the engine's own ratio counts the tokens of
    every row of a batched forward)."""
    stats = res.stats if isinstance(res.stats, dict) else {}
    rows_nfe = stats.get("nfe_rows")
    committed = stats.get("tokens_committed")
    if rows_nfe and committed is not None and sum(rows_nfe):
        return committed / sum(rows_nfe)
    return float(res.tokens_per_forward) / max(1, batch)


# ------------------------------------------------------------------------------------------------
# trained model: accuracy
# ------------------------------------------------------------------------------------------------


def load_problems(data: str | None, limit: int) -> list[dict[str, str]]:
    """``limit`` problems ``{question, answer}``: the first ones of the demo's synthetic test
    split (seed 0), or of a JSONL file."""
    if limit < 1:
        raise ValueError(f"--limit={limit} is invalid; accepted: an integer >= 1")
    if data is None:
        from dllm_eval.results import synthetic

        return synthetic.generate(limit, seed=0)
    path = Path(data)
    if not path.is_file():
        raise ValueError(f"--data={data!r}: no such file; accepted: a JSONL file of question/answer records")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, r in enumerate(records) if "question" not in r or "answer" not in r]
    if bad:
        raise ValueError(f"--data={data!r}: records {bad[:5]} lack 'question' or 'answer'")
    return records[:limit]


def trained_cases(gen: int, block: int, quick: bool) -> list[Case]:
    """Settings compared on a trained model: the uncached one-token-per-step reference, threshold
    decoding uncached and with the caches, and the attention sampler."""
    one = {"gen_length": gen, "block_length": block, "steps": gen}
    thr = {"gen_length": gen, "block_length": block, "steps": gen, "threshold": 0.9}
    cases = [
        Case("uncached 1 tok/step", "trained", 0, {**one, "sampler": "confidence", "kv_cache": "none"}, 8, True),
        Case("uncached + threshold", "trained", 0, {**thr, "sampler": "confidence", "kv_cache": "none"}, 8, True),
        Case("dual + threshold", "trained", 0, {**thr, "sampler": "confidence", "kv_cache": "dual"}, 8, True),
        Case("dual + threshold", "trained", 0, {**thr, "sampler": "confidence", "kv_cache": "dual"}, 1, True),
        Case("uncached 1 tok/step", "trained", 0, {**one, "sampler": "confidence", "kv_cache": "none"}, 1, True),
    ]
    if not quick:
        cases += [
            Case("prefix + threshold", "trained", 0, {**thr, "sampler": "confidence", "kv_cache": "prefix"}, 8, True),
            Case("dual + threshold + stop", "trained", 0,
                 {**thr, "sampler": "confidence", "kv_cache": "dual", "stop_on_eos": True}, 8, True),
            Case("attn 1 tok/step", "trained", 0, {**one, "sampler": "attn", "kv_cache": "none"}, 8, True),
        ]
    return cases


def run_trained(model_dir: str, device: str, data: str | None, limit: int, gen: int, block: int,
                quick: bool, progress: bool = True) -> list[dict[str, Any]]:
    """Decode ``limit`` problems with each trained-model setting; rows carry accuracy."""
    import dllm_eval
    import torch
    from dllm_eval.tasks.extract import extract_gsm8k_answer, gsm8k_target
    from tqdm.auto import tqdm

    if model_dir == "demo":
        model_dir = str(Path(__file__).resolve().parents[1] / "results" / "demo_model")
        if not Path(model_dir).is_dir():
            raise ValueError(f"--model=demo: the demo checkpoint {model_dir} is not there; accepted: a checkpoint folder")
    model, tokenizer, adapter = dllm_eval.load(model_dir, dtype="float32" if device == "cpu" else "bfloat16",
                                               device=device)
    if tokenizer is None:
        raise ValueError(f"--model={model_dir!r} has no tokenizer files; accepted: a checkpoint folder with a tokenizer")
    problems = load_problems(data, limit)
    prompts = [f"Question: {p['question']}\nAnswer:" for p in problems]
    golds = [gsm8k_target(p["answer"]) for p in problems]
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in prompts]
    stop = set(adapter.eos_ids)
    pad = adapter.pad_id if adapter.pad_id is not None else adapter.eos_ids[0]
    rows = []
    cases = trained_cases(gen, block, quick)
    bar = tqdm(total=len(cases), desc=f"bench trained {device}", unit="setting", disable=not progress, leave=False)
    for case in cases:
        t = Timing(n_samples=len(problems))
        texts: list[str] = []
        nfe_calls: list[int] = []
        committed = rows_nfe = 0
        forward_rows: list[int] = []
        try:
            # warm-up on the first batch (not timed)
            ids, am = _left_pad(encoded[: case.batch], pad, device)
            dllm_eval.generate(model, ids, attention_mask=am, adapter=adapter, **case.options)
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            for lo in range(0, len(encoded), case.batch):
                ids, am = _left_pad(encoded[lo: lo + case.batch], pad, device)
                res = dllm_eval.generate(model, ids, attention_mask=am, adapter=adapter, **case.options)
                nfe_calls.append(int(res.nfe))
                committed += int(res.stats.get("tokens_committed", 0))
                rows_nfe += sum(res.stats.get("nfe_rows", []))
                forward_rows += list(res.stats.get("forward_rows", []))
                for row in res.sequences[:, ids.shape[1]:].tolist():
                    cut = next((i for i, tok in enumerate(row) if tok in stop), len(row))
                    texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
            _sync(device)
            t.seconds.append(time.perf_counter() - start)
            t.cpu_seconds.append(time.process_time() - cpu_start)
        except ValueError as err:
            t.error = str(err)
        row = make_row(case, t, device)
        row["family"], row["shape"], row["model"] = adapter.name, "trained", str(model_dir)
        if t.error is None:
            correct = sum(extract_gsm8k_answer(text) == gold for text, gold in zip(texts, golds))
            row["accuracy"] = correct / len(golds)
            row["nfe"] = round(sum(nfe_calls) / len(nfe_calls), 2)
            row["tokens_per_forward"] = round(committed / rows_nfe, 4) if rows_nfe else None
            row["rows_per_forward"] = round(sum(forward_rows) / len(forward_rows), 3) if forward_rows else None
            row["seconds_per_sample"] = t.seconds[0] / len(problems)
            row["seconds"] = t.seconds[0]
            row["cpu_seconds_per_sample"] = t.cpu_seconds[0] / len(problems)
            row["repeats"] = 1
        rows.append(row)
        bar.update(1)
    bar.close()
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def _left_pad(seqs: list[list[int]], pad: int, device: str) -> tuple[Any, Any]:
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    am = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        am[i, width - len(s):] = 1
    return ids.to(device), am.to(device)


# ------------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------------


def _find(rows: list[dict], **match: Any) -> dict | None:
    for row in rows:
        if row.get("error") is None and row.get("seconds_per_sample") is not None and all(
            row.get(k) == v for k, v in match.items()
        ):
            return row
    return None


def _cpu_note(slow: dict, fast: dict, percent: bool = False) -> str:
    """The same comparison in process CPU time (robust to other processes on a busy machine)."""
    a, b = slow.get("cpu_seconds_per_sample"), fast.get("cpu_seconds_per_sample")
    if not a or not b:
        return ""
    if percent:
        return f"; in CPU time {100.0 * (b / a - 1):+.1f} %"
    return f"; in CPU time {a / b:.2f}x"


def _check(name: str, value: float | None, target: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"check": name, "value": value, "target": target, "met": ok, "detail": detail}


def target_checks(rows: list[dict], flops: list[dict], hardware: dict) -> list[dict[str, Any]]:
    """The issue-8 targets this run can measure (a target without its rows is left out)."""
    checks = []
    for device in sorted({r["device"] for r in rows}):
        for shape in ("llada-tiny", "llada-small", "llada-8b"):
            base = dict(device=device, shape=shape, batch_size=1)
            for ref, setting in (("uncached 1 tok/step", "attn 1 tok/step"), ("uncached 1 tok/step", "agdo 1 tok/step"),
                                 ("dual 1 tok/step", "attn dual 1 tok/step"),
                                 ("dual 1 tok/step", "agdo dual 1 tok/step")):
                conf = _find(rows, setting=ref, **base)
                other = _find(rows, setting=setting, **base)
                if conf and other and conf["nfe"] == other["nfe"]:
                    over = 100.0 * (other["seconds_per_sample"] / conf["seconds_per_sample"] - 1)
                    checks.append(_check(
                        f"{other['sampler']} sampler overhead vs confidence, equal NFE, cache {conf['cache']} "
                        f"({shape}, {device})",
                        round(over, 1), "<= 10 %", over <= 10.0,
                        f"{other['seconds_per_sample']:.4f} vs {conf['seconds_per_sample']:.4f} s/sample, "
                        f"NFE {conf['nfe']}" + _cpu_note(conf, other, percent=True)))
            for setting in ("uncached 1 tok/step", "dual 1 tok/step", "dual + threshold"):
                one = _find(rows, setting=setting, device=device, shape=shape, batch_size=1)
                eight = _find(rows, setting=setting, device=device, shape=shape, batch_size=8)
                if one and eight:
                    ratio = one["seconds_per_sample"] / eight["seconds_per_sample"]
                    checks.append(_check(
                        f"batch 8 vs batch 1 throughput, {setting} ({shape}, {device})",
                        round(ratio, 2), ">= 3x", ratio >= 3.0,
                        f"{1 / eight['seconds_per_sample']:.2f} vs {1 / one['seconds_per_sample']:.2f} samples/s"
                        + _cpu_note(one, eight)))
            slow = _find(rows, setting="uncached 1 tok/step", **base)
            fast = _find(rows, setting="dual + threshold", **base)
            if slow and fast:
                ratio = slow["seconds_per_sample"] / fast["seconds_per_sample"]
                checks.append(_check(
                    f"dual cache + threshold 0.9 vs uncached 1 tok/step ({shape}, {device}, random weights)",
                    round(ratio, 2), ">= 3x faster", ratio >= 3.0,
                    f"{fast['seconds_per_sample']:.4f} vs {slow['seconds_per_sample']:.4f} s/sample; "
                    f"tokens/forward {fast['tokens_per_forward']} vs {slow['tokens_per_forward']}"
                    + _cpu_note(slow, fast)))
        # the trained model: parallel decoding gain and its accuracy cost
        for batch in (8, 1):
            ref = _find(rows, device=device, shape="trained", setting="uncached 1 tok/step", batch_size=batch)
            fast = _find(rows, device=device, shape="trained", setting="dual + threshold", batch_size=batch)
            if not (ref and fast):
                continue
            tpf = fast["tokens_per_forward"]
            checks.append(_check(
                f"threshold 0.9 tokens per forward (trained model, dual cache, batch {batch}, {device})",
                tpf, ">= 3", tpf is not None and tpf >= 3.0, f"NFE {fast['nfe']} vs {ref['nfe']} per call"))
            loss = 100.0 * (ref["accuracy"] - fast["accuracy"])
            checks.append(_check(
                f"threshold 0.9 accuracy loss vs 1 tok/step (trained model, batch {batch}, {device})",
                round(loss, 1), "<= 1 point", loss <= 1.0,
                f"{fast['accuracy']:.3f} vs {ref['accuracy']:.3f} on {fast['n_samples']} problems"))
            ratio = ref["seconds_per_sample"] / fast["seconds_per_sample"]
            checks.append(_check(
                f"dual cache + threshold vs uncached 1 tok/step (trained model, batch {batch}, {device})",
                round(ratio, 2), ">= 3x faster", ratio >= 3.0,
                f"{fast['seconds_per_sample']:.4f} vs {ref['seconds_per_sample']:.4f} s/sample"
                + _cpu_note(ref, fast)))
    worst = max(flops, key=lambda c: c["extra_percent"])
    default = next(c for c in flops if c["forward"] == "uncached" and c["stats rows"] == "all query rows"
                   and c["stats layers"] == "1 layer")
    checks.append(_check(
        "analytic extra FLOPs of attention statistics at LLaDA-8B shape (attn sampler: last layer, all rows)",
        round(default["extra_percent"], 3), "<= 2 %", default["extra_percent"] <= 2.0,
        f"{default['extra_gflops']:.2f} of {default['forward_gflops']:.0f} GFLOP per uncached forward "
        "(prompt 256 + 256 generated)"))
    checks.append(_check(
        "analytic extra FLOPs at LLaDA-8B shape, worst case (every layer)",
        round(worst["extra_percent"], 3), "<= 2 %", worst["extra_percent"] <= 2.0,
        f"{worst['forward']}, {worst['stats rows']}, {worst['stats layers']}"))
    gpu = hardware.get("gpu")
    row = _find(rows, shape="llada-8b", setting="dual + threshold", batch_size=1)
    if gpu and row:
        bandwidth = next((bw for name, bw in GPU_BANDWIDTH.items() if name in gpu), None)
        if bandwidth is not None:
            floor = weight_bytes(LLADA_8B, 2) / bandwidth
            ratio = row["seconds_per_forward"] / floor
            checks.append(_check(
                "LLaDA-8B shape, 256 tokens, block 32, threshold + dual cache: time per forward vs "
                "memory-bandwidth floor", round(ratio, 2), "<= 4x", ratio <= 4.0,
                f"{1e3 * row['seconds_per_forward']:.2f} ms per forward vs floor {1e3 * floor:.2f} ms "
                f"({gpu}, {bandwidth / 1e12:.2f} TB/s, bf16 weights)"))
    return checks


def weight_bytes(shape: ModelShape, bytes_per_param: int) -> float:
    """Bytes of weights one forward reads: every layer and the output head (the embedding is a
    row lookup)."""
    return (shape.parameters - shape.vocab * shape.hidden) * bytes_per_param


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the rows (errors shown in the last column)."""
    cols = [("device", "device"), ("family", "family"), ("shape", "shape"), ("setting", "setting"),
            ("sampler", "sampler"), ("commit_rule", "commit"), ("cache", "cache"), ("batch_size", "B"),
            ("gen_length", "gen"), ("nfe", "NFE"), ("tokens_per_forward", "tok/fwd"),
            ("rows_per_forward", "rows/fwd"), ("seconds_per_sample", "s/sample"),
            ("seconds_per_forward", "s/fwd"), ("cpu_seconds_per_sample", "cpu s/sample"),
            ("accuracy", "acc")]
    table = [[h for _, h in cols]]
    for row in rows:
        cells = [_fmt(row.get(k), 4 if k.startswith("seconds") else 2) for k, _ in cols]
        if row.get("error"):
            cells[-1] = "skipped: " + row["error"][:80]
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_flops(flops: list[dict[str, Any]]) -> str:
    lines = ["attention statistics, analytic extra FLOPs at LLaDA-8B shape (prompt 256, 256 generated, block 32):"]
    for c in flops:
        lines.append(f"  {c['forward']:32} {c['stats rows']:17} {c['stats layers']:14} "
                     f"{c['extra_gflops']:8.2f} / {c['forward_gflops']:7.0f} GFLOP = {c['extra_percent']:.3f} %")
    return "\n".join(lines)


def format_checks(checks: list[dict[str, Any]]) -> str:
    lines = ["targets (issue 8):"]
    for c in checks:
        mark = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
        lines.append(f"  [{mark:6}] {c['check']}: {_fmt(c['value'], 3)} (target {c['target']}) - {c['detail']}")
    return "\n".join(lines)
