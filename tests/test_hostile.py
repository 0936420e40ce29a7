"""Hostile-program corpus for the sandbox: 0 escapes, 0 false passes, no process left behind.

Every program below attacks the host or the grader: writing or deleting files outside its work
dir, reading secrets from the environment or a root-only file, the network (loopback TCP/UDP,
abstract and path unix sockets), orphans (fork, double fork, setsid, start_new_session), killing
the parent or everything, fork/thread bombs, memory bombs, disk fill, endless output, a closed
stdout, and forging a pass (exiting early, always-equal objects, fake result lines, patched
builtins, frame and gc walking, reading the grader's data files). The host-side effect of each
attack is checked from outside (canary files, listeners, the secret), and 2 s after each run no
process of the sandbox user may remain. The corpus runs under bubblewrap and, for the attacks the
rlimit fallback claims to stop, under the fallback too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dllm_eval.tasks import humaneval, livecodebench
from dllm_eval.tasks.sandbox import UID_BASE, UID_POOL, SandboxConfig, bwrap_available, run_python

SECRET = "dllm-secret-7f3a9c"
HAS_BWRAP = bwrap_available()
IS_ROOT = os.geteuid() == 0


@dataclass
class Host:
    """Host-side resources the attacks aim at."""

    dir: Path
    secret_dir: Path
    tcp_port: int
    udp_port: int
    abstract_name: str
    unix_path: Path
    hits: list = field(default_factory=list)


@dataclass(frozen=True)
class Attack:
    name: str
    category: str
    source: str
    statuses: tuple[str, ...] | None = None  # acceptable verdict statuses (None: any)
    bwrap_only: bool = False  # the rlimit fallback does not claim to stop this one
    timeout_s: float = 1.5


def _listen(host: Host) -> list:
    """TCP, UDP and unix listeners that record any contact in host.hits."""
    socks = []
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", 0))
    tcp.listen(16)
    host.tcp_port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 0))
    host.udp_port = udp.getsockname()[1]
    abst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abst.bind("\0" + host.abstract_name)
    abst.listen(4)
    path = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.bind(str(host.unix_path))
    os.chmod(host.unix_path, 0o777)
    path.listen(4)
    socks = [tcp, udp, abst, path]
    for s in socks:
        s.settimeout(0.2)

    def loop() -> None:
        while not getattr(loop, "stop", False):
            for s in socks:
                try:
                    if s.type == socket.SOCK_DGRAM:
                        data = s.recv(100)
                        host.hits.append(("udp", data))
                    else:
                        conn, _ = s.accept()
                        host.hits.append(("stream", s.getsockname()))
                        conn.close()
                except (TimeoutError, OSError):
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return [loop, t, socks]


@pytest.fixture(scope="module")
def host():
    d = Path(tempfile.mkdtemp(prefix="dllm-hostile-", dir="/tmp"))
    os.chmod(d, 0o777)
    secret_dir = Path(tempfile.mkdtemp(prefix="dllm-secret-", dir="/tmp"))
    os.chmod(secret_dir, 0o700)
    (secret_dir / "key.txt").write_text(SECRET)
    h = Host(d, secret_dir, 0, 0, f"dllm-abstract-{os.getpid()}", d / "unix.sock")
    loop, t, socks = _listen(h)
    old = os.environ.get("DLLM_TEST_SECRET")
    os.environ["DLLM_TEST_SECRET"] = SECRET
    yield h
    loop.stop = True
    t.join(timeout=2)
    for s in socks:
        s.close()
    if old is None:
        os.environ.pop("DLLM_TEST_SECRET", None)
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(secret_dir, ignore_errors=True)


def _sandbox_pids(uid: int | None) -> list[int]:
    """Live processes of a run's private uid (any pool uid when unknown)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                owner = os.stat(f"/proc/{name}").st_uid
            except OSError:
                continue
            if owner == uid or (uid is None and UID_BASE <= owner < UID_BASE + UID_POOL):
                pids.append(int(name))
    return pids


