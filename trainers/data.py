"""Training data: JSONL records (``prompt``/``response`` or chat ``messages``), optionally a hub dataset.

Accepted records (one JSON object per line):

- ``{"prompt": "...", "response": "..."}`` — the prompt is wrapped in the tokenizer's chat
  template as one user turn when the tokenizer has a template (``add_generation_prompt``), else
  used as raw text; the response is followed by the EOS id.
- ``{"messages": [{"role": ..., "content": ...}, ...]}`` — the last message must be the
  assistant's; everything before it is the prompt (chat template), its content is the response.
- RL prompts: ``{"prompt": ..., "answer": ...}`` (``question`` is accepted for ``prompt``; a
  GSM8K answer ``... #### 42`` gives ``42``); code tasks may carry ``tests``.

``data`` may also be ``hf:NAME[:SPLIT]`` (needs the ``datasets`` package) with the same fields.
Tokenised samples are ``{"input_ids": [...], "prompt_len": P, "index": i}``; the collator in
``sft.py`` right-pads responses with EOS (LLaDA's SFT convention: the model learns to fill the
tail with EOS, as the samplers expect) and marks the padded EOS as response tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_records(source: str) -> list[dict[str, Any]]:
    """Read JSONL records from a file (``.jsonl`` / ``.jsonl.gz``) or ``hf:NAME[:SPLIT]``."""
    if source.startswith("hf:"):
        try:
            import datasets
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise ValueError("data='hf:...' needs the 'datasets' package (pip install dllm-eval[hub])") from exc
        name, _, split = source[3:].partition(":")
        return [dict(r) for r in datasets.load_dataset(name, split=split or "train")]
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"data={source!r}: no such file; accepted: a JSONL file or hf:NAME[:SPLIT]")
    if path.suffix == ".gz":
        import gzip

        text = gzip.open(path, "rt", encoding="utf-8").read()
    else:
        text = path.read_text(encoding="utf-8")
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"data={source!r}: line {n} is not valid JSON ({exc.msg})") from exc
    if not records:
        raise ValueError(f"data={source!r} holds no records")
    return records


def _has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_ids(tokenizer, prompt: str | list[dict[str, str]]) -> list[int]:
    """Token ids of a prompt: chat template (with generation prompt) if available, else raw text."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if _has_template(tokenizer):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) else ids)
    text = "".join(m["content"] for m in messages)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def split_record(record: dict[str, Any], n: int = 0) -> tuple[str | list[dict[str, str]], str]:
    """(prompt or prompt messages, response text) of an SFT record."""
    if "messages" in record:
        msgs = record["messages"]
        if not msgs or msgs[-1].get("role") != "assistant":
            raise ValueError(f"record {n}: 'messages' must end with an assistant message")
        return list(msgs[:-1]), msgs[-1]["content"]
    if "prompt" in record and "response" in record:
        return record["prompt"], record["response"]
    raise ValueError(f"record {n} has keys {sorted(record)}; accepted: prompt+response or messages")


def tokenize_sft(records: list[dict[str, Any]], tokenizer, eos_id: int, max_length: int) -> list[dict[str, Any]]:
    """Tokenise SFT records into ``{"input_ids", "prompt_len", "index"}`` (cut to ``max_length``)."""
    out = []
    for i, rec in enumerate(records):
        prompt, response = split_record(rec, i)
        p = prompt_ids(tokenizer, prompt)
        r = list(tokenizer(response, add_special_tokens=False)["input_ids"]) + [int(eos_id)]
        ids = (p + r)[:max_length]
        if len(p) >= len(ids):
            raise ValueError(f"record {i}: the prompt ({len(p)} tokens) leaves no room for the response "
                             f"within max_length={max_length}")
        out.append({"input_ids": ids, "prompt_len": len(p), "index": i})
    return out


def rl_prompts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalise RL records to ``{"prompt", "answer", "tests"?}``."""
    out = []
    for i, rec in enumerate(records):
        prompt = rec.get("prompt", rec.get("question", rec.get("messages")))
        if prompt is None:
            raise ValueError(f"record {i} has keys {sorted(rec)}; accepted: prompt (or question/messages) + answer")
        ans = rec.get("answer", rec.get("solution", ""))
        if isinstance(ans, str) and "####" in ans:
            ans = ans.split("####")[-1].strip().replace(",", "")
        item = {"prompt": prompt, "answer": str(ans), "index": i}
        if "tests" in rec:
            item["tests"] = rec["tests"]
        out.append(item)
    return out
