"""The ``dllm-eval`` command: one entry point, one sub-command per module.

Each sub-command lives in its own module that defines ``add_arguments(parser)`` and
``run(args) -> int``; the module is imported only when its sub-command is used, so
``dllm-eval --help`` is fast and never imports torch.

    dllm-eval run ...            the stock lm-eval CLI with the dllm model and tasks registered
    dllm-eval parity GOLDEN.json --model DIR
    dllm-eval sandbox FILE.py [--stdin F] [--timeout S]
    dllm-eval score humaneval SAMPLES.jsonl
    dllm-eval train sft|rl ...
    dllm-eval demo [--output DIR]
    dllm-eval leaderboard PATH...
    dllm-eval regress RESULTS --baseline FILE
    dllm-eval bench [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("dllm_eval.harness.run_cli", "run lm-eval (same arguments as `lm_eval`) with dllm registered"),
    "parity": ("dllm_eval.samplers.parity", "replay reference golden generation cases through the engine"),
    "sandbox": ("dllm_eval.tasks.sandbox_cli", "run one untrusted Python program in the sandbox"),
    "score": ("dllm_eval.tasks.score_cli", "re-score saved code generations (pass@k)"),
    "train": ("dllm_eval.trainers.cli", "AGDO / random / blockwise SFT and dLLM RL"),
    "demo": ("dllm_eval.results.demo", "offline end-to-end demo: train, evaluate every sampler, leaderboard"),
    "leaderboard": ("dllm_eval.results.leaderboard", "tables and plots from lm-eval output folders"),
    "regress": ("dllm_eval.results.regress", "compare results with a recorded baseline; non-zero on regression"),
    "bench": ("dllm_eval.benchmarks.bench", "decoding speed benchmark (prints a table)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        # pass everything through untouched to lm-eval's own parser
        module = importlib.import_module(COMMANDS["run"][0])
        return int(module.main(argv[1:]) or 0)
    parser = argparse.ArgumentParser(prog="dllm-eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name = argv[0]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        parser.error(f"unknown command {name!r}; accepted: {', '.join(COMMANDS)}.{hint}")
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"dllm-eval {name}: not available in this build ({module_name} missing)", file=sys.stderr)
            return 2
        raise
    cmd_parser = argparse.ArgumentParser(prog=f"dllm-eval {name}", description=help_text)
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
