"""Package discovery for the root-as-package layout (see pyproject.toml [tool.setuptools]).

The repository root is the ``dllm_eval`` package; every sub-package below it is found here so
that new folders need no edits to pyproject.toml.
"""

from setuptools import find_packages, setup

SUBPACKAGES = ("harness", "samplers", "tasks", "trainers", "results", "tests", "benchmarks")
found = find_packages(where=".", include=[f"{s}*" for s in SUBPACKAGES])
setup(packages=["dllm_eval"] + [f"dllm_eval.{p}" for p in found])
