"""Processes started by us and stopped by pid: group, descendants, SIGTERM-ignoring children,
recycled-pid guard; free ports."""

from __future__ import annotations

import socket
import sys
import time

import psutil

from unmask.orchestration import procs
from unmask.orchestration.env import free_port, port_is_free

# A parent that ignores SIGTERM (like the Prefect worker) with a child that ignores it too.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _child_pids(info, n=1, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [p for p in procs.descendants(info) if p.pid != info.pid]
        if len(kids) >= n:
            return kids
        time.sleep(0.1)
    raise AssertionError("child did not start")


def test_stop_escalates_to_sigkill_and_takes_children(tmp_path):
    info = procs.start("stubborn", [sys.executable, "-c", STUBBORN], tmp_path / "s.log",
                       env={"PATH": "/usr/bin:/bin"})
    kids = _child_pids(info)
    assert procs.is_running(info)
    t = time.monotonic()
    signalled = procs.stop(info, grace=1.0)
    assert time.monotonic() - t < 15
    assert info.pid in signalled and kids[0].pid in signalled
    assert not procs.is_running(info)
    for p in kids:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    assert procs.stop(info) == []  # nothing left: a second stop is a no-op


def test_recycled_pid_is_not_ours(tmp_path):
    info = procs.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                       tmp_path / "x.log", env={})
    try:
        fake = procs.ProcInfo(**{**info.to_dict(), "create_time": info.create_time - 1000})
        assert procs.is_running(info) and not procs.is_running(fake)
        assert procs.stop(fake, grace=0.5) == []  # a different start time: left alone
        assert procs.is_running(info)
    finally:
        procs.stop(info, grace=1.0)
    assert not procs.is_running(info)


def test_marked_finds_processes_by_environment(tmp_path):
    info = procs.start("m", [sys.executable, "-c", "import time; time.sleep(60)"],
                       tmp_path / "m.log", env={"UNMASK_TEST_MARK": "abc123"})
    try:
        assert [p.pid for p in procs.marked("UNMASK_TEST_MARK", "abc123")] == [info.pid]
        assert procs.marked("UNMASK_TEST_MARK", "other") == []
    finally:
        procs.stop(info, grace=1.0)


def test_free_port():
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free(port)
        assert free_port(port) != port  # preferred but taken: another one
    assert free_port(port) == port
