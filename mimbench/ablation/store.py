"""The results store: one JSON file per finished cell, named by the cell's key.

A record is written to a temporary file in the same directory and moved into place with ``os.replace``, so a
reader (or a sweep restarted after a crash) sees either no record or a whole one, never a torn file. One file
per cell also lets parallel workers and cluster jobs write without a lock. Cells are keyed by the hash of
their resolved config and seed, so a cell shared by two axes (every axis's default row is the same run) is
trained once.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mimbench.fileio import copy_once, read_json, write_json_atomic

STORE_VERSION = 1


class ResultStore:
    """``root/<cell key>.json`` per finished cell.

    Example::

        store = ResultStore('docs/results/ablation')
        store.put({'key': 'a1b2c3', 'metrics': {...}, ...})
        store.get('a1b2c3')['metrics']
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f'{key}.json'

    def get(self, key: str) -> dict | None:
        return read_json(self.path(key))

    def put(self, record: dict) -> Path:
        if 'key' not in record:
            raise ValueError('a store record needs its cell key')
        return write_json_atomic(self.path(record['key']), dict(record, store_version=STORE_VERSION))

    def keep_file(self, path: str | os.PathLike) -> str:
        """Keep a copy of the file ``path`` in the store, named by its content: ``files/<sha256[:16]><suffix>``.
        Weight files that cells read (a tokenizer) live under work_dirs/, which is not committed; the copy is,
        so the exact file outlives the machine that made it. Returns the copy's path relative to the store;
        a file kept before is not copied again."""
        from mimbench.evaluation.encoder import file_sha256
        src = Path(path)
        rel = Path('files') / f'{file_sha256(src)[:16]}{src.suffix}'
        copy_once(src, self.root / rel)
        return rel.as_posix()

    def records(self) -> dict[str, dict]:
        """Every record, by key (temporary files of an interrupted write are ignored)."""
        if not self.root.is_dir():
            return {}
        return {p.stem: read_json(p) for p in sorted(self.root.glob('*.json')) if not p.name.startswith('.')}


def merge_record(ours: dict | None, theirs: dict) -> tuple[str, dict | None, str]:
    """How a record of another store's copy of a cell joins ours: ``(outcome, record to write or None, why)``.

    The outcomes: 'new' (we lack the cell), 'same', 'kept' (ours holds everything theirs does), 'extended'
    (theirs, or the union of both, adds evaluation columns to the same pretraining run: a cell evaluated further
    in another checkout, fine-tuned say) and 'conflict' (two pretraining runs of one cell, or one column with
    two results: nothing is written, since mixing them would put one run's numbers under another's). Two records
    are the same run when their ``pretrain`` summaries (checkpoint, iterations, CPU time) are equal.
    """
    if ours is None:
        return 'new', theirs, ''
    if ours == theirs:
        return 'same', None, ''
    if ours.get('pretrain') != theirs.get('pretrain'):
        return 'conflict', None, 'two pretraining runs of this cell (their pretrain summaries differ)'
    mine, other = ours.get('metrics') or {}, theirs.get('metrics') or {}
    clash = sorted(c for c in mine.keys() & other.keys() if mine[c] != other[c])
    if clash:
        return 'conflict', None, f'column {", ".join(clash)} holds two different results'
    if other.keys() <= mine.keys():
        return 'kept', None, ''
    base = theirs if mine.keys() <= other.keys() else ours
    return 'extended', dict(base, metrics={**mine, **other}), ''


def merge_stores(theirs: ResultStore, ours: ResultStore) -> dict[str, list[str]]:
    """Bring the records of ``theirs`` (a store another checkout or machine filled) into ``ours`` by
    :func:`merge_record`, with the weight files their records keep; returns outcome -> keys (a conflict's
    entry says why). Only new and extended records are written."""
    done: dict[str, list[str]] = {}
    mine = ours.records()
    for key, record in theirs.records().items():
        if not record:
            continue
        outcome, merged, why = merge_record(mine.get(key), record)
        if merged is not None:
            for rel in (merged.get('weight_files') or {}).values():
                if (theirs.root / rel).is_file():
                    copy_once(theirs.root / rel, ours.root / rel)
            write_json_atomic(ours.path(key), merged)
        done.setdefault(outcome, []).append(f'{key}: {why}' if why else key)
    return done


def code_version(repo: str | os.PathLike | None = None) -> str:
    """``git describe`` of the code that made a record, ``-dirty`` when code had uncommitted changes.

    Changes under ``docs/`` do not count: a sweep writes its records and tables there, so a cell that starts
    while another cell's record is not yet committed would otherwise be marked dirty on unchanged code.
    """
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(['git', 'describe', '--always', '--abbrev=12'], cwd=repo,
                             capture_output=True, text=True, timeout=10)
        version = out.stdout.strip()
        if not version:
            return 'unknown'
        changed = subprocess.run(['git', 'diff', '--quiet', 'HEAD', '--', '.', ':(exclude)docs'], cwd=repo,
                                 capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 'unknown'
    return version + ('-dirty' if changed.returncode == 1 else '')
