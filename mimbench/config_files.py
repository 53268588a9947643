"""Reading config files: :func:`read_config` is ``mmengine.Config.fromfile`` parsed once per process while
the file and the ``_base_`` files it inherits from are unchanged.

An ablation report resolves every cell of every table from a handful of files (about 1,300 cells for the
study's four scales); parsing each time was 25 of the 45 s a ``tools/ablate.py --report`` took. A parse is
reused only while every file it read has the same size and modification time, so an edited config is read
again, also in a worker that has been running for hours."""
from __future__ import annotations

import copy
import os

from mmengine.config import Config

_parsed: dict[str, tuple[tuple, Config]] = {}
_bases: dict[tuple, list[str]] = {}


def read_config(path: str | os.PathLike) -> Config:
    """``Config.fromfile(path)``, as a fresh copy the caller may change."""
    path = os.path.abspath(path)
    stamp = _stamp(path)
    hit = _parsed.get(path)
    if hit is None or hit[0] != stamp:
        hit = (stamp, Config.fromfile(path))
        _parsed[path] = hit
    return copy.deepcopy(hit[1])


def _stamp(path: str, seen: frozenset = frozenset()) -> tuple:
    """(path, size, mtime) of ``path`` and, recursively, of each ``_base_`` file it names. A file that cannot be
    read stamps as None, so that fromfile reports it."""
    try:
        st = os.stat(path)
    except OSError:
        return ((path, None),)
    own = (path, st.st_size, st.st_mtime_ns)
    if path in seen:          # a cycle: fromfile says so
        return (own,)
    bases = _bases.get(own)
    if bases is None:
        try:
            names = Config._get_base_files(path)   # mmengine's own reading of `_base_`, so both agree
        except Exception:  # noqa: BLE001 - unparsable: fromfile raises the error the user should see
            names = []
        bases = [os.path.abspath(os.path.join(os.path.dirname(path), n)) for n in names
                 if isinstance(n, str) and '::' not in n]
        _bases[own] = bases
    return (own,) + tuple(s for base in bases for s in _stamp(base, seen | {path}))
