"""Benchmark tasks for diffusion LMs: lm-eval task YAMLs, bundled data, answer extraction, sandbox.

``TASK_DIR`` is the folder lm-evaluation-harness scans for the ``dllm_*`` task YAMLs
(``TaskManager(include_path=TASK_DIR)``); the plugin registration adds it automatically. Importing
this package is cheap (no torch, no lm-eval, no datasets).

| task | data (bundled) | output | metric |
|---|---|---|---|
| dllm_gsm8k | GSM8K test, zero-shot chat CoT, answer in \\boxed{} | generate | exact_match |
| dllm_gsm8k_fewshot | GSM8K test, 5-shot "Question:/Answer:" from train | generate | exact_match |
| dllm_math500 | MATH-500, zero-shot CoT, \\boxed{} | generate | math_verify |
| dllm_minerva_math | MATH test (5000), Minerva answer format | generate | math_verify |
| dllm_mmlu | MMLU test, 0-shot log-likelihood of " A".." D" | loglikelihood | acc |
| dllm_mmlu_generative | MMLU test, "The answer is (X)" | generate | exact_match |
| dllm_humaneval | HumanEval, completion or markdown, sandboxed | generate | pass@1 |
| dllm_humaneval_plus | HumanEval+ (base + plus inputs), sandboxed | generate | pass@1 |
| dllm_livecodebench | LiveCodeBench (hub or local folder), sandboxed | generate | pass@1 |
"""

from __future__ import annotations

import os

TASK_DIR: str = os.path.dirname(os.path.abspath(__file__))

__all__ = ["TASK_DIR"]
