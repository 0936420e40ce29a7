"""``dllm-eval sandbox FILE.py [--stdin F] [--timeout S]``: run one untrusted program, print a JSON verdict.

The verdict has ``status`` (ok / error / timeout / memory / output_limit), ``returncode``,
``stdout``, ``stderr``, ``isolation`` (bwrap or rlimit) and ``wall_s``. The exit code is 0 when
the program ran (whatever its status) and 2 when no sandbox is available; ``--allow-unsandboxed``
permits the weaker rlimit-only isolation when bubblewrap does not work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="Python program to run")
    parser.add_argument(
        "--stdin", default=None, help="file whose content is fed to the program's stdin"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="wall-clock limit in seconds (default 10)"
    )
    parser.add_argument(
        "--memory-mb", type=int, default=1024, help="address-space limit in MiB (default 1024)"
    )
    parser.add_argument(
        "--output-bytes", type=int, default=1 << 20, help="stdout+stderr cap (default 1 MiB)"
    )
    parser.add_argument(
        "--isolation",
        default="auto",
        choices=["auto", "bwrap", "rlimit"],
        help="isolation level (default auto)",
    )
    parser.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="let auto fall back to rlimit-only isolation when bubblewrap does not work",
    )


def run(args: argparse.Namespace) -> int:
    from dllm_eval.tasks.sandbox import SandboxConfig, SandboxUnavailableError, run_python

    src = Path(args.file)
    if not src.is_file():
        raise ValueError(f"FILE={args.file!r} is not valid; accepted: an existing Python file")
    stdin = None
    if args.stdin is not None:
        if not Path(args.stdin).is_file():
            raise ValueError(f"--stdin={args.stdin!r} is not valid; accepted: an existing file")
        stdin = Path(args.stdin).read_bytes()
    config = SandboxConfig(
        timeout_s=args.timeout,
        memory_mb=args.memory_mb,
        output_bytes=args.output_bytes,
        isolation=args.isolation,
        allow_unsandboxed=True if args.allow_unsandboxed else None,
    )
    try:
        verdict = run_python(src.read_text(encoding="utf-8"), stdin=stdin, config=config)
    except SandboxUnavailableError as exc:
        print(json.dumps({"status": "unavailable", "error": str(exc)}), file=sys.stdout)
        return 2
    print(json.dumps(verdict.to_dict(), indent=2))
    return 0
