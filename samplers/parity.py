"""``dllm-eval parity GOLDEN.json --model DIR``: replay reference decoding cases through the engine.

A golden file (format of ``../shared/fixtures/*/golden_generate.json``) lists cases produced by
the reference samplers: LLaDA ``generate`` (ML-GSAI/LLaDA), Fast-dLLM ``generate`` /
``generate_with_prefix_cache`` / ``generate_with_dual_cache`` (NVlabs/Fast-dLLM), Dream
``diffusion_generate`` and SDAR ``block_diffusion_generate`` (opencompass ``huggingface_bd3.py``
and the root ``generate.py`` of JetAstra/SDAR). Each case's function and arguments are mapped to
``DecodeConfig`` options (``case_options``), the engine decodes the case's prompts and the
output ids and forward count are compared with the recorded ones. Cases that recorded their
random draws (LLaDA ``remasking='random'``) are replayed with them (``RandomSampler(draws=)``).
One line per case, then ``N/M cases identical``; exit status 0 only if all are identical.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REMASKING = {"low_confidence": "confidence", "random": "random"}
DREAM_ALG = {"maskgit_plus": "confidence", "topk_margin": "margin", "entropy": "entropy"}
SDAR_STRATEGY = {"sequential": "sequential", "low_confidence_static": "confidence",
                 "low_confidence_dynamic": "confidence"}


def _unsupported(case: dict, what: str) -> ValueError:
    return ValueError(f"case {case.get('id')!r}: {what} has no engine equivalent")


def case_options(case: dict) -> dict[str, Any]:
    """DecodeConfig options reproducing one golden case's reference call."""
    settings = case["settings"]
    fn, src, args = settings["function"], settings.get("source", ""), dict(settings["args"])
    opts: dict[str, Any] = {}
    if "mask_id" in args:
        opts["_mask_id"] = int(args["mask_id"])
    if fn == "generate" and "Fast-dLLM" not in src:  # ML-GSAI/LLaDA
        if args["remasking"] not in REMASKING:
            raise _unsupported(case, f"remasking={args['remasking']!r}")
        opts.update(
            gen_length=args["gen_length"], steps=args["steps"], block_length=args["block_length"],
            temperature=args.get("temperature", 0.0), cfg_scale=args.get("cfg_scale", 0.0),
            sampler=REMASKING[args["remasking"]], schedule="even",
            logits_eos_inf=args.get("logits_eos_inf", False),
            confidence_eos_eot_inf=args.get("confidence_eos_eot_inf", False),
        )
    elif fn in ("generate", "generate_with_prefix_cache", "generate_with_dual_cache"):  # Fast-dLLM
        if args.get("remasking", "low_confidence") not in REMASKING:
            raise _unsupported(case, f"remasking={args['remasking']!r}")
        opts.update(
            gen_length=args["gen_length"], steps=args["steps"], block_length=args["block_length"],
            temperature=args.get("temperature", 0.0), sampler=REMASKING[args.get("remasking", "low_confidence")],
            schedule="even", threshold=args.get("threshold"), factor=args.get("factor"),
            kv_cache={"generate": "none", "generate_with_prefix_cache": "prefix",
                      "generate_with_dual_cache": "dual"}[fn],
            cache_extra_forward=fn != "generate",
        )
    elif fn.endswith("diffusion_generate") and fn != "block_diffusion_generate":  # Dream
        alg = args.get("alg", "origin")
        if alg not in DREAM_ALG:
            raise _unsupported(case, f"alg={alg!r}")
        opts.update(
            gen_length=args["max_new_tokens"], steps=args["steps"], schedule="linspace",
            eps=args.get("eps", 1e-3), sampler=DREAM_ALG[alg], temperature=args.get("temperature") or 0.0,
            top_p=args.get("top_p"), top_k=args.get("top_k"), alg_temp=args.get("alg_temp") or 0.0,
        )
    elif fn == "block_diffusion_generate":  # SDAR
        common = dict(
            gen_length=args["gen_length"], block_length=args["block_length"],
            steps_per_block=args["denoising_steps"], schedule="block_even",
            temperature=args.get("temperature", 1.0), top_k=args.get("top_k") or None,
            top_p=None if args.get("top_p", 1.0) >= 1.0 else args["top_p"],
            stop_on_eos=True, stop_ids=settings.get("stopping_criteria_idx"),
        )
        opts.update(common)
        if "remasking_strategy" in args:  # root generate.py: scores from the filtered distribution
            strategy = args["remasking_strategy"]
            if strategy not in SDAR_STRATEGY or args.get("eb_threshold") is not None:
                raise _unsupported(case, f"remasking_strategy={strategy!r}")
            opts.update(sampler=SDAR_STRATEGY[strategy], score_filtered=True)
            if strategy == "low_confidence_dynamic":
                opts.update(threshold=args["confidence_threshold"], threshold_min="schedule")
        else:  # opencompass huggingface_bd3.py
            if args.get("remasking", "low_confidence") not in REMASKING:
                raise _unsupported(case, f"remasking={args['remasking']!r}")
            opts.update(sampler=REMASKING[args.get("remasking", "low_confidence")])
            if args.get("threshold", 1.0) < 1.0:
                opts.update(threshold=args["threshold"], threshold_min="schedule")
    else:
        raise _unsupported(case, f"function {fn!r}")
    return opts