def _corpus(h: Host) -> list[Attack]:
    D = str(h.dir)
    A = Attack
    fs = "filesystem"
    out = [
        # --- files outside the work dir
        A("write_host_file", fs, f"open({D + '/pwned_write'!r}, 'w').write('x')", bwrap_only=True),
        A("delete_canary", fs, f"import os; os.remove({D + '/canary.txt'!r})", bwrap_only=True),
        A("truncate_canary", fs, f"open({D + '/canary.txt'!r}, 'w').write('')", bwrap_only=True),
        A(
            "rename_canary",
            fs,
            f"import os; os.rename({D + '/canary.txt'!r}, {D + '/moved'!r})",
            bwrap_only=True,
        ),
        A("mkdir_host", fs, f"import os; os.mkdir({D + '/pwned_dir'!r})", bwrap_only=True),
        A("rmtree_host", fs, f"import shutil; shutil.rmtree({D!r})", bwrap_only=True),
        A(
            "proc_root_write",
            fs,
            f"open('/proc/1/root' + {D + '/pwned_proc'!r}, 'w').write('x')",
            bwrap_only=True,
        ),
        A(
            "symlink_escape",
            fs,
            f"import os; os.symlink('/', 'root_link'); open('root_link' + {D + '/pwned_link'!r}, 'w').write('x')",
            bwrap_only=True,
        ),
        A(
            "write_repo",
            fs,
            f"open({str(Path(humaneval.__file__).parent) + '/pwned_repo'!r}, 'w').write('x')",
        ),
        A(
            "disk_fill_many_files",
            fs,
            "import os\nfor i in range(100000):\n    open(f'fill{i}', 'wb').write(b'x' * (1 << 20))",
            bwrap_only=True,
            timeout_s=5,
        ),
        A(
            "disk_fill_one_file",
            fs,
            "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))",
            ("error",),
        ),
        # --- secrets
        A("env_secret", "secrets", "import os; print(dict(os.environ))"),
        A("proc_self_environ", "secrets", "print(open('/proc/self/environ', 'rb').read())"),
        A(
            "proc_parent_environ",
            "secrets",
            "import os\nfor p in os.listdir('/proc'):\n    try:\n        print(open(f'/proc/{p}/environ','rb').read())\n    except Exception:\n        pass",
        ),
        A("root_only_file", "secrets", f"print(open({str(h.secret_dir / 'key.txt')!r}).read())"),
        A(
            "walk_for_secret",
            "secrets",
            textwrap.dedent(
                f"""
                import os
                for top in ('/tmp', '/root', '/home', '/work', {str(h.secret_dir)!r}):
                    for root, dirs, files in os.walk(top):
                        for f in files:
                            try:
                                data = open(os.path.join(root, f), 'rb').read(200)
                                if b'dllm-secret' in data:
                                    print(data)
                            except Exception:
                                pass
                """
            ),
            timeout_s=5,
        ),
        A("read_shadow", "secrets", "print(open('/etc/shadow').read())"),
        # --- network
        A(
            "tcp_loopback",
            "network",
            f"import socket; socket.create_connection(('127.0.0.1', {h.tcp_port}), timeout=1).send(b'x')",
            bwrap_only=True,
        ),
        A(
            "tcp_host_ip",
            "network",
            f"import socket; socket.create_connection((socket.gethostbyname(socket.gethostname()), {h.tcp_port}), timeout=1)",
            bwrap_only=True,
        ),
        A(
            "udp_loopback",
            "network",
            f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', {h.udp_port}))",
            bwrap_only=True,
        ),
        A(
            "abstract_unix",
            "network",
            f"import socket; s = socket.socket(socket.AF_UNIX); s.connect('\\0{h.abstract_name}')",
            bwrap_only=True,
        ),
        A(
            "path_unix",
            "network",
            f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(h.unix_path)!r})",
            bwrap_only=True,
        ),
        # --- orphans
        A("fork_orphan", "processes", "import os, time\nif os.fork() == 0:\n    time.sleep(30)"),
        A(
            "double_fork_setsid",
            "processes",
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(30)\n    os._exit(0)",
        ),
        A(
            "setsid_ignore_signals",
            "processes",
            "import os, signal, time\nif os.fork() == 0:\n    os.setsid()\n    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n        signal.signal(s, signal.SIG_IGN)\n    time.sleep(30)",
        ),
        A(
            "popen_new_session",
            "processes",
            "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], start_new_session=True)",
        ),
        A(
            "orphan_holds_stdout",
            "processes",
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\nprint('parent done')",
        ),
        A(
            "fork_bomb",
            "processes",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
            timeout_s=2,
        ),
        A(
            "setsid_fork_bomb",
            "processes",
            "import os\nwhile True:\n    try:\n        if os.fork() == 0:\n            os.setsid()\n    except OSError:\n        pass",
            timeout_s=2,
        ),
        A(
            "thread_bomb",
            "processes",
            "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(30,)).start()",
            ("error", "timeout", "memory"),
        ),
        # --- signals
        A("kill_parent", "signals", "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"),
        A("kill_all", "signals", "import os, signal; os.kill(-1, signal.SIGKILL)"),
        A("kill_pid1", "signals", "import os, signal; os.kill(1, signal.SIGKILL)"),
        A(
            "kill_every_pid",
            "signals",
            "import os, signal\nfor p in os.listdir('/proc'):\n    if p.isdigit() and int(p) != os.getpid():\n        try:\n            os.kill(int(p), signal.SIGKILL)\n        except Exception:\n            pass",
        ),
        # --- resources
        A(
            "memory_bomb",
            "resources",
            "a = []\nwhile True:\n    a.append(bytearray(10 ** 7))",
            ("memory",),
            timeout_s=15,  # ends at the memory limit; a loaded machine needs time to touch 512 MB
        ),
        A("huge_alloc", "resources", "x = bytearray(10 ** 11)", ("memory",)),
        A("cpu_spin", "resources", "while True:\n    pass", ("timeout",)),
        A("sleep_forever", "resources", "import time; time.sleep(1000)", ("timeout",)),
        A("endless_stdout", "resources", "while True:\n    print('y' * 1000)", ("output_limit",)),
        A(
            "endless_stderr",
            "resources",
            "import sys\nwhile True:\n    sys.stderr.write('e' * 1000)",
            ("output_limit",),
        ),
        A(
            "one_huge_line",
            "resources",
            "import sys\nwhile True:\n    sys.stdout.write('z' * 65536)",
            ("output_limit",),
        ),
        A(
            "closed_stdout",
            "resources",
            "import os, sys\nos.close(1)\nfor i in range(1000):\n    try:\n        print('x' * 100)\n    except Exception:\n        pass",
        ),
    ]
    return out


