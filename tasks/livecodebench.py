"""LiveCodeBench code generation: loading the hub's JSONL files safely and grading in the sandbox.

Problems come from ``livecodebench/code_generation_lite`` on the Hugging Face hub (``test.jsonl``
... ``test6.jsonl``) or from a local folder holding those files. ``release_v1`` ... ``release_v6``
are cumulative like upstream (``release_vN`` = files 1..N, ``release_latest`` = all), ``vN`` is one
file and ``vN_vM`` files N..M; ``start_date`` / ``end_date`` (YYYY-MM-DD, inclusive) keep only
contests in a window (the usual contamination cut-off).

Private test cases are published either as JSON or as ``base64(zlib(pickle(json_string)))``.
Upstream calls ``pickle.loads`` on them, which would execute any object a tampered file names;
:func:`decode_test_cases` uses an unpickler that refuses every global, so only plain strings and
bytes can come out. Grading (:func:`grade`) follows LiveCodeBench: stdin/stdout problems run once
per test with the test input on stdin and the output compared line by line (numbers with
``Decimal`` tolerance of formatting); functional (LeetCode-style) problems call
``Solution().<func_name>(*args)`` on each test's JSON arguments and print the JSON result. Either
way the expected outputs stay in the parent process; a program never sees them.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

from dllm_eval.tasks.extract import extract_code
from dllm_eval.tasks.sandbox import SandboxConfig, run_python

__all__ = [
    "HUB_REPO",
    "LCBResult",
    "decode_test_cases",
    "files_for_release",
    "grade",
    "load_problems",
]

HUB_REPO = "livecodebench/code_generation_lite"
N_FILES = 6
RESULT_TAG = "__DLLM_LCB__"


class _StringsOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global: only str/bytes/numbers/containers can be built."""

    def find_class(self, module: str, name: str):  # noqa: D401
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from test data")


def decode_test_cases(field: str | list) -> list[dict]:
    """Test cases ``[{input, output, testtype}, ...]`` from a JSON or base64/zlib/pickle field."""
    if isinstance(field, list):
        return field
    try:
        return json.loads(field)
    except json.JSONDecodeError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(field, validate=False))
        payload = _StringsOnlyUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, zlib.error, ValueError, EOFError) as exc:
        raise ValueError(f"undecodable private test cases: {exc}") from exc
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    if not isinstance(payload, str):
        raise ValueError(
            f"private test cases decoded to {type(payload).__name__}, expected a JSON string"
        )
    return json.loads(payload)


def files_for_release(release_version: str) -> list[str]:
    """JSONL file names of a release: release_vN (1..N), release_latest, vN, vN_vM."""
    names = [f"test{'' if i == 1 else i}.jsonl" for i in range(1, N_FILES + 1)]
    if release_version == "release_latest":
        return names
    m = re.fullmatch(r"release_v(\d)", release_version)
    if m and 1 <= int(m.group(1)) <= N_FILES:
        return names[: int(m.group(1))]
    m = re.fullmatch(r"v(\d)(?:_v(\d))?", release_version)
    if m:
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if 1 <= lo <= hi <= N_FILES:
            return names[lo - 1 : hi]
    accepted = ", ".join(
        [f"release_v{i}" for i in range(1, N_FILES + 1)] + ["release_latest", "vN", "vN_vM"]
    )
    raise ValueError(f"release_version={release_version!r} is not valid; accepted: {accepted}")


def _check_date(name: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value)):
        raise ValueError(f"{name}={value!r} is not valid; accepted: a date YYYY-MM-DD")
    return str(value)


def load_problems(
    source: str | None = None,
    release_version: str = "release_v6",
    start_date: str | None = None,
    end_date: str | None = None,
) -> list[dict]:
    """LiveCodeBench problems, each with decoded ``tests`` (public + private) and ``func_name``.

    ``source``: a folder with the hub's ``test*.jsonl`` files, or None / ``"hub"`` to download
    them from ``livecodebench/code_generation_lite`` (needs ``huggingface_hub`` and network).
    """
    files = files_for_release(release_version)
    start, end = _check_date("start_date", start_date), _check_date("end_date", end_date)
    paths: list[Path] = []
    if source in (None, "", "hub"):
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ValueError(
                "livecodebench source='hub' needs huggingface_hub (pip install dllm-eval[hub])"
            ) from exc
        paths = [Path(hf_hub_download(HUB_REPO, f, repo_type="dataset")) for f in files]
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ValueError(
                f"livecodebench source={source!r} is not valid; accepted: 'hub' or a folder of test*.jsonl"
            )
        paths = [folder / f for f in files if (folder / f).exists()]
        if not paths:
            raise ValueError(f"livecodebench source={source!r} holds none of {files}")
    problems = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                day = str(rec.get("contest_date", ""))[:10]
                if (start and day < start) or (end and day > end):
                    continue
                meta = rec.get("metadata") or "{}"
                meta = json.loads(meta) if isinstance(meta, str) else meta
                public = decode_test_cases(rec.get("public_test_cases") or "[]")
                private = decode_test_cases(rec.get("private_test_cases") or "[]")
                rec["tests"] = public + private
                rec["n_public"] = len(public)
                rec["func_name"] = meta.get("func_name")
                rec.pop("private_test_cases", None)
                problems.append(rec)
    return problems


