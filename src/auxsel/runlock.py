"""One runner per project folder.

Snakemake and DVC each lock their own state, but not each other's: run together in one folder they
delete each other's outputs (a Snakemake run removed `results/selection.json` under a running
`dvc repro`). The runner that starts a run takes `.auxsel/runner.lock` for as long as it lives and
puts a token in its environment; the jobs it starts see the token and go on, anyone else is
refused with the holder's tool, pid, host and start time.

The lock is a `flock` on the file, so the kernel drops it when its process dies however it dies:
a lock left by a killed runner is no lock at all, and the next runner simply takes it (the file's
holder record is overwritten). The file descriptor is not inherited by child processes, so an
orphaned job cannot keep a dead runner's lock alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from auxsel.artifacts import pid_alive
from auxsel.errors import AuxselError

LOCK_FILE = Path(".auxsel/runner.lock")
RUNNER_ENV = "AUXSEL_RUNNER"  # the token of the run a job belongs to
DVC_LOCK = Path(".dvc/tmp/lock")  # DVC's own repo lock (zc.lockfile: a flock, content = pid)

_HELD: dict[Path, Any] = {}  # path -> open file holding the flock (for this process's lifetime)


class RunnerBusy(AuxselError):
    """Another runner holds the project."""


def _try_flock(fh) -> bool:
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(root: Path = Path(".")) -> dict[str, Any] | None:
    """The record the current (or last) holder wrote; None when there is none or it is unreadable."""
    try:
        record = json.loads((Path(root) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "a runner that left no record"
    return f"{record.get('tool')} (pid {record.get('pid')} on {record.get('host')}, since {record.get('started')})"


def acquire(root: Path, tool: str) -> dict[str, Any]:
    """Take the project's lock until this process exits (or `release`); puts the token in the
    environment for the jobs this process starts. Raises RunnerBusy naming the holder."""
    path = Path(root) / LOCK_FILE
    if path.resolve() in _HELD:
        return holder(root) or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open on purpose
    if not _try_flock(fh):
        fh.close()
        raise RunnerBusy(f"{describe(holder(root))} is running in this project ({path}); "
                         "wait for it to finish or stop it, then rerun")
    record = {"tool": tool, "pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": uuid.uuid4().hex}
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps(record) + "\n")
    fh.flush()
    _HELD[path.resolve()] = fh
    os.environ[RUNNER_ENV] = record["token"]
    return record


def release(root: Path) -> None:
    fh = _HELD.pop((Path(root) / LOCK_FILE).resolve(), None)
    if fh is not None:
        fh.close()  # closing the descriptor drops the flock
        os.environ.pop(RUNNER_ENV, None)


@contextlib.contextmanager
def held(root: Path, tool: str) -> Iterator[dict[str, Any]]:
    record = acquire(root, tool)
    try:
        yield record
    finally:
        release(root)


def enter(root: Path, tool: str) -> None:
    """What a job does first: go on inside the run whose token it carries, otherwise take the lock
    itself (a stage started by hand or by DVC) or be refused naming the holder."""
    token = os.environ.get(RUNNER_ENV)
    record = holder(root)
    if token and record and record.get("token") == token:
        return
    acquire(root, tool)


def dvc_running(root: Path) -> str | None:
    """'dvc (pid N)' while a DVC command works in `root`, else None.

    DVC holds its repo lock while it plans and commits, and lets go of it while a stage's command
    runs; then the stage's paths are in its read/write lock (`.dvc/tmp/rwlock`) under DVC's pid."""
    path = Path(root) / DVC_LOCK
    if path.is_file():
        with open(path, "r+", encoding="utf-8") as fh:
            if not _try_flock(fh):
                pid = fh.read().strip()
                return f"dvc (pid {pid or '?'})"
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    try:
        rw = json.loads((Path(root) / DVC_LOCK.with_name("rwlock")).read_text())
        infos = [*rw.get("write", {}).values(), *(i for v in rw.get("read", {}).values() for i in v)]
        pids = sorted({int(i["pid"]) for i in infos})
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    live = [pid for pid in pids if pid_alive(pid)]
    return f"dvc (pid {live[0]})" if live else None
