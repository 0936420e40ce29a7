"""Package discovery for the root-as-package layout (see pyproject.toml [tool.setuptools]).

The repository root is the ``dllm_eval`` package; every sub-package below it is found here so
that new folders need no edits to pyproject.toml.

It also installs ``dllm_eval_lm_eval.pth`` into site-packages (regular and editable installs):
one line, run by Python's ``site`` at start-up, that waits for the first ``import lm_eval`` and
then imports ``dllm_eval`` (cheap: no torch), whose post-import hooks register the ``dllm``
model and our task folder with lm-eval, so the stock ``lm_eval --model dllm`` and
``python -m lm_eval`` work (lm-eval 0.4.13 reads no plugin entry points). See
dllm_eval/harness/registration.py.
"""

import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

SUBPACKAGES = ("harness", "samplers", "tasks", "trainers", "results", "tests", "benchmarks")
PTH_NAME = "dllm_eval_lm_eval.pth"
# Run by site at start-up (a .pth line must start with "import"). It only adds a tiny finder
# that waits for the first `import lm_eval`; then it imports dllm_eval (whose registration hooks
# lm-eval's registry and TaskManager) and removes itself. Python programs that never import
# lm-eval do not import dllm_eval at all, and a failure is a warning, never a start-up error.
_HOOK = """
class _DllmEvalLmEvalHook:
    def find_spec(self, name, path=None, target=None):
        if name != "lm_eval":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        try:
            import dllm_eval
        except Exception as exc:
            import warnings
            warnings.warn("dllm_eval could not register with lm-eval: %r" % (exc,), RuntimeWarning)
        return None
sys.meta_path.insert(0, _DllmEvalLmEvalHook())
"""
PTH_LINE = f"import sys; exec({_HOOK!r}, {{'sys': sys}})\n"


class BuildPyWithPth(build_py):
    """build_py that also writes the start-up .pth file at the root of site-packages."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            # PEP 660 editable wheels are assembled from install_lib, not build_lib
            root = self.get_finalized_command("install").install_lib
        else:
            root = self.build_lib
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, PTH_NAME), "w", encoding="utf-8") as fh:
            fh.write(PTH_LINE)


found = find_packages(where=".", include=[f"{s}*" for s in SUBPACKAGES])
setup(
    packages=["dllm_eval"] + [f"dllm_eval.{p}" for p in found],
    cmdclass={"build_py": BuildPyWithPth},
)
