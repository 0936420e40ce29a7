"""Registration with the stock lm-eval: the ``dllm`` model resolves without any user step, other
models still resolve, our task folder is indexed without ``--include_path``, nothing heavy is
imported, and everything steps aside when lm-eval loads entry-point plugins itself."""

from __future__ import annotations

import ast
import importlib.metadata as md
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import pytest
from dllm_eval.harness import registration

REPO = Path(__file__).resolve().parents[1]


def _site_prefix() -> str:
    """Code that makes site-packages (and an editable install) importable under ``python -S``."""
    purelib = sysconfig.get_paths()["purelib"]
    return (
        f"import sys, glob, importlib, os; sys.path.append({purelib!r})\n"
        f"for f in glob.glob(os.path.join({purelib!r}, '__editable___dllm_eval*_finder.py')):\n"
        "    importlib.import_module(os.path.basename(f)[:-3]).install()\n"
    )


def _python(code: str, no_site: bool = False) -> str:
    """Run ``code`` in a fresh interpreter; ``no_site``: without site's .pth processing (so our
    start-up hook does not run), with site-packages and an editable install made importable."""
    cmd = [sys.executable, "-S", "-c", _site_prefix() + code] if no_site else [sys.executable, "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip()


def _pth_line() -> str:
    """setup.py's PTH_LINE, evaluated from its source (running setup.py would build)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in ("_HOOK", "PTH_LINE"):
            expr = compile(ast.Expression(node.value), "setup.py", "eval")
            values[node.targets[0].id] = eval(expr, dict(values))  # noqa: S307 - our own constant
    assert "PTH_LINE" in values, "setup.py defines no PTH_LINE"
    return str(values["PTH_LINE"])


def test_startup_hook_registers_lazily_without_heavy_imports():
    """What `lm_eval --model dllm` relies on: a fresh interpreter (site runs our .pth)."""
    installed = Path(sysconfig.get_paths()["purelib"]) / "dllm_eval_lm_eval.pth"
    if not installed.is_file():
        pytest.skip("dllm_eval_lm_eval.pth not installed (reinstall the package)")
    assert installed.read_text() == _pth_line()
    out = _python(
        "import sys\n"
        "print('dllm_eval' in sys.modules, 'torch' in sys.modules, 'lm_eval' in sys.modules)\n"
        "from lm_eval.api.registry import get_model, model_registry\n"
        "print('dllm_eval' in sys.modules, model_registry._objs['dllm'], 'torch' in sys.modules)\n"
        "print(get_model('dummy').__name__, 'hf' in model_registry)\n"
    )
    assert out.splitlines() == [
        "False False False",  # start-up imports nothing of ours until lm_eval is imported
        "True dllm_eval.harness.lm:DLLM False",
        "DummyLM True",
    ]


def test_pth_line_waits_for_lm_eval_and_never_raises():
    line = _pth_line()
    assert line.startswith("import ") and line.count("\n") == 1  # a .pth executable line
    code = (
        line + "print('dllm_eval' in sys.modules)\n"
        "import json\n"  # other imports pass straight through
        "import lm_eval.api.registry as r\n"
        "print('dllm_eval' in sys.modules, 'dllm' in r.model_registry)\n"
    )
    assert _python(code, no_site=True).splitlines() == ["False", "True True"]
    # a broken dllm_eval only warns, at the first lm_eval import
    broken = (
        "sys.modules['dllm_eval'] = None\n" + line + "import warnings, lm_eval\n"
        "print('lm_eval ok')\n"
    )
    proc = subprocess.run([sys.executable, "-S", "-W", "always", "-c", _site_prefix() + broken],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "lm_eval ok"
    assert "dllm_eval could not register with lm-eval" in proc.stderr


def test_import_after_lm_eval_registers_too():
    out = _python(
        "print('dllm_eval' in sys.modules)\n"
        "import lm_eval.api.registry as r\n"
        "print('dllm' in r.model_registry)\n"
        "import dllm_eval\n"
        "print('dllm' in r.model_registry, 'torch' in sys.modules)\n"
        "print(r.get_model('dllm').__name__, r.get_model('dummy').__name__)\n",
        no_site=True,
    )
    assert out.splitlines() == ["False", "False", "True False", "DLLM DummyLM"]


def test_entry_points_are_declared_for_plugin_aware_lm_eval():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["lm_eval.models"] == {"dllm": "dllm_eval.harness.lm:DLLM"}
    assert project["entry-points"]["lm_eval.tasks"] == {"dllm": "dllm_eval.tasks:TASK_DIR"}
    (ep,) = [e for e in md.entry_points(group="lm_eval.models") if e.name == "dllm"]
    from dllm_eval.harness.lm import DLLM

    assert ep.load() is DLLM


def test_installed_lm_eval_does_not_load_plugins_itself():
    import lm_eval.api.registry  # noqa: F401
    import lm_eval.tasks  # noqa: F401

    assert not registration.lm_eval_loads_plugins(registration.MODEL_GROUP)
    assert not registration.lm_eval_loads_plugins(registration.TASK_GROUP)


def test_steps_aside_when_lm_eval_loads_plugins(monkeypatch, tmp_path):
    # a registry with load_plugins (lm-eval > 0.4.13): nothing is registered by us
    registry = types.ModuleType("lm_eval.api.registry")
    registry.load_plugins = lambda group, reg: []
    registry.model_registry = {}
    monkeypatch.setitem(sys.modules, "lm_eval.api.registry", registry)
    assert registration.lm_eval_loads_plugins(registration.MODEL_GROUP)
    registration._register_model(registry)
    assert registry.model_registry == {}
    # a task module that reads the lm_eval.tasks group: TaskManager is left alone
    src = tmp_path / "_index.py"
    src.write_text('import logging\nlog = logging.getLogger("lm_eval.tasks")\n')
    index = types.ModuleType("lm_eval.tasks._index")
    index.__file__ = str(src)
    monkeypatch.setitem(sys.modules, "lm_eval.tasks._index", index)
    assert not registration.lm_eval_loads_plugins(registration.TASK_GROUP)  # a logger name is not a loader
    src.write_text('from importlib.metadata import entry_points\nEPS = entry_points(group="lm_eval.tasks")\n')
    index = types.ModuleType("lm_eval.tasks._index")
    index.__file__ = str(src)
    monkeypatch.setitem(sys.modules, "lm_eval.tasks._index", index)
    assert registration.lm_eval_loads_plugins(registration.TASK_GROUP)

    class TaskManager:
        def __init__(self, include_path=None, include_defaults=True):
            self.include_path = include_path

    manager = types.ModuleType("fake_manager")
    manager.TaskManager = TaskManager
    original = TaskManager.__init__
    registration._patch_task_manager(manager)
    assert TaskManager.__init__ is original


def test_task_manager_indexes_our_task_dir(monkeypatch, tmp_path):
    import dllm_eval.tasks
    from lm_eval.tasks import TaskManager

    ours = tmp_path / "ours"
    ours.mkdir()
    data = tmp_path / "d.jsonl"
    data.write_text('{"q": "a", "a": "b"}\n')
    (ours / "t.yaml").write_text(
        f"task: dllm_registration_probe\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\n"
    )
    user = tmp_path / "user"
    user.mkdir()
    (user / "u.yaml").write_text((ours / "t.yaml").read_text().replace("dllm_registration_probe", "user_probe"))
    monkeypatch.setattr(dllm_eval.tasks, "TASK_DIR", ours, raising=False)
    assert getattr(TaskManager.__init__, "_dllm_eval_patched", False)
    tm = TaskManager(include_path=str(user))  # defaults included: ours is added, the user's kept
    assert "dllm_registration_probe" in tm.all_tasks and "user_probe" in tm.all_tasks
    assert "gsm8k" in tm.all_tasks and tm.include_path == str(user)
    bare = TaskManager(include_path=str(user), include_defaults=False)
    assert "dllm_registration_probe" not in bare.all_tasks and "user_probe" in bare.all_tasks


def test_default_task_dir_is_the_tasks_package():
    import dllm_eval.tasks

    expected = getattr(dllm_eval.tasks, "TASK_DIR", Path(dllm_eval.tasks.__file__).parent)
    assert registration.task_dir() == Path(expected)


def test_run_cli_is_the_lm_eval_cli(monkeypatch):
    import lm_eval.__main__
    from dllm_eval import cli
    from dllm_eval.harness import run_cli

    seen = []

    def fake_cli():
        seen.append(list(sys.argv))
        if "--fail" in sys.argv:
            raise SystemExit(3)

    monkeypatch.setattr(lm_eval.__main__, "cli_evaluate", fake_cli)
    before = list(sys.argv)
    assert run_cli.main(["--tasks", "gsm8k"]) == 0
    assert run_cli.main(["run", "--tasks", "gsm8k"]) == 0
    assert run_cli.main(["--model", "hf", "--tasks", "gsm8k"]) == 0
    assert run_cli.main(["ls", "tasks"]) == 0
    assert run_cli.main(["--model=hf", "--fail"]) == 3
    assert cli.main(["run", "--tasks", "x"]) == 0  # `dllm-eval run` routes here
    assert sys.argv == before
    assert seen == [
        ["lm-eval", "--model", "dllm", "--tasks", "gsm8k"],
        ["lm-eval", "run", "--model", "dllm", "--tasks", "gsm8k"],
        ["lm-eval", "--model", "hf", "--tasks", "gsm8k"],
        ["lm-eval", "ls", "tasks"],
        ["lm-eval", "--model=hf", "--fail"],
        ["lm-eval", "--model", "dllm", "--tasks", "x"],
    ]
