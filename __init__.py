"""dllm-eval: evaluation and post-training toolkit for diffusion language models.

Importing ``dllm_eval`` is cheap: it never imports torch or touches CUDA. It registers the
``dllm`` model and the ``dllm_*`` tasks with lm-evaluation-harness lazily (see
``dllm_eval.harness.registration``) and exposes the public entry points lazily:

    import dllm_eval
    out = dllm_eval.generate(model, input_ids, sampler="confidence", gen_length=64)
    model, tokenizer, adapter = dllm_eval.load("GSAI-ML/LLaDA-8B-Instruct", dtype="bfloat16")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute", resolved on first use (keeps `import dllm_eval` light)
_LAZY = {
    "generate": "dllm_eval.samplers.engine:generate",
    "DecodeConfig": "dllm_eval.samplers.config:DecodeConfig",
    "GenerationResult": "dllm_eval.samplers.engine:GenerationResult",
    "load": "dllm_eval.harness.loading:load",
    "get_adapter": "dllm_eval.harness.family:get_adapter",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'dllm_eval' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def _register() -> None:
    # transformers Auto classes: a torch-free import hook (see harness/models/__init__.py)
    from dllm_eval.harness.models import install_auto_hook

    install_auto_hook()
    try:
        from dllm_eval.harness import registration
    except ImportError:  # registration module not built yet / lm-eval missing
        return
    registration.register_all()


_register()
