"""The sandbox: verdict statuses, limits, isolation levels, refusal without a sandbox, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from dllm_eval.tasks import sandbox
from dllm_eval.tasks.sandbox import SandboxConfig, SandboxUnavailableError, run_python

HAS_BWRAP = sandbox.bwrap_available()
LEVELS = ["rlimit"] + (["bwrap"] if HAS_BWRAP else [])


@pytest.mark.parametrize("isolation", LEVELS)
def test_stdin_stdout_and_isolation_reported(isolation: str) -> None:
    v = run_python("import sys\nprint(sys.stdin.read()[::-1])", stdin="abc", isolation=isolation)
    assert (v.status, v.returncode, v.stdout, v.isolation) == ("ok", 0, "cba\n", isolation)


@pytest.mark.parametrize("isolation", LEVELS)
def test_isolated_interpreter_and_empty_environment(isolation: str) -> None:
    os.environ["DLLM_SANDBOX_CANARY"] = "leak"
    try:
        v = run_python(
            "import os, sys\nprint(sorted(os.environ))\nprint(sys.flags.isolated)",
            isolation=isolation,
        )
    finally:
        del os.environ["DLLM_SANDBOX_CANARY"]
    env_keys, isolated = v.stdout.splitlines()
    assert "DLLM_SANDBOX_CANARY" not in env_keys and "PATH" not in env_keys
    assert isolated == "1"


@pytest.mark.parametrize("isolation", LEVELS)
@pytest.mark.parametrize(
    ("source", "status"),
    [
        ("import sys; sys.exit(3)", "error"),
        ("raise ValueError('boom')", "error"),
        ("while True: pass", "timeout"),
        ("x = bytearray(10 ** 11)", "memory"),
        ("while True: print('x' * 100)", "output_limit"),
    ],
)
def test_statuses(isolation: str, source: str, status: str) -> None:
    v = run_python(source, isolation=isolation, timeout_s=1.5, output_bytes=10_000)
    assert v.status == status, v
    if status == "output_limit":
        assert len(v.stdout) <= 10_000
    if status == "timeout":
        assert 1.4 < v.wall_s < 4


def test_bwrap_hides_host_files_and_network() -> None:
    if not HAS_BWRAP:
        pytest.skip("bubblewrap not available (CI installs it)")
    src = (
        "import os, socket\nprint(sorted(os.listdir('/')))\nprint(os.path.exists('/work'), os.path.exists('/root'))\n"
        "print([n for _, n in socket.if_nameindex()])\nprint(os.getpid())"
    )
    v = run_python(src, isolation="bwrap")
    lines = v.stdout.splitlines()
    assert "work" not in lines[0] and "home" not in lines[0]
    assert lines[1] == "False False"
    assert lines[2] == "['lo']"  # a fresh network namespace: loopback only
    assert int(lines[3]) < 10  # own PID namespace


def test_refuses_without_sandbox_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sandbox, "_bwrap_works", lambda python, drop: (False, "bwrap missing (test)")
    )
    monkeypatch.delenv("DLLM_SANDBOX_ALLOW_UNSANDBOXED", raising=False)
    with pytest.raises(SandboxUnavailableError, match="Refusing"):
        run_python("print(1)")
    with pytest.raises(SandboxUnavailableError):
        run_python("print(1)", isolation="bwrap")
    assert run_python("print(1)", allow_unsandboxed=True).isolation == "rlimit"
    monkeypatch.setenv("DLLM_SANDBOX_ALLOW_UNSANDBOXED", "1")
    assert run_python("print(1)").isolation == "rlimit"


def test_config_validation_names_option() -> None:
    with pytest.raises(ValueError, match="isolation='docker'.*auto, bwrap, rlimit"):
        SandboxConfig(isolation="docker")
    with pytest.raises(ValueError, match="timeout_s=0"):
        SandboxConfig(timeout_s=0)
    with pytest.raises(TypeError):
        run_python("print(1)", timeout=3)  # misspelled option is not swallowed


def test_cli_prints_json_verdict(tmp_path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("print(int(input()) * 2)\n")
    stdin = tmp_path / "in.txt"
    stdin.write_text("21\n")
    args = ["sandbox", str(prog), "--stdin", str(stdin), "--timeout", "5"]
    if not HAS_BWRAP:
        args.append("--allow-unsandboxed")
    out = subprocess.run(
        [sys.executable, "-m", "dllm_eval.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout)
    assert verdict["status"] == "ok" and verdict["stdout"] == "42\n"
    assert verdict["isolation"] in ("bwrap", "rlimit") and verdict["returncode"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="per-run uids are used when the grader runs as root")
def test_run_uids_are_exclusive_across_processes() -> None:
    held = [sandbox._acquire_uid() for _ in range(sandbox.UID_POOL - 2)]
    try:
        free = set(range(sandbox.UID_BASE, sandbox.UID_BASE + sandbox.UID_POOL)) - set(held)
        code = "from dllm_eval.tasks import sandbox; u = sandbox._acquire_uid(); print(u); sandbox._release_uid(u)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) in free  # another process only gets a uid that nobody holds
    finally:
        for uid in held:
            sandbox._release_uid(uid)
