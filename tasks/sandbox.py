"""The one code sandbox: every code grader and RL reward runs untrusted programs through here.

Each program runs in a fresh ``python -I -B`` process with an empty environment, in its own
session and process group, under resource limits (address space, CPU seconds, processes, file
size, core dumps), a wall-clock timeout and a cap on the bytes it may print. The whole group is
killed and reaped afterwards. Expected outputs and comparisons never enter the child: graders
send inputs and read outputs back. Two isolation levels exist and every verdict says which one
was used:

* ``bwrap`` (bubblewrap, Debian package ``bubblewrap``): new user, PID, network, IPC, UTS and
  cgroup namespaces, no host files except read-only ``/usr`` and the interpreter, a size-capped
  tmpfs as the only writable place, all capabilities dropped, ``--die-with-parent``. When the
  grader runs as root each run gets its own unprivileged uid (``UID_BASE`` + slot) so that the
  process limit holds per run and leftovers are found by uid.
* ``rlimit`` (fallback): the same limits, process group and, as root, the per-run uid (every
  process of that uid is killed after the run); not as root, a child-subreaper sweep kills
  orphans that left the group. It does NOT hide host files or the network (a program can read
  the grader's data files: tests/test_hostile.py shows it). It is used only when the caller
  allows it explicitly (``isolation="rlimit"``, ``allow_unsandboxed=True`` or
  ``DLLM_SANDBOX_ALLOW_UNSANDBOXED=1``); ``isolation="auto"`` otherwise refuses to run when
  bubblewrap does not work.

The grading process makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``) so that
orphans of a run are re-parented to it and can be killed and reaped.

    from dllm_eval.tasks.sandbox import run_python
    verdict = run_python("print(input()[::-1])", stdin="abc\\n")
    verdict.status, verdict.stdout, verdict.isolation   # 'ok', 'cba\\n', 'bwrap'
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import functools
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ISOLATION_LEVELS",
    "STATUSES",
    "SandboxConfig",
    "SandboxUnavailableError",
    "Verdict",
    "bwrap_available",
    "resolve_isolation",
    "run_python",
]

ISOLATION_LEVELS = ("auto", "bwrap", "rlimit")
STATUSES = ("ok", "error", "timeout", "memory", "output_limit")
NOBODY = 65534
# As root, each run gets its own unprivileged uid from this pool, so that RLIMIT_NPROC is per run
# and every leftover of a run can be found (and killed) by its uid without touching other runs.
UID_BASE = 61000
UID_POOL = 256
_ALLOW_ENV = "DLLM_SANDBOX_ALLOW_UNSANDBOXED"
_PR_SET_CHILD_SUBREAPER = 36


class SandboxUnavailableError(RuntimeError):
    """Raised when no sandbox of the requested strength can run on this machine."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and isolation for one sandboxed run.

    Attributes:
        timeout_s: wall-clock limit in seconds; the process group is killed when it passes.
        cpu_s: CPU-seconds limit (RLIMIT_CPU); default ``ceil(timeout_s) + 1``.
        memory_mb: address-space limit (RLIMIT_AS) in MiB.
        max_processes: process/thread limit (RLIMIT_NPROC) of the sandbox user.
        file_size_mb: largest file the program may write (RLIMIT_FSIZE) and, under bwrap, the
            size of its only writable tmpfs.
        output_bytes: stdout + stderr bytes kept; more kills the program (status output_limit).
        isolation: ``auto`` (bwrap, else refuse unless allowed), ``bwrap`` or ``rlimit``.
        allow_unsandboxed: let ``auto`` fall back to ``rlimit`` when bwrap does not work
            (default: env ``DLLM_SANDBOX_ALLOW_UNSANDBOXED=1``).
        python: interpreter for the program (default: this Python's base interpreter, or a
            system ``python3`` when the sandbox user cannot read it).
    """

    timeout_s: float = 10.0
    cpu_s: int | None = None
    memory_mb: int = 1024
    max_processes: int = 32
    file_size_mb: int = 16
    output_bytes: int = 1 << 20
    isolation: str = "auto"
    allow_unsandboxed: bool | None = None
    python: str | None = None

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_LEVELS:
            raise ValueError(
                f"isolation={self.isolation!r} is not valid; accepted: {', '.join(ISOLATION_LEVELS)}"
            )
        positive = {
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "file_size_mb": self.file_size_mb,
            "output_bytes": self.output_bytes,
        }
        if self.cpu_s is not None:
            positive["cpu_s"] = self.cpu_s
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r} is not valid; accepted: a positive number")

    @property
    def effective_cpu_s(self) -> int:
        return int(self.cpu_s) if self.cpu_s is not None else int(self.timeout_s) + 2


@dataclass(frozen=True)
class Verdict:
    """Outcome of one sandboxed run (``status`` is one of :data:`STATUSES`)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    isolation: str
    wall_s: float
    uid: int | None = None  # the private uid the run used (grader running as root), else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- environment probes