def _first_trace_difference(ours: list[dict], ref: list[dict]) -> str:
    for i, (a, r) in enumerate(zip(ours, ref)):
        mine = [sorted(c) for c in a["committed"]]
        theirs = [sorted(c) for c in r["committed"]]
        if mine != theirs:
            where = r.get("call") or f"block {r.get('block')} step {r.get('step')}"
            return f"first differing step {i} ({where}): ours {mine} vs reference {theirs}"
    if len(ours) != len(ref):
        return f"{len(ours)} denoising steps vs reference {len(ref)}"
    return "same commit trace"


def run_case(model: Any, adapter: Any, case: dict, draws: dict | None = None) -> tuple[bool, str]:
    """Decode one case; return (identical, message)."""
    import dataclasses

    import torch
    from dllm_eval.samplers.config import DecodeConfig
    from dllm_eval.samplers.engine import generate
    from dllm_eval.samplers.random import RandomSampler

    opts = case_options(case)
    mask_id = opts.pop("_mask_id", None)
    if mask_id is not None and mask_id != adapter.mask_id:
        adapter = dataclasses.replace(adapter, mask_id=mask_id)
    config = DecodeConfig.from_options(**opts)
    strategy = None
    if case.get("random_draws") is not None:
        ref = case["random_draws"]
        key = ref["key"] if isinstance(ref, dict) else ref
        if draws is None or key not in draws:
            return False, f"recorded draws {key!r} not found next to the golden file"
        strategy = RandomSampler(draws=draws[key])
    ids = torch.tensor(case["prompt_ids"], dtype=torch.long)
    am = case.get("attention_mask")
    am = None if am is None else torch.tensor(am, dtype=torch.long)
    seed = case["settings"].get("torch_seed")
    if seed is not None:
        torch.manual_seed(int(seed))
    res = generate(model, ids, attention_mask=am, adapter=adapter, config=config, strategy=strategy)
    expected = torch.tensor(case["output_ids"], dtype=torch.long)
    got = res.sequences.cpu()
    same_ids = got.shape == expected.shape and bool((got == expected).all())
    same_nfe = res.nfe == int(case["nfe"])
    nfe_text = f"nfe {res.nfe} (reference {case['nfe']})"
    if same_ids and same_nfe:
        return True, nfe_text
    detail = _first_trace_difference(res.stats["trace"], case.get("trace", []))
    what = [] if same_ids else ["output ids differ"]
    if not same_nfe:
        what.append("nfe differs")
    return False, f"{', '.join(what)}; {nfe_text}; {detail}"


def run_golden(golden: Path, model_dir: Path | None = None, only: str | None = None,
               out: Any = None) -> tuple[int, int]:
    """Run every case of ``golden`` (optionally those whose id contains ``only``); print one line
    per case and the summary; return (identical, total)."""
    import sys

    import torch
    from dllm_eval.harness.loading import load

    out = out or sys.stdout
    cases = json.loads(Path(golden).read_text())
    if not isinstance(cases, list):
        raise ValueError(f"{golden}: expected a list of cases (golden_generate.json format)")
    model_dir = Path(model_dir) if model_dir is not None else Path(golden).parent
    model, _, adapter = load(str(model_dir), dtype="float32", device="cpu")
    model.eval()
    draws = None
    files = {c["random_draws"]["file"] if isinstance(c["random_draws"], dict) else
             Path(golden).stem + "_random.safetensors" for c in cases if c.get("random_draws")}
    for name in sorted(files):
        path = Path(golden).with_name(name)
        if path.is_file():
            from safetensors.torch import load_file

            draws = {**(draws or {}), **load_file(str(path))}
    selected = [c for c in cases if only is None or only in c["id"]]
    ok = 0
    torch_threads = torch.get_num_threads()
    for case in selected:
        try:
            same, message = run_case(model, adapter, case, draws)
        except ValueError as err:
            same, message = False, f"error: {err}"
        ok += same
        print(f"{'IDENTICAL' if same else 'DIFFERENT'}  {case['id']}: {message}", file=out)
    print(f"{ok}/{len(selected)} cases identical", file=out)
    torch.set_num_threads(torch_threads)
    return ok, len(selected)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("golden", type=Path, help="golden_generate.json (list of reference cases)")
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint folder of the model the cases were recorded with "
                             "(default: the golden file's folder)")
    parser.add_argument("--case", default=None, help="only cases whose id contains this text")


def run(args: argparse.Namespace) -> int:
    if not Path(args.golden).is_file():
        print(f"dllm-eval parity: no golden file {args.golden}")
        return 2
    ok, total = run_golden(args.golden, args.model, args.case)
    return 0 if total and ok == total else 1