def _host_state(h: Host) -> dict:
    return {
        p.name: (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(h.dir.iterdir())
        if not stat.S_ISSOCK(p.lstat().st_mode)
    }


def _reset(h: Host) -> None:
    if not h.dir.exists():
        h.dir.mkdir()
        os.chmod(h.dir, 0o777)
    for p in h.dir.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        elif not stat.S_ISSOCK(p.lstat().st_mode):
            p.unlink()
    canary = h.dir / "canary.txt"
    canary.write_text("canary")
    os.chmod(canary, 0o666)
    h.hits.clear()


def _run_corpus(h: Host, isolation: str) -> dict[str, list[str]]:
    """Run every applicable attack; return {'escapes': [...], 'false_passes': [...], 'leftovers': [...]}."""
    report: dict[str, list[str]] = {"escapes": [], "false_passes": [], "leftovers": [], "ran": []}
    repo_canary = Path(humaneval.__file__).parent / "pwned_repo"
    for attack in _corpus(h):
        if isolation == "rlimit" and attack.bwrap_only:
            continue
        _reset(h)
        before = _host_state(h)
        cfg = SandboxConfig(
            timeout_s=attack.timeout_s,
            isolation=isolation,
            file_size_mb=8,
            max_processes=32,
            memory_mb=512,
        )
        verdict = run_python(attack.source, config=cfg)
        report["ran"].append(attack.name)
        assert verdict.isolation == isolation
        time.sleep(0.05)
        text = verdict.stdout + verdict.stderr
        if SECRET in text:
            report["escapes"].append(f"{attack.name}: secret leaked")
        if _host_state(h) != before or not h.dir.exists():
            report["escapes"].append(f"{attack.name}: host files changed")
        if repo_canary.exists():
            repo_canary.unlink()
            report["escapes"].append(f"{attack.name}: wrote into the package")
        if h.hits:
            report["escapes"].append(f"{attack.name}: network contact {h.hits}")
        if attack.statuses is not None and verdict.status not in attack.statuses:
            report["false_passes"].append(
                f"{attack.name}: status {verdict.status}, wanted {attack.statuses}"
            )
        if IS_ROOT:
            assert verdict.uid is not None
            deadline = time.monotonic() + 2.0
            while _sandbox_pids(verdict.uid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if left := _sandbox_pids(verdict.uid):
                report["leftovers"].append(f"{attack.name}: {left}")
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
    return report


@pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap not available (CI installs it)")
def test_hostile_corpus_bwrap(host: Host) -> None:
    report = _run_corpus(host, "bwrap")
    assert len(report["ran"]) >= 40
    assert report["escapes"] == []
    assert report["false_passes"] == []
    assert report["leftovers"] == []


def test_hostile_corpus_rlimit_fallback(host: Host) -> None:
    report = _run_corpus(host, "rlimit")
    assert len(report["ran"]) >= 25
    assert report["escapes"] == []
    assert report["false_passes"] == []
    assert report["leftovers"] == []


# --------------------------------------------------------------------------- forged passes

FORGERIES_HE = {
    "exit_early": "    import sys\n    sys.exit(0)\n",
    "module_exit": "    return None\nimport os\nos._exit(0)\n",
    "always_equal": (
        "    class E:\n        def __eq__(self, o):\n            return True\n"
        "        def __ne__(self, o):\n            return False\n    return E()\n"
    ),
    "fake_result_lines": (
        "    return None\nimport os, sys\nfor i in range(200):\n"
        "    sys.stdout.write('\\n__DLLM_RESULT__ %d True\\n' % i)\nsys.stdout.flush()\nos._exit(0)\n"
    ),
    "patch_repr": "    return None\nimport builtins\nbuiltins.repr = lambda x: 'True'\n",
    "frame_walk": (
        "    import sys, gc\n    f = sys._getframe()\n    while f:\n        for v in f.f_locals.values():\n"
        "            if isinstance(v, list) and v and v is not numbers:\n                return v[0]\n"
        "        f = f.f_back\n    return [o for o in gc.get_objects() if isinstance(o, bool)][:1]\n"
    ),
    "atexit_fake": (
        "    raise ValueError\nimport atexit, sys\n"
        "atexit.register(lambda: [sys.stdout.write('\\n__DLLM_RESULT__ %d False\\n' % i) for i in range(200)])\n"
    ),
    "kill_parent_then_exit": "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n",
    "read_grader_data": (
        "    import gzip, json, glob\n"
        f"    for p in [{str(Path(humaneval.__file__).parent / 'data' / 'humaneval.jsonl.gz')!r}]"
        " + glob.glob('/*/*/humaneval.jsonl.gz'):\n"
        "        for line in gzip.open(p, 'rt'):\n            r = json.loads(line)\n"
        "            if r['entry_point'] == 'has_close_elements':\n"
        "                ns = {}\n                exec(r['prompt'] + r['canonical_solution'], ns)\n"
        "                return ns['has_close_elements'](numbers, threshold)\n"
        "    return None\n"
    ),
}


@pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap not available (CI installs it)")
@pytest.mark.parametrize("name", sorted(FORGERIES_HE))
def test_humaneval_forgeries_do_not_pass(name: str) -> None:
    problem = humaneval.problems("humaneval")["HumanEval/0"]
    result = humaneval.grade(problem, FORGERIES_HE[name], timeout_s=5)
    assert not result.passed, (name, result)
    assert humaneval.grade(problem, problem["canonical_solution"]).passed


def _lcb_stdin_problem() -> dict:
    tests = [
        {"input": f"{a} {b}\n", "output": f"{a + b}\n", "testtype": "stdin"}
        for a, b in [(1, 2), (40, 2), (7, 7)]
    ]
    return {"question_id": "sum", "func_name": None, "tests": tests}


def _lcb_functional_problem() -> dict:
    tests = [
        {"input": f"{a}\n{b}", "output": str(a * b), "testtype": "functional"}
        for a, b in [(3, 4), (5, 6)]
    ]
    return {"question_id": "mul", "func_name": "mul", "tests": tests}


FORGERIES_LCB_STDIN = {
    "frame_read": (
        "import inspect\nfor fr in inspect.stack():\n    for k, v in fr.frame.f_locals.items():\n"
        "        if 'out' in k:\n            print(v)\n"
    ),
    "exit_early": "import sys\nsys.exit(0)",
    "print_nothing": "",
    "gc_walk": "import gc\nfor o in gc.get_objects():\n    if isinstance(o, dict) and 'output' in o:\n        print(o['output'])",
}
FORGERIES_LCB_FUNC = {
    "always_equal": "class Solution:\n    def mul(self, a, b):\n        class E:\n            def __eq__(self, o):\n                return True\n        return E()\n",
    "fake_lines": (
        "import os, sys\nfor i in range(5):\n    sys.stdout.write('\\n__DLLM_LCB__ %d 0\\n' % i)\nsys.stdout.flush()\nos._exit(0)\n"
        "class Solution:\n    pass\n"
    ),
    "patched_json": "import json\njson.dumps = lambda x: '12'\nclass Solution:\n    def mul(self, a, b):\n        return 0\n",
}


@pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap not available (CI installs it)")
def test_livecodebench_forgeries_do_not_pass() -> None:
    stdin_p, func_p = _lcb_stdin_problem(), _lcb_functional_problem()
    assert livecodebench.grade(stdin_p, "a, b = map(int, input().split())\nprint(a + b)").passed
    assert livecodebench.grade(
        func_p, "class Solution:\n    def mul(self, a, b):\n        return a * b\n"
    ).passed
    for name, code in FORGERIES_LCB_STDIN.items():
        assert not livecodebench.grade(stdin_p, code).passed, name
    for name, code in FORGERIES_LCB_FUNC.items():
        assert not livecodebench.grade(func_p, code).passed, name


def test_escape_detectors_are_live(host: Host) -> None:
    """The rlimit fallback does not hide files or the network: the detectors must see that."""
    _reset(host)
    before = _host_state(host)
    write = f"open({str(host.dir / 'pwned_write')!r}, 'w').write('x')"
    run_python(write, config=SandboxConfig(isolation="rlimit", timeout_s=2))
    assert _host_state(host) != before
    _reset(host)
    tcp = f"import socket; socket.create_connection(('127.0.0.1', {host.tcp_port}), timeout=1).close()"
    run_python(tcp, config=SandboxConfig(isolation="rlimit", timeout_s=2))
    deadline = time.monotonic() + 2
    while not host.hits and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.hits


def test_fallback_weakness_is_real_and_bwrap_closes_it() -> None:
    """Reading the grader's own data files forges a pass under rlimit only (documented limit)."""
    problem = humaneval.problems("humaneval")["HumanEval/0"]
    cheat = FORGERIES_HE["read_grader_data"]
    assert humaneval.grade(problem, cheat, config=SandboxConfig(isolation="rlimit")).passed
    if HAS_BWRAP:
        assert not humaneval.grade(problem, cheat, config=SandboxConfig(isolation="bwrap")).passed