def _is_root() -> bool:
    return os.geteuid() == 0


def _readable_by_others(path: str) -> bool:
    """True when every ancestor directory is world-executable and the file world-readable."""
    p = Path(path).resolve()
    try:
        if not p.stat().st_mode & stat.S_IROTH:
            return False
        for parent in p.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _default_python(drop_to_nobody: bool) -> str:
    base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    if not drop_to_nobody or _readable_by_others(base):
        return base
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if os.path.exists(cand) and _readable_by_others(cand):
            return os.path.realpath(cand)
    raise SandboxUnavailableError(
        f"the sandbox user (uid {NOBODY}) cannot read the interpreter {base}; pass "
        "SandboxConfig(python=...) with a world-readable python3"
    )


def _python_prefix(python: str) -> str:
    """Install prefix of an interpreter (``/usr`` for ``/usr/bin/python3``)."""
    return str(Path(python).resolve().parent.parent)


def _bwrap_args(python: str, prog_dir: str, tmp_bytes: int) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError("bubblewrap (bwrap) is not installed")
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += ["--clearenv", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = _python_prefix(python)
    if not prefix.startswith("/usr"):
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    args += ["--ro-bind", prog_dir, "/sandbox", "--chdir", "/tmp"]
    return args


@functools.lru_cache(maxsize=4)
def _bwrap_works(python: str, drop: bool) -> tuple[bool, str]:
    if shutil.which("bwrap") is None:
        return False, "bwrap is not installed (apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="dllm-bwrap-probe-") as d:
        os.chmod(d, 0o755)
        cmd = _bwrap_args(python, d, 1 << 20) + [python, "-I", "-c", "print('ok')"]
        kw = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if drop else {}
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=30, env={}, **kw)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"bwrap failed to start: {exc}"
    if out.returncode != 0 or out.stdout.strip() != b"ok":
        return False, f"bwrap does not work here: {out.stderr.decode(errors='replace').strip()}"
    return True, "ok"


def bwrap_available(python: str | None = None) -> bool:
    """True when bubblewrap is installed and can start a sandboxed interpreter here."""
    drop = _is_root()
    return _bwrap_works(python or _default_python(drop), drop)[0]


def resolve_isolation(config: SandboxConfig) -> str:
    """The isolation level a run with ``config`` will use (``bwrap`` or ``rlimit``), or raise."""
    drop = _is_root()
    python = config.python or _default_python(drop)
    if config.isolation == "rlimit":
        return "rlimit"
    ok, why = _bwrap_works(python, drop)
    if ok:
        return "bwrap"
    if config.isolation == "bwrap":
        raise SandboxUnavailableError(why)
    allow = config.allow_unsandboxed
    if allow is None:
        allow = os.environ.get(_ALLOW_ENV, "") in ("1", "true", "yes")
    if not allow:
        raise SandboxUnavailableError(
            f"{why}. Refusing to run untrusted code without a sandbox; install bubblewrap, or "
            f"allow the weaker rlimit-only isolation explicitly (isolation='rlimit', "
            f"allow_unsandboxed=True or {_ALLOW_ENV}=1)"
        )
    return "rlimit"


