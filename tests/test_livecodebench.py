"""LiveCodeBench: hub-format loading, safe private-test decoding, release/date selection, grading."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from dllm_eval.tasks import livecodebench as lcb
from dllm_eval.tasks.sandbox import bwrap_available

needs_sandbox = pytest.mark.skipif(
    not bwrap_available(), reason="bubblewrap not available (CI installs it)"
)


def encode_private(tests: list[dict]) -> str:
    """The hub's private-test encoding: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def _problem(
    qid: str,
    date: str,
    tests: list[dict],
    starter: str = "",
    func: str | None = None,
    n_public: int = 1,
):
    return {
        "question_title": f"problem {qid}",
        "question_content": f"Solve {qid}.",
        "platform": "leetcode" if func else "atcoder",
        "question_id": qid,
        "contest_id": "c1",
        "contest_date": f"{date}T00:00:00",
        "starter_code": starter,
        "difficulty": "easy",
        "public_test_cases": json.dumps(tests[:n_public]),
        "private_test_cases": encode_private(tests[n_public:]),
        "metadata": json.dumps({"func_name": func} if func else {}),
    }


SUM_TESTS = [
    {"input": f"{a} {b}\n", "output": f"{a + b}\n", "testtype": "stdin"}
    for a, b in [(1, 2), (10, 20), (-5, 2)]
]
HALF_TESTS = [
    {"input": f"{a}\n", "output": f"{a / 2:.6f}\n", "testtype": "stdin"} for a in (1, 3, 10)
]
TWO_SUM = [
    {"input": json.dumps(nums) + "\n" + str(t), "output": json.dumps(ans), "testtype": "functional"}
    for nums, t, ans in [([2, 7, 11, 15], 9, [0, 1]), ([3, 2, 4], 6, [1, 2]), ([3, 3], 6, [0, 1])]
]
STARTER = (
    "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        "
)


@pytest.fixture()
def lcb_dir(tmp_path: Path) -> Path:
    rows1 = [
        _problem("sum", "2023-05-01", SUM_TESTS),
        _problem("two_sum", "2023-09-10", TWO_SUM, STARTER, "twoSum"),
    ]
    rows2 = [_problem("half", "2024-03-02", HALF_TESTS)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows1))
    (tmp_path / "test2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows2))
    return tmp_path


def test_private_tests_decoded_without_unpickling_objects(tmp_path: Path) -> None:
    assert lcb.decode_test_cases(encode_private(SUM_TESTS)) == SUM_TESTS
    assert lcb.decode_test_cases(json.dumps(SUM_TESTS)) == SUM_TESTS
    canary = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(ValueError, match="refusing to load global"):
        lcb.decode_test_cases(evil)
    assert not canary.exists()
    not_a_string = base64.b64encode(zlib.compress(pickle.dumps([1, 2]))).decode()
    with pytest.raises(ValueError, match="expected a JSON string"):
        lcb.decode_test_cases(not_a_string)


def test_release_versions_and_dates(lcb_dir: Path) -> None:
    assert lcb.files_for_release("release_v1") == ["test.jsonl"]
    assert lcb.files_for_release("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert lcb.files_for_release("v2") == ["test2.jsonl"]
    assert lcb.files_for_release("v4_v6") == ["test4.jsonl", "test5.jsonl", "test6.jsonl"]
    assert len(lcb.files_for_release("release_latest")) == 6
    with pytest.raises(ValueError, match="release_version='release_v9'"):
        lcb.files_for_release("release_v9")
    ids = lambda probs: sorted(p["question_id"] for p in probs)  # noqa: E731
    assert ids(lcb.load_problems(str(lcb_dir), "release_v1")) == ["sum", "two_sum"]
    assert ids(lcb.load_problems(str(lcb_dir), "release_v2")) == ["half", "sum", "two_sum"]
    assert ids(lcb.load_problems(str(lcb_dir), "v2")) == ["half"]
    assert ids(lcb.load_problems(str(lcb_dir), "release_v6", start_date="2023-06-01")) == [
        "half",
        "two_sum",
    ]
    assert ids(lcb.load_problems(str(lcb_dir), "release_v6", end_date="2023-09-10")) == [
        "sum",
        "two_sum",
    ]
    with pytest.raises(ValueError, match="start_date='May 2023'"):
        lcb.load_problems(str(lcb_dir), start_date="May 2023")
    p = {q["question_id"]: q for q in lcb.load_problems(str(lcb_dir), "release_v2")}
    assert p["sum"]["tests"] == SUM_TESTS and p["sum"]["n_public"] == 1
    assert p["two_sum"]["func_name"] == "twoSum"


@needs_sandbox
def test_grading_stdin_and_functional(lcb_dir: Path) -> None:
    p = {q["question_id"]: q for q in lcb.load_problems(str(lcb_dir), "release_v2")}
    good_sum = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert lcb.grade(p["sum"], good_sum).passed
    wrong_sum = "a, b = map(int, input().split())\nprint(a + b if a > 0 else 0)"
    r = lcb.grade(p["sum"], wrong_sum)
    assert not r.passed and r.tests_run == 3  # only the private test with a < 0 fails
    # formatting of numbers does not matter, values do
    assert lcb.grade(p["half"], "x = int(input())\nprint(x / 2)").passed
    assert not lcb.grade(p["half"], "x = int(input())\nprint(x // 2)").passed
    good_two = (
        "```python\nfrom typing import List\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n        for i, v in enumerate(nums):\n            if target - v in seen:\n"
        "                return [seen[target - v], i]\n            seen[v] = i\n```"
    )
    assert lcb.grade(p["two_sum"], good_two).passed
    wrong_two = "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n"
    assert not lcb.grade(p["two_sum"], wrong_two).passed
    r = lcb.grade(p["sum"], "while True:\n    pass", timeout_s=1)
    assert not r.passed and r.status == "timeout"


@needs_sandbox
def test_score_cli_livecodebench(lcb_dir: Path, tmp_path: Path) -> None:
    samples = [
        {
            "question_id": "sum",
            "code_list": ["a, b = map(int, input().split())\nprint(a + b)", "print(0)"],
        },
        {
            "question_id": "half",
            "code_list": ["print(int(input()) / 2)", "print(int(input()) / 2)"],
        },
    ]
    path = tmp_path / "gens.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "dllm_eval.cli",
            "score",
            "livecodebench",
            str(path),
            "--k",
            "1,2",
            "--lcb-source",
            str(lcb_dir),
            "--release-version",
            "release_v2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert metrics["pass@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["pass@2"] == pytest.approx(1.0)
