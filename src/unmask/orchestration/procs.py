"""Background processes started by us and stopped by their pid (never by name).

Each process starts in its own session (``start_new_session``), so it leads a process group
holding everything it spawns (uvicorn workers, flow-run subprocesses, local Ray). Stopping sends
SIGTERM to that group, waits ``grace`` seconds, then SIGKILLs the group and every descendant
recorded before the signal (the Prefect worker ignores SIGTERM; Ray may re-parent processes).
A recorded ``create_time`` guards against a recycled pid: a process whose start time differs is
not ours and is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

__all__ = ["ProcInfo", "start", "is_running", "descendants", "marked", "stop", "wait_gone",
           "poll"]


@dataclass
class ProcInfo:
    """What we need to find a started process again: pid, its group and its start time."""

    name: str
    pid: int
    pgid: int
    create_time: float
    log: str
    argv: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def start(name: str, argv: Sequence[str], log: str | Path, *, env: Mapping[str, str],
          cwd: str | Path | None = None) -> ProcInfo:
    """Start ``argv`` in a new session, stdout+stderr appended to ``log``."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env), cwd=cwd, start_new_session=True,
        )
    return ProcInfo(name, proc.pid, os.getpgid(proc.pid), psutil.Process(proc.pid).create_time(),
                    str(log), list(argv))


def _ours(info: ProcInfo) -> psutil.Process | None:
    try:
        p = psutil.Process(info.pid)
        if abs(p.create_time() - info.create_time) > 1.0:
            return None  # the pid was recycled
        return p if p.status() != psutil.STATUS_ZOMBIE else None
    except psutil.NoSuchProcess:
        return None


def is_running(info: ProcInfo) -> bool:
    """Whether the recorded process is still alive (and is the one we started)."""
    return _ours(info) is not None


def _recycled(info: ProcInfo) -> bool:
    """The pid now belongs to a process started at another time (so the group is not ours)."""
    try:
        return abs(psutil.Process(info.pid).create_time() - info.create_time) > 1.0
    except psutil.NoSuchProcess:
        return False


def descendants(info: ProcInfo) -> list[psutil.Process]:
    """The live process and all its descendants, plus live members of its process group
    (a group id cannot be reused while a member lives, so members of a dead leader's group are
    still ours; nothing is ours once the pid was recycled)."""
    if _recycled(info):
        return []
    found: dict[int, psutil.Process] = {}
    p = _ours(info)
    if p is not None:
        found[p.pid] = p
        try:
            for c in p.children(recursive=True):
                found[c.pid] = c
        except psutil.NoSuchProcess:
            pass
    for q in psutil.process_iter(["pid"]):
        try:
            if (q.pid not in found and os.getpgid(q.pid) == info.pgid
                    and q.create_time() >= info.create_time - 1.0):
                found[q.pid] = q
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return list(found.values())


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` s; the processes still alive (zombies count as gone)."""
    _, alive = psutil.wait_procs(list(procs), timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def marked(key: str, value: str) -> list[psutil.Process]:
    """Live processes whose environment has ``key=value`` (an id the starter put there: every
    descendant inherits it, even one that left the process group or was re-parented)."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid != os.getpid() and p.environ().get(key) == value:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def stop(info: ProcInfo, grace: float = 10.0,
         extra: Sequence[psutil.Process] = ()) -> list[int]:
    """Stop the process, its group and its descendants (plus ``extra`` processes): SIGTERM,
    then SIGKILL after ``grace``. Returns the pids that were signalled."""
    procs = descendants(info)
    procs += [p for p in extra if p.pid not in {q.pid for q in procs}]
    if not procs:
        return []
    if _ours(info) is not None:
        _signal_group(info.pgid, signal.SIGTERM)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    alive = wait_gone(procs, grace)
    if alive:
        if _ours(info) is not None:
            _signal_group(info.pgid, signal.SIGKILL)
        for p in alive + [q for q in descendants(info) if q not in alive]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        wait_gone(alive, 5.0)
    return [p.pid for p in procs]


def poll(url: str, timeout: float, *, proc: ProcInfo | None = None, interval: float = 0.5,
         accept=lambda body: True) -> bool:
    """GET ``url`` until it answers 200 (and ``accept(body)``), the process dies, or
    ``timeout`` s pass."""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not is_running(proc):
            return False
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200 and accept(r.read()):
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(interval)
    return False