def _lines_equal(got: str, expected: str) -> bool:
    g = [ln.strip() for ln in got.strip().split("\n")]
    e = [ln.strip() for ln in expected.strip().split("\n")]
    if len(g) != len(e):
        return False
    for a, b in zip(g, e):
        if a == b:
            continue
        ta, tb = a.split(), b.split()
        if len(ta) != len(tb):
            return False
        try:
            if any(Decimal(x) != Decimal(y) for x, y in zip(ta, tb)):
                return False
        except InvalidOperation:
            return False
    return True


@dataclass(frozen=True)
class LCBResult:
    """Verdict on one program: passed only when every test passes; ``first_failure`` explains."""

    question_id: str
    passed: bool
    status: str
    tests_run: int
    first_failure: str = ""


def _functional_program(code: str, func_name: str, tests: list[dict]) -> str:
    args = [[json.loads(a) for a in t["input"].split("\n") if a.strip()] for t in tests]
    return (
        code
        + f"""

def __dllm_lcb():
    import json as _json
    import sys as _sys
    _cases = _json.loads({json.dumps(json.dumps(args))})
    _obj = Solution()
    _fn = getattr(_obj, {func_name!r})
    for _i, _a in enumerate(_cases):
        try:
            _text = _json.dumps(_fn(*_a))
        except BaseException as _exc:  # noqa: BLE001
            _text = "__EXC__ " + type(_exc).__name__
        _sys.stdout.write("\\n{RESULT_TAG} %d %s\\n" % (_i, _text))
        _sys.stdout.flush()


__dllm_lcb()
"""
    )


def grade(
    problem: dict,
    generation: str,
    *,
    timeout_s: float = 6.0,
    config: SandboxConfig | None = None,
) -> LCBResult:
    """Grade a generation (markdown or bare code) on all tests of ``problem``."""
    qid = str(problem.get("question_id", "?"))
    code = extract_code(generation, problem.get("func_name"))
    tests = problem["tests"]
    cfg = config or SandboxConfig()
    if not tests:
        raise ValueError(f"LiveCodeBench problem {qid} has no test cases")
    if tests[0].get("testtype") == "functional":
        func = problem.get("func_name")
        if not func:
            raise ValueError(f"functional problem {qid} has no metadata.func_name")
        cfg = replace(cfg, timeout_s=timeout_s * len(tests))
        verdict = run_python(_functional_program(code, func, tests), config=cfg)
        got: dict[int, str] = {}
        for line in verdict.stdout.split("\n"):
            if line.startswith(RESULT_TAG + " "):
                idx, _, text = line[len(RESULT_TAG) + 1 :].partition(" ")
                if idx.isdigit():
                    got[int(idx)] = text
        for i, t in enumerate(tests):
            if i not in got:
                return LCBResult(
                    qid,
                    False,
                    verdict.status if verdict.status != "ok" else "error",
                    i,
                    verdict.stderr[-300:],
                )
            if got[i].startswith("__EXC__"):
                return LCBResult(qid, False, "failed", i + 1, f"test {i}: raised {got[i][8:]}")
            try:
                ok = json.loads(got[i]) == json.loads(t["output"])
            except json.JSONDecodeError:
                ok = False
            if not ok:
                return LCBResult(qid, False, "failed", i + 1, f"test {i}: got {got[i][:80]!r}")
        return LCBResult(qid, True, "passed", len(tests))
    cfg = replace(cfg, timeout_s=timeout_s)
    for i, t in enumerate(tests):
        verdict = run_python(code, stdin=t["input"], config=cfg)
        if verdict.status != "ok":
            return LCBResult(
                qid, False, verdict.status, i + 1, f"test {i}: {verdict.stderr[-300:]}"
            )
        if not _lines_equal(verdict.stdout, t["output"]):
            return LCBResult(qid, False, "failed", i + 1, f"test {i}: got {verdict.stdout[:80]!r}")
    return LCBResult(qid, True, "passed", len(tests))
