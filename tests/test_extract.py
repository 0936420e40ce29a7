"""Answer extraction on tricky outputs, and math-verify on the MATH-500 references."""

from __future__ import annotations

import importlib.metadata

import pytest
from dllm_eval.tasks import extract
from dllm_eval.tasks.bundled import load_records


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
        ("The total is 1,234 apples.\n#### 1,234", "1234"),
        ("So the answer is $1,234.50.", "1234.5"),
        ("The answer is 42 dollars. Check: 40 + 2 = 42", "42"),
        ("Thus, the final answer is \\boxed{72}.", "72"),
        ("We get \\boxed{\\$3,000}", "3000"),
        ("It takes 5 hours and 30 minutes, so the answer is: 5.5 hours", "5.5"),
        ("Temperature drops to -7 degrees.", "-7"),
        ("The answer is 18.00", "18"),
        ("The answer is 0.50 kg", "0.5"),
        ("First 3 apples, then 7 more, total 10 apples", "10"),
        ("He has 12 marbles. The answer is 12. Explanation: 3 boxes of 4", "12"),
        ("no digits here", None),
    ],
)
def test_gsm8k_extraction(text: str, expected: str | None) -> None:
    assert extract.extract_gsm8k_answer(text) == expected


def test_gsm8k_targets_from_data() -> None:
    rows = load_records("gsm8k_test")
    targets = [extract.gsm8k_target(r["answer"]) for r in rows]
    assert targets[0] == "18"
    assert all(t is not None and "," not in t for t in targets)
    # a reference solution always extracts to its own target
    assert all(extract.extract_gsm8k_answer(r["answer"]) == t for r, t in zip(rows, targets))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1} then \\boxed{ {a}^{2} + \\sqrt{b} }.", "{a}^{2} + \\sqrt{b}"),
        ("\\fbox{7}", "7"),
        ("\\boxed 5.", "5"),
        ("no box", None),
        ("unbalanced \\boxed{1", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert extract.last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is (B).", "B"),
        ("Let me think. A is wrong because... The answer is (C)", "C"),
        ("Answer: D", "D"),
        ("answer: (a)", "A"),
        ("B. Paris is the capital", "B"),
        ("**C**", "C"),
        ("Therefore the correct option is \\boxed{A}", "A"),
        ("I think option (D) is right", "D"),
        ("(B) 42", "B"),
        ("A) because ...", "A"),
        ("The answer is (E)", None),
        ("I am not sure.", None),
    ],
)
def test_mmlu_choice(text: str, expected: str | None) -> None:
    assert extract.extract_choice(text) == expected


def test_extract_code_markdown_and_completion() -> None:
    md = "Here you go:\n```python\nimport math\n\ndef f(x):\n    return x\n```\nExplanation..."
    assert extract.extract_code(md, "f") == "import math\n\ndef f(x):\n    return x\n"
    two = "```\nprint('test')\n```\n```python\ndef g():\n    pass\n```"
    assert extract.extract_code(two, "g") == "def g():\n    pass\n"
    assert extract.extract_code(two) == "def g():\n    pass\n"
    unterminated = "```python\ndef h():\n    return 1\n"
    assert extract.extract_code(unterminated, "h") == "def h():\n    return 1\n"
    completion = "    return sorted(x)\n"
    assert extract.extract_code(completion, "f") == completion


def test_antlr_pin_matches_math_verify_grammar() -> None:
    assert importlib.metadata.version("antlr4-python3-runtime") == "4.13.2"
    from latex2sympy2_extended import latex2sympy

    assert str(latex2sympy("\\frac{1}{2} + x")) in ("x + 1/2", "1/2 + x")


@pytest.mark.parametrize(
    ("pred", "gold", "ok"),
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$", "\\frac12", True),
        ("\\boxed{0.5}", "\\frac{1}{2}", True),
        ("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}", False),
        ("The final answer is $x = 2$", "2", True),
        ("\\boxed{10\\%}", "10", True),
        ("nothing", "5", False),
    ],
)
def test_math_equal(pred: str, gold: str, ok: bool) -> None:
    assert extract.math_equal(pred, gold) is ok


def test_math500_references_verify_against_their_solutions() -> None:
    rows = load_records("math500_test")
    assert len(rows) == 500
    wrong = [r["unique_id"] for r in rows if not extract.math_equal(r["solution"], r["answer"])]
    assert wrong == []
    # and the checker is not vacuous: a neighbour's solution rarely matches
    shifted = sum(
        extract.math_equal(rows[i + 1]["solution"], rows[i]["answer"]) for i in range(0, 200)
    )
    assert shifted < 15
