"""``dllm-eval train sft|rl``: the trainers from the command line, with a config file and overrides.

Every field of :class:`~dllm_eval.trainers.config.SFTConfig` / ``RLConfig`` is a flag
(``agdo_gamma`` → ``--agdo-gamma``; booleans also take ``--no-...``), documented with its
default in ``--help``. ``--config FILE`` (YAML or JSON with the same keys, ``-`` or ``_``) gives
the base values; flags given on the command line override it.

    dllm-eval train sft --model DIR_OR_HUB_ID --data FILE.jsonl --masking agdo --max-steps 100 --output OUT
    dllm-eval train rl --config rl.yaml --estimator tracerl --max-steps 50
    accelerate launch -m dllm_eval.cli train sft ...      # multi-GPU / multi-node (DDP, FSDP, DeepSpeed)

The final model is written to ``--output`` in the family's official format (LoRA merged), so
``lm_eval --model dllm --model_args pretrained=OUT`` scores it directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from dllm_eval.trainers.config import RLConfig, SFTConfig, from_dict

CONFIGS = {"sft": SFTConfig, "rl": RLConfig}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    parser.add_argument("--config", default=None, help="YAML or JSON file with option values (flags override it)")
    for f in dataclasses.fields(cls):
        default = f.default
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")
        if isinstance(default, bool):
            parser.add_argument(_flag(f.name), dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                help=help_text)
        else:
            parser.add_argument(_flag(f.name), dest=f.name, default=None, type=type(default), help=help_text,
                                metavar=f.name.upper())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``sft`` and ``rl`` sub-commands with one flag per config field."""
    sub = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    _add_config_flags(sub.add_parser("sft", help="supervised fine-tuning (random, blockwise or agdo masking)",
                                     description=SFTConfig.__doc__), SFTConfig)
    _add_config_flags(sub.add_parser("rl", help="RL with group rollouts (d1, tracerl or agdo estimator)",
                                     description=RLConfig.__doc__), RLConfig)


def read_config_file(path: str) -> dict[str, Any]:
    """Option dict from a YAML/JSON file (keys with ``-`` are accepted as ``_``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config={path!r}: no such file; accepted: a YAML or JSON file")
    text = p.read_text()
    if p.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config={path!r} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(mode: str, args: argparse.Namespace):
    """Config of ``mode`` from the config file plus the flags given on the command line."""
    cls = CONFIGS[mode]
    values = read_config_file(args.config) if getattr(args, "config", None) else {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    cfg = from_dict(cls, values)
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    """Train; prints the output folder. User errors (ValueError) exit with status 2 and the message."""
    try:
        cfg = build_config(args.mode, args)
        if args.mode == "sft":
            from dllm_eval.trainers.sft import train_sft

            result = train_sft(cfg)
        else:
            from dllm_eval.trainers.rl import train_rl

            result = train_rl(cfg)
    except ValueError as exc:
        print(f"dllm-eval train {args.mode}: {exc}", file=sys.stderr)
        return 2
    if result.get("output"):
        print(f"saved {result['output']}")
    return 0
