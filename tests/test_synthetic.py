"""The demo's synthetic GSM8K-format task: deterministic, short, correct, disjoint splits.

Correctness is checked against an independent solver written here from the question wording
(regular expressions per phrasing), not against the generator's own step lines.
"""

from __future__ import annotations

import json
import re

import pytest
from dllm_eval.results import synthetic

GSM8K_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")  # lm-eval gsm8k strict-match regex
PHRASES = [
    (r"has (\d+) \w+ and gets (\d+) more\. How many now\?", lambda a, b: a + b),
    (r"has (\d+) \w+ and gives away (\d+)\. How many left\?", lambda a, b: a - b),
    (r"buys (\d+) bags of (\d+) \w+\. How many \w+\?", lambda a, b: a * b),
    (r"splits (\d+) \w+ among (\d+) kids\. How many each\?", lambda a, b: a // b),
    (r"has (\d+) \w+, gets (\d+), then loses (\d+)\. How many\?", lambda a, b, c: a + b - c),
    (r"has (\d+) bags of (\d+) \w+ and (\d+) more\. Total\?", lambda a, b, c: a * b + c),
]


def solve(question: str) -> int:
    for pattern, fn in PHRASES:
        m = re.search(pattern, question)
        if m:
            return fn(*map(int, m.groups()))
    raise AssertionError(f"unknown phrasing: {question}")


def test_problems_are_correct_short_and_gsm8k_formatted():
    probs = synthetic.generate(2000, seed=3)
    for p in probs:
        assert set(p) == {"question", "answer"}
        assert len(p["question"]) <= synthetic.MAX_QUESTION_CHARS
        assert len(p["answer"]) <= synthetic.MAX_ANSWER_CHARS
        m = GSM8K_ANSWER.search(p["answer"])
        assert m and p["answer"].endswith(f"#### {m.group(1)}")
        assert int(m.group(1)) == solve(p["question"]) >= 0
        steps = p["answer"].split("\n")[:-1]
        assert 1 <= len(steps) <= 2
        for step in steps:  # every written step is true arithmetic on small numbers
            a, op, b, c = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", step).groups()
            a, b, c = int(a), int(b), int(c)
            assert {"+": a + b, "-": a - b, "*": a * b, "/": a // b if a % b == 0 else -1}[op] == c
            assert max(a, b, c) <= 99
    # every problem kind is drawn
    for pattern, _ in PHRASES:
        assert any(re.search(pattern, p["question"]) for p in probs), pattern
    assert max(len(p["question"]) for p in probs) > 40  # the bound is not vacuous


def test_deterministic_and_distinct():
    a, b = synthetic.generate(300, seed=11), synthetic.generate(300, seed=11)
    assert a == b
    assert a != synthetic.generate(300, seed=12)
    assert len({p["question"] for p in a}) == 300


def test_splits_are_disjoint_and_written_as_jsonl(tmp_path):
    paths = synthetic.write_splits(tmp_path / "d", n_train=500, n_test=50, seed=0)
    assert set(paths) == {"train", "test"}
    recs = {k: [json.loads(line) for line in p.read_text().splitlines()] for k, p in paths.items()}
    assert len(recs["train"]) == 500 and len(recs["test"]) == 50
    assert not {r["question"] for r in recs["train"]} & {r["question"] for r in recs["test"]}
    # the test split depends only on the seed, not on the train size
    assert synthetic.make_splits(n_train=10, n_test=50, seed=0)["test"] == recs["test"]


def test_cli_writes_files(tmp_path, capsys):
    assert synthetic.main(["--output", str(tmp_path), "--n-train", "20", "--n-test", "5"]) == 0
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 5
    assert str(tmp_path / "train.jsonl") in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(ValueError, match="kinds"):
        synthetic.generate(3, kinds=("add", "pow"))
    with pytest.raises(ValueError, match="n: must be >= 0"):
        synthetic.generate(-1)
    with pytest.raises(ValueError, match="cannot draw"):
        synthetic.generate(10_000, kinds=("div",))  # only 8 x 9 x names x items distinct divisions
    assert all("splits" in p["question"] for p in synthetic.generate(20, kinds=("div",)))
