"""Make the stock lm-eval find the ``dllm`` model and the ``dllm_*`` tasks, without importing lm-eval.

lm-eval 0.4.13 reads no plugin entry points, so ``lm_eval --model dllm`` would not know our
model and our tasks would need ``--include_path``. :func:`register_all` (run by
``import dllm_eval``, and at interpreter start-up by the ``dllm_eval_lm_eval.pth`` file that
the package installs into site-packages, see setup.py) fixes both lazily:

* it installs a tiny post-import hook (a :data:`sys.meta_path` finder that answers only for two
  module names and otherwise returns ``None`` at once);
* when ``lm_eval.api.registry`` has been imported, the hook registers ``dllm`` in lm-eval's own
  model registry as the lazy placeholder ``"dllm_eval.harness.lm:DLLM"`` (the model module, and
  torch, are imported only when lm-eval builds the model). lm-eval's own models are registered
  first, so ``--model hf`` and every other stock model still resolve;
* when ``lm_eval.tasks.manager`` has been imported, the hook wraps ``TaskManager.__init__`` so
  that a manager built with the default task folders also indexes ``dllm_eval.tasks.TASK_DIR``
  (before any user ``include_path``, so a user's folder still wins on a name clash).

If lm-eval already loads plugins from entry points itself (releases after 0.4.13 read the
``lm_eval.models`` / ``lm_eval.tasks`` groups that pyproject.toml declares), the corresponding
step is skipped so that nothing is registered twice. Nothing here imports torch or lm-eval; a
failure is reported as a warning and never breaks the interpreter or ``import dllm_eval``.
"""

from __future__ import annotations

import functools
import sys
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

MODEL_NAME = "dllm"
MODEL_TARGET = "dllm_eval.harness.lm:DLLM"
MODEL_GROUP = "lm_eval.models"
TASK_GROUP = "lm_eval.tasks"
_REGISTRY_MODULE = "lm_eval.api.registry"
_TASK_MANAGER_MODULE = "lm_eval.tasks.manager"
# lm-eval modules whose source would name an entry-point group if lm-eval consumed it
_PLUGIN_SOURCES = (
    "lm_eval.api.registry",
    "lm_eval.models",
    "lm_eval.tasks",
    "lm_eval.tasks.manager",
    "lm_eval.tasks._index",
)

_lock = threading.RLock()
_done: set[str] = set()


def register_all() -> None:
    """Register the ``dllm`` model and our task folder with lm-eval (idempotent, cheap).

    Modules of lm-eval that are already imported are handled now; the others when they are
    first imported. Never raises: problems become a ``RuntimeWarning``.
    """
    try:
        _install_finder()
        for name in tuple(_HOOKS):
            module = sys.modules.get(name)
            if module is not None and getattr(module, "__spec__", None) is not None:
                _run_hook(name, module)
    except Exception as exc:  # pragma: no cover - defensive: never break `import dllm_eval`
        warnings.warn(f"dllm_eval: lm-eval registration failed: {exc!r}", RuntimeWarning, stacklevel=2)


def task_dir() -> Path:
    """The folder of our lm-eval task YAMLs (``dllm_eval.tasks.TASK_DIR``)."""
    from pathlib import Path

    from dllm_eval import tasks

    path = getattr(tasks, "TASK_DIR", None)
    return Path(path) if path is not None else Path(tasks.__file__).resolve().parent


def lm_eval_loads_plugins(group: str) -> bool:
    """True if the installed lm-eval reads the entry-point ``group`` itself.

    Checked on the imported lm-eval modules: a release that consumes the group names it next
    to its entry-point loader in its source (``load_plugins("lm_eval.models", ...)``,
    ``entry_points(group=...)``); 0.4.13 does not.
    """
    if group == MODEL_GROUP:
        registry = sys.modules.get(_REGISTRY_MODULE)
        if registry is not None and callable(getattr(registry, "load_plugins", None)):
            return True
    quoted = (f'"{group}"', f"'{group}'")
    for name in _PLUGIN_SOURCES:
        text = _module_source(name)
        if text and any(q in text for q in quoted) and ("load_plugins" in text or "entry_points" in text):
            return True
    return False


def is_registered() -> bool:
    """True if lm-eval's model registry (if imported) resolves ``dllm``."""
    registry = sys.modules.get(_REGISTRY_MODULE)
    return registry is not None and MODEL_NAME in registry.model_registry


# ----------------------------------------------------------------------------- the two hooks


def _register_model(registry: ModuleType) -> None:
    if lm_eval_loads_plugins(MODEL_GROUP):
        return  # lm-eval registers our entry point itself
    # lm-eval's get_model() imports its own model table only while the registry is empty: fill
    # it first so that adding `dllm` does not hide `hf`, `vllm`, ...
    import lm_eval.models  # noqa: F401

    model_registry = registry.model_registry
    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def _patch_task_manager(manager: ModuleType) -> None:
    import inspect

    cls = getattr(manager, "TaskManager", None)
    if cls is None or getattr(cls.__init__, "_dllm_eval_patched", False):
        return
    if lm_eval_loads_plugins(TASK_GROUP):
        return
    original = cls.__init__
    signature = inspect.signature(original)
    if "include_path" not in signature.parameters:
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            original(self, *args, **kwargs)  # lm-eval reports its own error
            return
        bound.apply_defaults()
        include = bound.arguments.get("include_path")
        if bound.arguments.get("include_defaults", True):
            paths = list(include) if isinstance(include, (list, tuple)) else [] if include is None else [include]
            ours = task_dir()
            if ours.is_dir() and not any(_same_path(p, ours) for p in paths):
                bound.arguments["include_path"] = [ours, *paths]
        original(*bound.args, **bound.kwargs)
        self.include_path = include  # lm-eval stores the user's value; keep it visible

    __init__._dllm_eval_patched = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    _REGISTRY_MODULE: _register_model,
    _TASK_MANAGER_MODULE: _patch_task_manager,
}


def _run_hook(name: str, module: ModuleType) -> None:
    with _lock:
        if name in _done:
            return
        _done.add(name)
    try:
        _HOOKS[name](module)
    except Exception as exc:
        with _lock:
            _done.discard(name)
        warnings.warn(
            f"dllm_eval: could not register with lm-eval ({name}): {exc!r}", RuntimeWarning, stacklevel=2
        )


# ----------------------------------------------------------------------------- helpers


def _same_path(p: Any, ours: Path) -> bool:
    from pathlib import Path

    try:
        return Path(p).resolve() == ours.resolve()
    except (TypeError, OSError):
        return False


def _module_source(name: str) -> str | None:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


class _HookLoader:
    """Delegates to the real loader and runs our hook once the module has executed."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # restore the real loader so introspection (inspect, linecache, pickle) sees it
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        _run_hook(self._name, module)

    def __getattr__(self, attr: str) -> Any:  # get_source, get_filename, is_package, ...
        return getattr(self._loader, attr)


class _PostImportFinder:
    """Answers only for the hooked module names; every other import costs one dict lookup."""

    _dllm_eval_finder = True

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _HOOKS or fullname in _done:
            return None
        busy = getattr(self._busy, "names", None)
        if busy is None:
            busy = self._busy.names = set()
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookLoader(spec.loader, fullname)
        return spec


def _install_finder() -> None:
    with _lock:
        if any(getattr(f, "_dllm_eval_finder", False) for f in sys.meta_path):
            return
        sys.meta_path.insert(0, _PostImportFinder())
