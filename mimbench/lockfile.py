"""A lock file that names its holder, for work dirs that one process at a time may write.

The lock is a file created with ``O_EXCL`` holding ``host:pid`` and, where the system says it, the process's
start time. Its holder touches it every minute; a lock whose process is gone (same host), whose pid now
belongs to a process started at another time (a later session's process reusing the number of one that was
killed, on a machine whose hostname does not change), or that has not been touched for 15 minutes (a job
killed on another node, whose pid means nothing here) is stale and taken over. Works across terminals,
machines and cluster jobs that share a filesystem.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from mimbench.errors import MimbenchError

HEARTBEAT_S = 60
STALE_S = 15 * 60
CLOCK_SLACK_S = 5 * 60


class LockHeld(MimbenchError):
    """Another live process holds the lock: ``path`` is the lock file, ``holder`` its ``host:pid``."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f'{path} is held by {holder}')
        self.path, self.holder = path, holder


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock file ``path`` for the block (yields it); raise :class:`LockHeld` at once when a live
    process holds it. The file is removed when the block ends, however it ends."""
    lock = Path(path)
    me = f'{socket.gethostname()}:{os.getpid()}'
    started = _start_time(os.getpid())
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _stale(lock):
                lock.unlink(missing_ok=True)
                continue
            holder = _holder(lock.read_text()) if lock.exists() else ''
            raise LockHeld(lock, holder or 'another process') from None
        with os.fdopen(fd, 'w') as f:
            f.write(me + (f' {started}' if started else ''))
        break
    else:   # another process took the stale lock over between our unlink and our create
        raise LockHeld(lock, 'another process')
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(lock)
    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        yield lock
    finally:
        stop.set()
        lock.unlink(missing_ok=True)


def live_holder(path: str | os.PathLike) -> str | None:
    """The ``host:pid`` holding the lock file ``path`` when it is held by a live process (what
    :func:`hold_lock` would refuse), else None, also when the file cannot be read. Takes nothing over."""
    try:
        text, age = _read(Path(path))
    except OSError:
        return None
    return None if _stale_text(text, age) else (_holder(text) or 'another process')


def _read(lock: Path) -> tuple[str, float]:
    """The lock's text and its age in seconds since its holder last touched it."""
    return lock.read_text().strip(), time.time() - lock.stat().st_mtime


def _holder(text: str) -> str:
    return text.split(' ')[0].strip()


def _stale(lock: Path) -> bool:
    try:
        text, age = _read(lock)
    except FileNotFoundError:
        return True
    return _stale_text(text, age)


def _stale_text(text: str, age: float) -> bool:
    """Whether a lock holding ``text``, last touched ``age`` seconds ago, is stale (see the module docstring)."""
    holder, _, started = text.partition(' ')
    host, _, pid = holder.partition(':')
    if host == socket.gethostname() and pid.isdigit():
        if not _alive(int(pid)):
            return True
        now = _start_time(int(pid))
        if started and now:
            return now != started
        # a lock without a start time (older code): the holder wrote it after it started and touches it every
        # minute, so a lock last touched before the process with its pid started was another process's. Boot
        # time plus ticks drifts from the wall clock by seconds on a VM: only a clear margin counts
        begun = _start_epoch(now)
        return begun is not None and time.time() - age < begun - CLOCK_SLACK_S
    return age > STALE_S


def _start_epoch(ticks: str | None) -> float | None:
    """A :func:`_start_time` in seconds since the epoch (the boot time from ``/proc/stat``); None if unknown."""
    if not ticks:
        return None
    try:
        boot = next(line for line in Path('/proc/stat').read_text().splitlines() if line.startswith('btime '))
    except (OSError, StopIteration):
        return None
    return int(boot.split()[1]) + int(ticks) / os.sysconf('SC_CLK_TCK')


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22); None
    where the system does not say."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(')') + 2:].split()     # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:    # exists, owned by someone else
        return True
    return True