# --------------------------------------------------------------------------- running


def _limits_preexec(config: SandboxConfig, nproc: int | None):
    mem = int(config.memory_mb) << 20
    fsize = int(config.file_size_mb) << 20
    cpu = config.effective_cpu_s

    def preexec() -> None:  # runs in the child between fork and exec: keep it minimal
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return preexec


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, session id, uid) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        fields = data[data.rindex(b")") + 2 :].split()
        uid = os.stat(f"/proc/{pid}").st_uid
    except (OSError, ValueError):
        return None
    return int(fields[1]), int(fields[3]), uid


_ACTIVE: set[int] = set()  # pids of sandbox runs in progress (never swept)
_SLOTS_LOCK = threading.Lock()
_SLOTS_HELD: dict[int, int] = {}  # uid -> fd of its lock file (held while the run lasts)
_UID_LOCK_DIR = Path(tempfile.gettempdir()) / "dllm-sandbox-uids"


def _acquire_uid() -> int:
    """A pool uid no other run (in any process) holds: an exclusive flock on its lock file."""
    _UID_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    start = (os.getpid() * 7) % UID_POOL
    with _SLOTS_LOCK:
        for k in range(UID_POOL):
            uid = UID_BASE + (start + k) % UID_POOL
            if uid in _SLOTS_HELD:
                continue
            fd = os.open(_UID_LOCK_DIR / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if _pids_of_uid(uid):  # leftovers of a crashed grader: clean before reuse
                _kill_uid(uid)
            _SLOTS_HELD[uid] = fd
            return uid
    raise SandboxUnavailableError(f"more than {UID_POOL} concurrent sandbox runs on this machine")


def _release_uid(uid: int) -> None:
    with _SLOTS_LOCK:
        fd = _SLOTS_HELD.pop(uid)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    pids.append(int(name))
            except OSError:
                pass
    return pids


def _kill_uid(uid: int) -> None:
    """Kill every process of a run's private uid (kill(-1) as that uid), until none is left."""
    for _ in range(20):
        pids = _pids_of_uid(uid)
        if not pids:
            return
        subprocess.run(
            ["/bin/kill", "-KILL", "-1"],
            user=uid,
            group=uid,
            extra_groups=[],
            env={},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        _sweep_adopted(uid)
        time.sleep(0.01)


def _sweep_adopted(sandbox_uid: int | None) -> None:
    """Kill and reap orphans of finished runs that were re-parented to this (subreaper) process.

    Orphans are recognised by the sandbox uid (runs as root) or, otherwise, by a session other
    than ours (every run starts a new session); runs still in progress are left alone.
    """
    me, my_sid = os.getpid(), os.getsid(0)
    for _ in range(50):
        victims = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            if int(name) in _ACTIVE:
                continue
            info = _proc_stat(int(name))
            if info is None or info[0] != me:
                continue
            ppid, sid, uid = info
            if (sandbox_uid is not None and uid == sandbox_uid) or (
                sandbox_uid is None and sid != my_sid and uid == os.geteuid()
            ):
                victims.append(int(name))
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in victims:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


@functools.lru_cache(maxsize=1)
def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _classify(rc: int | None, stderr: str, timed_out: bool, over_output: bool) -> str:
    if over_output:
        return "output_limit"
    if timed_out or rc == -signal.SIGXCPU:
        return "timeout"
    if rc == 0:
        return "ok"
    tail = stderr[-4000:]
    if "MemoryError" in tail or "Cannot allocate memory" in tail:
        return "memory"
    return "error"


def run_python(
    source: str,
    stdin: str | bytes | None = None,
    config: SandboxConfig | None = None,
    **overrides,
) -> Verdict:
    """Run ``source`` as ``python -I -B main.py`` in the sandbox and return its :class:`Verdict`.

    ``overrides`` are :class:`SandboxConfig` fields (``timeout_s=2`` ...); unknown names raise.
    """
    if config is None:
        config = SandboxConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    drop = _is_root()
    python = config.python or _default_python(drop)
    isolation = resolve_isolation(config)
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")

    with tempfile.TemporaryDirectory(prefix="dllm-sandbox-") as prog_dir:
        os.chmod(prog_dir, 0o755)
        prog = Path(prog_dir) / "main.py"
        prog.write_text(source, encoding="utf-8")
        os.chmod(prog, 0o644)
        kw: dict = {}
        run_uid = _acquire_uid() if drop else None
        if run_uid is not None:
            kw = {"user": run_uid, "group": run_uid, "extra_groups": []}
        if isolation == "bwrap":
            cmd = _bwrap_args(python, prog_dir, int(config.file_size_mb) << 20)
            cmd += [python, "-I", "-B", "/sandbox/main.py"]
            cwd = "/"
        else:
            work = Path(prog_dir) / "work"
            work.mkdir()
            if run_uid is not None:
                os.chown(work, run_uid, run_uid)
            cmd = [python, "-I", "-B", str(prog)]
            cwd = str(work)
        nproc = config.max_processes if (drop or isolation == "bwrap") else None
        env: dict[str, str] = {}
        _become_subreaper()
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_limits_preexec(config, nproc),
                **kw,
            )
            _ACTIVE.add(proc.pid)
            try:
                out, err, timed_out, over = _pump(proc, data, config, start)
                if timed_out or over or proc.poll() is None:
                    _kill_group(proc)
                try:  # a program that exited on its own: let bwrap tear its namespace down
                    rc = proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    rc = proc.wait()
            finally:
                _ACTIVE.discard(proc.pid)
            wall = time.monotonic() - start
            if run_uid is not None:
                _kill_uid(run_uid)
            else:
                _sweep_adopted(None)
        finally:
            if run_uid is not None:
                _release_uid(run_uid)
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    status = _classify(rc, stderr, timed_out, over)
    return Verdict(status, rc, stdout, stderr, isolation, round(wall, 4), run_uid)


def _pump(
    proc: subprocess.Popen, data: bytes, config: SandboxConfig, start: float
) -> tuple[bytes, bytes, bool, bool]:
    """Feed stdin and collect stdout/stderr until EOF, the timeout or the output cap.

    Once the program itself has exited, leftovers still holding the pipes get 0.2 s more.
    """
    sel = selectors.DefaultSelector()
    out, err = bytearray(), bytearray()
    bufs = {proc.stdout: out, proc.stderr: err}
    for f in bufs:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    pending = memoryview(data)
    if data:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    total, timed_out, over = 0, False, False
    deadline = start + float(config.timeout_s)
    readers = 2
    exited_at: float | None = None
    while readers and not over:
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if now >= deadline:
            timed_out = exited_at is None
            break
        if exited_at is not None and now - exited_at > 0.2:
            break
        for key, _ in sel.select(timeout=min(deadline - now, 0.05)):
            f = key.fileobj
            if f is proc.stdin:
                try:
                    n = os.write(f.fileno(), pending[:65536])
                    pending = pending[n:]
                except BlockingIOError:
                    continue
                except OSError:  # the program closed its stdin
                    pending = pending[:0]
                if not pending:
                    sel.unregister(f)
                    f.close()
                continue
            try:
                chunk = os.read(f.fileno(), 65536)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(f)
                readers -= 1
                continue
            room = max(config.output_bytes - total, 0)
            bufs[f] += chunk[:room]
            total += len(chunk)
            if total > config.output_bytes:
                over = True
                break
    sel.close()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        try:
            f.close()
        except OSError:
            pass
    return bytes(out), bytes(err), timed_out, over
