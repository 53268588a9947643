"""Reading config files: :func:`read_config` is ``mmengine.Config.fromfile`` parsed once per process while
the file and the ``_base_`` files it inherits from are unchanged.

An ablation report resolves every cell of every table from a handful of files (about 1,300 cells for the
study's four scales); parsing each time was 25 of the 45 s a ``tools/ablate.py --report`` took. A parse is
reused only while every file it read has the same bytes, so an edited config is read again, also in a worker
that has been running for hours. A config whose meaning is not in its own bytes and its ``_base_`` files'
(``{{ ... }}`` substitutions such as ``{{$ENV}}``, or ``read_base()`` imports) is parsed every time."""
from __future__ import annotations

import copy
import hashlib
import os

from mmengine.config import Config

_parsed: dict[str, tuple[tuple, Config]] = {}


def read_config(path: str | os.PathLike) -> Config:
    """``Config.fromfile(path)``, as a fresh copy the caller may change."""
    path = os.path.abspath(path)
    stamp = _stamp(path)
    if stamp is None:
        return Config.fromfile(path)
    hit = _parsed.get(path)
    if hit is None or hit[0] != stamp:
        hit = (stamp, Config.fromfile(path))
        _parsed[path] = hit
    return copy.deepcopy(hit[1])


def _stamp(path: str, seen: frozenset = frozenset()) -> tuple | None:
    """(path, sha1 of its bytes) of ``path`` and, recursively, of each ``_base_`` file it names; None when the
    parse may depend on more than these files, or a file cannot be read (fromfile then says why)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return None
    if b'{{' in data or b'read_base' in data:
        return None
    own = (path, hashlib.sha1(data).hexdigest())
    if path in seen:          # a cycle: fromfile says so
        return (own,)
    try:
        names = Config._get_base_files(path)   # mmengine's own reading of `_base_`, so both agree
    except Exception:  # noqa: BLE001 - unparsable: fromfile raises the error the user should see
        return None
    stamps = [own]
    for name in names:
        if not isinstance(name, str) or '::' in name:    # a config of an installed package: not ours to watch
            return None
        base = _stamp(os.path.abspath(os.path.join(os.path.dirname(path), name)), seen | {path})
        if base is None:
            return None
        stamps += base
    return tuple(stamps)
