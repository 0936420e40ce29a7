"""lm-eval hooks of the dllm_* tasks: datasets, prompts and ``process_results`` scorers.

The task YAMLs in ``tasks/<name>/`` refer to these functions with ``!function
dllm_eval.tasks.utils.<name>``. Datasets come from the bundled, sha256-checked files by default;
``--metadata '{"data_source": "hub"}'`` reads the Hugging Face hub copy instead and
``{"data_source": "/path/file.jsonl[.gz]"}`` a local file with the same fields. LiveCodeBench
takes ``lcb_source`` (folder of ``test*.jsonl`` or ``hub``, env ``DLLM_LCB_SOURCE``),
``release_version``, ``start_date`` and ``end_date`` the same way. lm-eval passes every metadata
and model argument to the dataset functions, so unrelated keys are ignored here.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from dllm_eval.tasks import extract
from dllm_eval.tasks.bundled import load_records

SOURCES = ("bundled", "hub", "a path to a .jsonl or .jsonl.gz file")

COT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
HUMANEVAL_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")


# --------------------------------------------------------------------------- datasets


def _to_dataset(splits: dict[str, list[dict]]):
    import datasets

    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})


def _read_local(path: str) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"data_source={path!r} is not valid; accepted: {', '.join(SOURCES)}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _source(kwargs: dict[str, Any]) -> str:
    src = str(kwargs.get("data_source") or "bundled")
    if src not in ("bundled", "hub") and not Path(src).is_file():
        raise ValueError(f"data_source={src!r} is not valid; accepted: {', '.join(SOURCES)}")
    return src


def _hub(path: str, name: str | None, split: str) -> list[dict]:
    import datasets

    return [dict(r) for r in datasets.load_dataset(path, name, split=split)]


def gsm8k_dataset(**kwargs: Any):
    """GSM8K test (+ train as the few-shot pool)."""
    src = _source(kwargs)
    if src == "bundled":
        return _to_dataset(
            {"test": load_records("gsm8k_test"), "train": load_records("gsm8k_train")}
        )
    if src == "hub":
        return _to_dataset(
            {
                "test": _hub("openai/gsm8k", "main", "test"),
                "train": _hub("openai/gsm8k", "main", "train"),
            }
        )
    return _to_dataset({"test": _read_local(src), "train": load_records("gsm8k_train")})


def math500_dataset(**kwargs: Any):
    """MATH-500 (problem, solution, answer, subject, level, unique_id)."""
    src = _source(kwargs)
    if src == "bundled":
        rows = load_records("math500_test")
    elif src == "hub":
        rows = _hub("HuggingFaceH4/MATH-500", None, "test")
    else:
        rows = _read_local(src)
    return _to_dataset({"test": rows})


MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


def minerva_math_dataset(**kwargs: Any):
    """Full MATH test split (5000; problem, level, type, solution) with ``answer`` = last boxed."""
    src = _source(kwargs)
    if src == "bundled":
        rows = load_records("math_test")
    elif src == "hub":
        rows = [r for s in MATH_SUBJECTS for r in _hub("EleutherAI/hendrycks_math", s, "test")]
    else:
        rows = _read_local(src)
    out = []
    for r in rows:
        answer = extract.last_boxed(r["solution"])
        out.append(
            {
                "problem": r["problem"],
                "solution": r["solution"],
                "answer": answer if answer is not None else "",
                "level": r.get("level", ""),
                "type": r.get("type", ""),
            }
        )
    return _to_dataset({"test": out})


def mmlu_dataset(**kwargs: Any):
    """MMLU test (+ dev): question, subject, choices[4], answer 0-3."""
    src = _source(kwargs)
    if src == "bundled":
        test, dev = load_records("mmlu_test"), load_records("mmlu_dev")
    elif src == "hub":
        test, dev = _hub("cais/mmlu", "all", "test"), _hub("cais/mmlu", "all", "dev")
    else:
        test, dev = _read_local(src), load_records("mmlu_dev")
    keep = ("question", "subject", "choices", "answer")
    return _to_dataset(
        {
            "test": [{k: r[k] for k in keep} for r in test],
            "dev": [{k: r[k] for k in keep} for r in dev],
        }
    )


def _humaneval_rows(name: str, kwargs: dict[str, Any]) -> list[dict]:
    src = _source(kwargs)
    if src == "bundled":
        rows = load_records(name)
    elif src == "hub":
        path = "openai/openai_humaneval" if name == "humaneval" else "evalplus/humanevalplus"
        rows = _hub(path, None, "test")
    else:
        rows = _read_local(src)
    # the docs carry the prompt only: test inputs and references are looked up by task_id
    return [{k: r[k] for k in ("task_id", "prompt", "entry_point")} for r in rows]


def humaneval_dataset(**kwargs: Any):
    return _to_dataset({"test": _humaneval_rows("humaneval", kwargs)})


def humaneval_plus_dataset(**kwargs: Any):
    return _to_dataset({"test": _humaneval_rows("humaneval_plus", kwargs)})


def livecodebench_dataset(**kwargs: Any):
    """LiveCodeBench problems (see dllm_eval.tasks.livecodebench) with JSON-encoded tests."""
    from dllm_eval.tasks.livecodebench import load_problems

    source = kwargs.get("lcb_source") or os.environ.get("DLLM_LCB_SOURCE") or "hub"
    probs = load_problems(
        source,
        release_version=str(kwargs.get("release_version") or "release_v6"),
        start_date=kwargs.get("start_date"),
        end_date=kwargs.get("end_date"),
    )
    rows = [
        {
            "question_id": str(p.get("question_id", "")),
            "question_title": p.get("question_title", ""),
            "question_content": p.get("question_content", ""),
            "starter_code": p.get("starter_code") or "",
            "platform": p.get("platform", ""),
            "difficulty": p.get("difficulty", ""),
            "contest_date": str(p.get("contest_date", "")),
            "func_name": p.get("func_name") or "",
            "tests_json": json.dumps(p["tests"]),
        }
        for p in probs
    ]
    return _to_dataset({"test": rows})


# --------------------------------------------------------------------------- prompts


def gsm8k_doc_to_text(doc: dict) -> str:
    return doc["question"] + COT_SUFFIX


def gsm8k_doc_to_target(doc: dict) -> str:
    return extract.gsm8k_target(doc["answer"])


def math_doc_to_text(doc: dict) -> str:
    return doc["problem"] + COT_SUFFIX


MINERVA_INSTRUCTION = (
    "Solve the problem. End your solution with the line "
    '"Final Answer: The final answer is $ANSWER$. I hope it is correct."'
)


def minerva_doc_to_text(doc: dict) -> str:
    return f"{MINERVA_INSTRUCTION}\n\nProblem:\n{doc['problem']}\n\nSolution:"


def _mmlu_header(doc: dict) -> str:
    subject = doc["subject"].replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


def _mmlu_body(doc: dict) -> str:
    opts = "\n".join(f"{letter}. {c}" for letter, c in zip("ABCD", doc["choices"]))
    return f"{doc['question'].strip()}\n{opts}\n"


def mmlu_doc_to_text(doc: dict) -> str:
    return _mmlu_header(doc) + _mmlu_body(doc) + "Answer:"


def mmlu_generative_doc_to_text(doc: dict) -> str:
    return (
        _mmlu_header(doc)
        + _mmlu_body(doc)
        + '\nThink briefly, then finish with "The answer is (X)" where X is the letter of the correct option.'
    )


def mmlu_doc_to_target(doc: dict) -> int:
    return int(doc["answer"])


def livecodebench_doc_to_text(doc: dict) -> str:
    if doc["starter_code"]:
        fmt = (
            "Complete the class below (use the exact signature) and return the whole solution in "
            f"one Python code block.\n```python\n{doc['starter_code']}\n```"
        )
    else:
        fmt = (
            "Read the inputs from stdin, solve the problem and write the answer to stdout. Return "
            "the whole program in one Python code block:\n```python\n# YOUR CODE HERE\n```"
        )
    return (
        "You are an expert Python programmer. Solve the following programming problem.\n\n"
        f"### Question:\n{doc['question_content']}\n\n### Format: {fmt}\n\n### Answer:\n"
    )


# --------------------------------------------------------------------------- scorers


def _first(results: list) -> str:
    r = results[0] if results else ""
    return r if isinstance(r, str) else str(r)


def gsm8k_process_results(doc: dict, results: list) -> dict[str, float]:
    pred = extract.extract_gsm8k_answer(_first(results))
    return {"exact_match": float(pred is not None and pred == extract.gsm8k_target(doc["answer"]))}


def math_process_results(doc: dict, results: list) -> dict[str, float]:
    return {"math_verify": float(extract.math_equal(_first(results), doc["answer"]))}


def minerva_process_results(doc: dict, results: list) -> dict[str, float]:
    text = _first(results)
    marker = "The final answer is"
    if marker in text:
        tail = text.split(marker)[-1].split("I hope it is correct")[0].strip().rstrip(".").strip()
        if tail.startswith("$") and tail.endswith("$"):
            tail = tail.strip("$")
        if extract.last_boxed(text[text.rfind(marker) :]) is None:
            text = "\\boxed{" + tail + "}"
    return {"math_verify": float(bool(doc["answer"]) and extract.math_equal(text, doc["answer"]))}


def mmlu_generative_process_results(doc: dict, results: list) -> dict[str, float]:
    pred = extract.extract_choice(_first(results), n_choices=len(doc["choices"]))
    return {"exact_match": float(pred is not None and pred == "ABCD"[int(doc["answer"])])}


def _truncate_completion(text: str) -> str:
    if "```" in text:
        return text
    cut = min((i for s in HUMANEVAL_STOPS if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def _humaneval_score(doc: dict, results: list, variant: str, plus: bool) -> dict[str, float]:
    from dllm_eval.tasks import humaneval

    problem = humaneval.problems(variant)[doc["task_id"]]
    res = humaneval.grade(
        problem, _truncate_completion(_first(results)), variant=variant, plus=plus
    )
    return {"pass@1": float(res.passed)}


def humaneval_process_results(doc: dict, results: list) -> dict[str, float]:
    return _humaneval_score(doc, results, "humaneval", plus=False)


def humaneval_plus_process_results(doc: dict, results: list) -> dict[str, float]:
    return _humaneval_score(doc, results, "humaneval_plus", plus=True)


def livecodebench_process_results(doc: dict, results: list) -> dict[str, float]:
    from dllm_eval.tasks import livecodebench

    problem = {
        "question_id": doc["question_id"],
        "func_name": doc["func_name"] or None,
        "tests": json.loads(doc["tests_json"]),
    }
    return {"pass@1": float(livecodebench.grade(problem, _first(results)).passed)}
