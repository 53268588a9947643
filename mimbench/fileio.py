"""Files that are never half-written: results, records and clocks are written to a temporary file in the
same directory and renamed over the old one, so a reader (or a run restarted after a crash) sees the old
file or the whole new one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: dict, indent: int = 1, sort_keys: bool = True) -> Path:
    """``data`` as JSON (non-JSON values as ``str``), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + '\n')


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when there is no such file."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
