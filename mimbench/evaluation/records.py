"""The JSON record an evaluation leaves behind: what was evaluated, how, and the top-1 it reached.

Every table row is made from these files, so a record carries everything needed to tell two rows apart:
the weights (checkpoint path and content hash, or random init with its seed), the pretraining config's hash,
the protocol and its hyperparameters, the data sizes, the seed, the accuracy and the wall time.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import mimbench
from mimbench.fileio import write_json_atomic
from mimbench.machine import host_info

RECORD_VERSION = 1
# The fields every record has; tests and table scripts rely on them.
REQUIRED_FIELDS = ('protocol', 'checkpoint', 'checkpoint_sha256', 'init', 'config_hash', 'seed', 'accuracy',
                   'wall_time_s', 'hparams')


def make_record(*, protocol: str, loaded, seed: int, accuracy: float, wall_time_s: float, hparams: dict,
                **extra) -> dict:
    """A record dict for ``loaded`` (a :class:`~mimbench.evaluation.encoder.LoadedEncoder`).

    ``accuracy`` is top-1 in percent on the evaluation split; ``extra`` adds fields (data sizes, feature
    timings, the eval config used).
    """
    record = dict(
        protocol=protocol,
        checkpoint=loaded.checkpoint,
        checkpoint_sha256=loaded.checkpoint_sha256,
        init=loaded.init,
        config=loaded.config_name,
        config_hash=loaded.config_hash,
        seed=seed,
        accuracy=round(float(accuracy), 4),
        wall_time_s=round(float(wall_time_s), 2),
        hparams=hparams,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        host=host_info(),
        mimbench_version=mimbench.__version__,
        record_version=RECORD_VERSION,
    )
    record.update(extra)
    return record


def write_record(record: dict, path: str | os.PathLike) -> Path:
    """Write ``record`` as JSON to ``path`` atomically: a reader sees the old file or the whole new one."""
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise ValueError(f'record lacks {", ".join(missing)}')
    return write_json_atomic(path, record, indent=2, sort_keys=False)


def read_record(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)
