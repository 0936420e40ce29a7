"""``dllm-eval run ...``: the stock lm-eval command line, with ``dllm`` and our tasks registered.

``dllm-eval run ARGS`` is exactly ``lm_eval ARGS`` (same parser, same sub-commands ``run``,
``ls``, ``validate``, same output files), with one convenience: when no ``--model`` is given,
``--model dllm`` is used instead of lm-eval's default ``hf``. Registration itself happens on
``import dllm_eval`` (see ``dllm_eval.harness.registration``), so this module only hands the
arguments to lm-eval.

    dllm-eval run --model_args pretrained=GSAI-ML/LLaDA-8B-Instruct,sampler=margin \\
        --tasks gsm8k --limit 8 --output_path out/
"""

from __future__ import annotations

import argparse
import sys

_SUBCOMMANDS = ("run", "ls", "validate")


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI on ``argv`` (default ``sys.argv[1:]``); return its exit status."""
    from dllm_eval.harness.registration import register_all

    register_all()
    args = list(sys.argv[1:] if argv is None else argv)
    is_run = not args or args[0] not in _SUBCOMMANDS or args[0] == "run"
    has_model = any(a in ("--model", "-M") or a.startswith("--model=") for a in args)
    wants_help = any(a in ("-h", "--help") for a in args)
    if is_run and args and not has_model and not wants_help:
        if args[0] == "run":
            args = ["run", "--model", "dllm", *args[1:]]
        else:
            args = ["--model", "dllm", *args]

    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm-eval", *args]
    try:
        cli_evaluate()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Unused: ``dllm-eval run`` passes its arguments straight to :func:`main`."""
    parser.add_argument("args", nargs=argparse.REMAINDER, help="lm-eval arguments")


def run(args: argparse.Namespace) -> int:
    return main(list(args.args))


if __name__ == "__main__":
    sys.exit(main())
