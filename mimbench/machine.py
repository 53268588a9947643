"""Facts about the machine code runs on, for records and for choices that depend on the CPU."""
from __future__ import annotations

import platform


def cpuinfo_field(name: str) -> str | None:
    """The value of ``name`` (e.g. ``'model name'``, ``'flags'``) for the first CPU in ``/proc/cpuinfo``, or
    None where there is no such file or field (not Linux)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere, which may be empty)."""
    return cpuinfo_field('model name') or platform.processor()
