"""Answer extraction for the dllm_* tasks: numbers (GSM8K), ``\\boxed{}`` (MATH), letters (MMLU), code.

Diffusion LMs are usually evaluated with instruct-style free-form answers, so extraction has to
cope with chat prose: thousands separators, currency and units, ``\\boxed{}``, "The answer is
(B)", fenced code blocks with or without a language tag, an unterminated fence at the end of a
generation. Every function here is pure and tested on such outputs (tests/test_extract.py).

    extract_number("So she pays $1,234.50 in total.")     # '1234.5'
    last_boxed("... \\boxed{\\frac{1}{2}}.")                 # '\\frac{1}{2}'
    extract_choice("The answer is (B).")                    # 'B'
    extract_code("```python\\ndef f(): ...\\n```")          # 'def f(): ...'
"""

from __future__ import annotations

import re

__all__ = [
    "extract_choice",
    "extract_code",
    "extract_gsm8k_answer",
    "extract_number",
    "gsm8k_target",
    "last_boxed",
    "math_equal",
    "normalize_number",
]

_NUM = r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\$?\s?\.\d+"
_NUM_RE = re.compile(_NUM)


def normalize_number(text: str) -> str | None:
    """Canonical string of the number in ``text`` ('1,234.50 dollars' -> '1234.5'), else None."""
    if text is None:
        return None
    m = _NUM_RE.search(text.replace("\u2212", "-"))
    if m is None:
        return None
    s = m.group(0).replace(",", "").replace("$", "").replace(" ", "")
    neg = s.startswith("-")
    s = s.lstrip("-")
    if "." in s:
        s = s.rstrip("0").rstrip(".") or "0"
    if s.startswith("."):
        s = "0" + s
    s = s.lstrip("0") or "0" if not s.startswith("0.") else s
    if s == "0":
        neg = False
    return ("-" if neg else "") + s


def extract_number(text: str) -> str | None:
    """The last number in ``text``, normalised (commas, $ and trailing zeros removed)."""
    matches = list(_NUM_RE.finditer(text.replace("\u2212", "-")))
    if not matches:
        return None
    return normalize_number(matches[-1].group(0))


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces ok), else None."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = idx + (6 if text.startswith("\\boxed", idx) else 5)
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] != "{":  # "\boxed 5"
        m = re.match(r"[^\s$.,]+", text[i:])
        return m.group(0) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)?\s*:?\s*(?:\\\(|\$)?\s*(?:\\boxed\{)?([^\n]*)",
    re.IGNORECASE,
)


def extract_gsm8k_answer(text: str) -> str | None:
    """GSM8K answer from a generation: '#### N', then 'the answer is N', then \\boxed{N}, then the last number."""
    m = re.search(r"####\s*([^\n]*)", text)
    if m and (n := normalize_number(m.group(1))) is not None:
        return n
    found = None
    for m in _ANSWER_IS.finditer(text):
        n = normalize_number(m.group(1))
        if n is not None:
            found = n
    if found is not None:
        return found
    boxed = last_boxed(text)
    if boxed is not None and (n := normalize_number(boxed)) is not None:
        return n
    return extract_number(text)


def gsm8k_target(answer: str) -> str:
    """The reference number of a GSM8K ``answer`` field (text after '####')."""
    n = normalize_number(answer.split("####")[-1])
    if n is None:
        raise ValueError(f"GSM8K answer has no number after '####': {answer[-80:]!r}")
    return n


_LETTERS = "ABCDEFGHIJ"


def extract_choice(text: str, n_choices: int = 4) -> str | None:
    """Multiple-choice letter: 'The answer is (B)', 'Answer: C', '\\boxed{D}', '(A) ...', 'B'."""
    letters = _LETTERS[:n_choices]
    cls = f"[{letters}]"
    patterns = [
        rf"answer\s*(?:is|:)?\s*:?\s*(?:option\s*)?\\?\(?\**\s*\(?({cls})\)?(?![A-Za-z])",
        rf"\\boxed\{{\s*(?:\\text\{{)?\(?({cls})\)?",
        rf"(?:option|choice)\s*\(?({cls})\)?(?![A-Za-z])",
    ]
    for pat in patterns:
        found = re.findall(pat, text, flags=re.IGNORECASE)
        if found:
            return found[-1].upper()
    stripped = text.strip()
    m = re.match(rf"^\**\(?({cls})(?:\)|\.|:|\*|\s|$)", stripped)
    if m:
        return m.group(1)
    m = re.search(rf"(?<![A-Za-z])\(({cls})\)", text)
    if m:
        return m.group(1)
    return None


_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str, entry_point: str | None = None) -> str:
    """Python code from a generation: the fenced block defining ``entry_point`` (else the first
    Python block, else the longest block); text without fences is returned unchanged
    (completion style). An unterminated fence at the end of the text is accepted."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    if not blocks:
        return text
    if entry_point:
        for _, body in blocks:
            if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", body, re.M):
                return body.rstrip() + "\n"
    for lang, body in blocks:
        if lang in ("python", "py", "python3"):
            return body.rstrip() + "\n"
    return max((b for _, b in blocks), key=len).rstrip() + "\n"


def math_equal(prediction: str, gold: str, timeout_s: int = 5) -> bool:
    """True when math-verify judges the answer in ``prediction`` equal to ``gold``.

    ``gold`` is a bare LaTeX answer (MATH's ``answer`` field, e.g. ``\\frac{1}{2}``) or a full
    solution containing ``\\boxed{}``; ``prediction`` is a free-form generation.
    """
    from math_verify import parse, verify

    boxed = last_boxed(gold)
    gold_expr = parse(
        "\\boxed{" + (boxed if boxed is not None else gold) + "}", parsing_timeout=timeout_s
    )
    if not gold_expr:
        return False
    pred_expr = parse(prediction, parsing_timeout=timeout_s)
    if not pred_expr:
        return False
    return bool(verify(gold_expr, pred_expr, timeout_seconds=timeout_s))
