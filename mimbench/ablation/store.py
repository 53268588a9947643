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


def pretrain_hosts(record: dict) -> list[dict]:
    """The machines that pretrained a record's cell, in order, each ``host_info()`` with the iteration it took
    over at (``from_iter``; see :class:`~mimbench.engine.hooks.TrainClockHook`); ``[]`` for a cell without
    pretraining and for records from before the training clock named them."""
    return (record.get('pretrain') or {}).get('hosts') or []


def _same_run(a: dict | None, b: dict | None) -> bool:
    """Whether two ``pretrain`` summaries describe one run: equal but for where the checkpoint lies (a path
    relative to one checkout or absolute in another; a work root may move between checkouts)."""
    def strip(summary):
        if not summary:
            return summary
        return dict(summary, checkpoint=Path(summary['checkpoint']).name if summary.get('checkpoint') else None)
    return strip(a) == strip(b)


def _result(entry: dict) -> tuple:
    # what a column measured; its code_version and wall time say how, and differ for a result reused elsewhere
    return entry.get('accuracy'), entry.get('eval_hash')


def merge_record(ours: dict | None, theirs: dict, current: dict[str, set[str]] | None = None
                 ) -> tuple[str, dict | None, str]:
    """How a record of another store's copy of a cell joins ours: ``(outcome, record to write or None, why)``.

    The outcomes: 'new' (we lack the cell), 'same', 'kept' (ours holds every result theirs does), 'extended'
    (the same pretraining run with results ours lacks: a cell evaluated further in another checkout,
    fine-tuned say, or re-evaluated under the present recipe) and 'conflict' (two pretraining runs of one cell,
    or one column with two results of the same recipe: nothing is written, since mixing them would put one
    run's numbers under another's). ``current``: per column, the eval hashes of the present recipe
    (``execute.current_eval_hashes``); where one side's result of a column is current and the other's is not,
    the current one is taken, as a sweep would re-evaluate the stale one. The merged record's other fields are
    the later-finished side's, its timers the larger of the two (the work behind the columns each side added
    is not known apart).
    """
    if ours is None:
        return 'new', theirs, ''
    if ours == theirs:
        return 'same', None, ''
    if not _same_run(ours.get('pretrain'), theirs.get('pretrain')):
        return 'conflict', None, 'two pretraining runs of this cell (their pretrain summaries differ)'
    mine, other = ours.get('metrics') or {}, theirs.get('metrics') or {}
    merged, clash, gained = dict(mine), [], False
    for column, entry in other.items():
        held = mine.get(column)
        if held is None:
            merged[column], gained = entry, True
        elif _result(held) != _result(entry):
            now = (current or {}).get(column, set())
            theirs_now, ours_now = entry.get('eval_hash') in now, held.get('eval_hash') in now
            if theirs_now and not ours_now:
                merged[column], gained = entry, True
            elif current is None or (theirs_now and ours_now):
                clash.append(column)      # two results of one measurement, or nothing to tell them apart by
            # else ours stays: it is current, or both are stale and the next sweep re-evaluates it either way
    if clash:
        return 'conflict', None, f'column {", ".join(sorted(clash))} holds two different results'
    if not gained:
        return 'kept', None, ''
    earlier, later = sorted((ours, theirs), key=lambda r: r.get('finished') or '')
    record = {**earlier, **later, 'pretrain': ours.get('pretrain'), 'metrics': merged}
    for timer in ('driver_seconds', 'extract_seconds'):
        if timer in ours or timer in theirs:
            record[timer] = max(ours.get(timer) or 0.0, theirs.get(timer) or 0.0)
    return 'extended', record, ''


def merge_stores(theirs: ResultStore, ours: ResultStore, current: dict[str, set[str]] | None = None
                 ) -> dict[str, list[str]]:
    """Bring the records of ``theirs`` (a store another checkout or machine filled) into ``ours`` by
    :func:`merge_record`, with the weight files their records keep; returns outcome -> keys (with why, for a
    conflict). Two more outcomes: 'unreadable' (a record of theirs that is not JSON) and 'missing file' (a new
    or extended record whose kept weight file their store lacks: not written). Merge while no sweep writes
    ``ours``: a sweep rewrites its cell's whole record when it finishes."""
    done: dict[str, list[str]] = {}
    for path in sorted(theirs.root.glob('*.json')) if theirs.root.is_dir() else []:
        if path.name.startswith('.'):
            continue
        key = path.stem
        try:
            record, held = read_json(path), ours.get(key)
        except ValueError as err:
            done.setdefault('unreadable', []).append(f'{key}: not a JSON record ({err})')
            continue
        if not isinstance(record, dict) or record.get('key') != key:
            done.setdefault('unreadable', []).append(f'{key}: not a record of this cell')
            continue
        outcome, merged, why = merge_record(held, record, current)
        if merged is not None:
            files = list((merged.get('weight_files') or {}).values())
            if lost := [rel for rel in files if not (theirs.root / rel).is_file()
                        and not (ours.root / rel).is_file()]:
                outcome, why = 'missing file', f'its weight file {", ".join(lost)} is in neither store'
            else:
                for rel in files:
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
