"""The demo's bundled synthetic reasoning task: short arithmetic word problems in GSM8K format.

A deterministic generator of grade-school arithmetic word problems small enough for a tiny
byte-level model trained for a few minutes on a CPU: questions of at most ~60 characters, small
operands (1-9, products and sums up to 81 / 27), and step-by-step answers of at most ~40
characters that end with GSM8K's final-answer line ``#### N``. Records are ``{"question",
"answer"}`` exactly as in GSM8K's jsonl files, so the same task YAML, answer extraction and scorer
serve both. One-step templates (add, subtract, multiply, divide) and two-step templates (add then
subtract, multiply then add) write one ``a op b = c`` line per step. The same seed always gives
the same problems, and the train and test splits never share a question. Run
``python -m dllm_eval.results.synthetic --output DIR`` to write ``train.jsonl`` and ``test.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

NAMES = ("Ann", "Ben", "Cal", "Dot", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jo")
ITEMS = ("apple", "pen", "cup", "egg", "hat", "book", "cake", "toy", "shell", "card")

MAX_QUESTION_CHARS = 60
MAX_ANSWER_CHARS = 40

Problem = tuple[str, list[str], int]  # question, step lines, final value


def _add(r: random.Random, name: str, item: str) -> Problem:
    a, b = r.randint(1, 9), r.randint(1, 9)
    return f"{name} has {a} {item}s and gets {b} more. How many now?", [f"{a}+{b}={a + b}"], a + b


def _sub(r: random.Random, name: str, item: str) -> Problem:
    a = r.randint(2, 18)
    b = r.randint(1, min(9, a - 1))
    return f"{name} has {a} {item}s and gives away {b}. How many left?", [f"{a}-{b}={a - b}"], a - b


def _mul(r: random.Random, name: str, item: str) -> Problem:
    a, b = r.randint(2, 9), r.randint(2, 9)
    return f"{name} buys {a} bags of {b} {item}s. How many {item}s?", [f"{a}*{b}={a * b}"], a * b


def _div(r: random.Random, name: str, item: str) -> Problem:
    a, b = r.randint(2, 9), r.randint(1, 9)
    total = a * b
    return (
        f"{name} splits {total} {item}s among {a} kids. How many each?",
        [f"{total}/{a}={b}"],
        b,
    )


def _add_sub(r: random.Random, name: str, item: str) -> Problem:
    a, b = r.randint(1, 9), r.randint(1, 9)
    c = r.randint(1, a + b - 1)
    s = a + b
    return (
        f"{name} has {a} {item}s, gets {b}, then loses {c}. How many?",
        [f"{a}+{b}={s}", f"{s}-{c}={s - c}"],
        s - c,
    )


def _mul_add(r: random.Random, name: str, item: str) -> Problem:
    a, b, c = r.randint(2, 5), r.randint(2, 5), r.randint(1, 9)
    p = a * b
    return (
        f"{name} has {a} bags of {b} {item}s and {c} more. Total?",
        [f"{a}*{b}={p}", f"{p}+{c}={p + c}"],
        p + c,
    )


TEMPLATES: dict[str, Callable[[random.Random, str, str], Problem]] = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "add_sub": _add_sub,
    "mul_add": _mul_add,
}


def make_problem(rng: random.Random, kinds: tuple[str, ...] | None = None) -> dict[str, str]:
    """Draw one problem from ``rng``: ``{"question": ..., "answer": "step\\n...\\n#### N"}``."""
    names = tuple(TEMPLATES) if kinds is None else kinds
    for k in names:
        if k not in TEMPLATES:
            raise ValueError(f"kinds: unknown problem kind {k!r}; accepted: {', '.join(TEMPLATES)}")
    kind = rng.choice(names)
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    question, steps, value = TEMPLATES[kind](rng, name, item)
    answer = "\n".join([*steps, f"#### {value}"])
    return {"question": question, "answer": answer}


def generate(
    n: int, seed: int = 0, kinds: tuple[str, ...] | None = None, exclude: set[str] | None = None
) -> list[dict[str, str]]:
    """Return ``n`` distinct problems for ``seed`` (none whose question is in ``exclude``)."""
    if n < 0:
        raise ValueError(f"n: must be >= 0, got {n}")
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[dict[str, str]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(
                f"n: cannot draw {n} distinct problems (got {len(out)}); ask for fewer problems"
            )
        p = make_problem(rng, kinds)
        if p["question"] in seen:
            continue
        seen.add(p["question"])
        out.append(p)
    return out


def make_splits(
    n_train: int = 4000, n_test: int = 200, seed: int = 0
) -> dict[str, list[dict[str, str]]]:
    """Disjoint ``train`` and ``test`` splits; the test split depends only on ``seed``."""
    test = generate(n_test, seed=seed)
    train = generate(n_train, seed=seed + 1, exclude={p["question"] for p in test})
    return {"train": train, "test": test}


def write_jsonl(records: list[dict[str, str]], path: str | Path) -> Path:
    """Write ``records`` one JSON object per line (GSM8K's jsonl layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def write_splits(
    output: str | Path, n_train: int = 4000, n_test: int = 200, seed: int = 0
) -> dict[str, Path]:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``output``; return their paths."""
    splits = make_splits(n_train=n_train, n_test=n_test, seed=seed)
    return {
        name: write_jsonl(recs, Path(output) / f"{name}.jsonl") for name, recs in splits.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, help="folder for train.jsonl and test.jsonl")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    paths = write_splits(a.output, n_train=a.n_train, n_test=a.n_test, seed=a.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
