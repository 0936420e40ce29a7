"""Native model families (LLaDA, Dream, SDAR) and their registration with transformers' Auto classes.

Importing this package is cheap (no torch, no transformers): the classes are resolved lazily
(``dllm_eval.harness.models.LLaDAModelLM`` imports ``llada.py`` on first use) and
``install_auto_hook()`` (called on import) arranges that the families are registered with
``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` as soon as transformers loads its auto
modules, so that ``AutoModel.from_pretrained(folder)`` returns the native class without
``trust_remote_code``. ``register_auto_classes()`` does the same registration eagerly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from typing import Any

# public name -> module (relative to this package)
_LAZY = {
    "LLaDAConfig": "configs",
    "DreamConfig": "configs",
    "SDARConfig": "configs",
    "LLaDAModelLM": "llada",
    "DreamModel": "dream",
    "SDARForCausalLM": "sdar",
    "KVCache": "common",
    "AttnStats": "common",
    "AttnStatsRequest": "common",
    "DiffusionLM": "common",
    "DiffusionLMOutput": "common",
}

# model_type -> (config class, model class, Auto model classes it registers with)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "llada": ("LLaDAConfig", "LLaDAModelLM", ("AutoModel", "AutoModelForCausalLM")),
    "Dream": ("DreamConfig", "DreamModel", ("AutoModel", "AutoModelForCausalLM")),
    "sdar": ("SDARConfig", "SDARForCausalLM", ("AutoModelForCausalLM", "AutoModel")),
}

__all__ = [*_LAZY, "FAMILIES", "install_auto_hook", "register_auto_classes"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


_registered: set[str] = set()
_lock = threading.RLock()


def _register_configs() -> None:
    from dllm_eval.harness.models import configs
    from transformers import AutoConfig

    with _lock:
        if "config" in _registered:
            return
        _registered.add("config")
        for model_type, (config_name, _, _) in FAMILIES.items():
            AutoConfig.register(model_type, getattr(configs, config_name), exist_ok=True)


class _LazyModelClass(type):
    """Metaclass of the placeholders registered from the import hook: any attribute the
    placeholder lacks (``from_pretrained``, ``_from_config``, ...) is taken from the real class,
    which is imported on first use. Registering placeholders keeps the hook from importing
    model code (and torch) while transformers is still half-way through its own imports."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(__getattr__(cls._target), name)


def _register_models(eager: bool = False) -> None:
    import transformers

    with _lock:
        key = "model" if eager else "model-lazy"
        if key in _registered or "model" in _registered:
            return
        _registered.add(key)
        _register_configs()
        from dllm_eval.harness.models import configs

        for _, (config_name, model_name, autos) in FAMILIES.items():
            config_cls = getattr(configs, config_name)
            if eager:
                model_cls = __getattr__(model_name)
            else:
                model_cls = _LazyModelClass(
                    model_name, (), {"config_class": config_cls, "_target": model_name, "__module__": __name__}
                )
            for auto in autos:
                getattr(transformers, auto).register(config_cls, model_cls, exist_ok=True)


def register_auto_classes() -> None:
    """Register the three families with AutoConfig, AutoModel and AutoModelForCausalLM now
    (imports transformers and torch). Idempotent."""
    _register_models(eager=True)


# transformers module -> registration to run right after it has been executed
_HOOKED = {
    "transformers.models.auto.configuration_auto": _register_configs,
    "transformers.models.auto.modeling_auto": _register_models,
}


class _PostImportLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, callback: Any) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tracebacks
        return getattr(self._loader, name)


class _AutoHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of transformers' auto modules so that our
    registration runs as soon as they are executed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        callback = _HOOKED.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PostImportLoader(spec.loader, callback)
                return spec
        return None


def install_auto_hook() -> None:
    """Make transformers' Auto classes know the native families, without importing transformers
    (or torch) now: registration runs when transformers loads its auto modules, or immediately if
    it already has. Idempotent; called when this package is imported."""
    if not any(isinstance(f, _AutoHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _AutoHook())
    for name, callback in _HOOKED.items():
        if name in sys.modules:
            callback()


install_auto_hook()
