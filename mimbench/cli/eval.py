"""Evaluate a pretrained encoder: linear, attentive or kNN probe on cached frozen features, or fine-tuning.

    python tools/eval.py work_dirs/mae_micro_cifar10/latest.pth --protocol linear
    python tools/eval.py work_dirs/mae_micro_cifar10 --protocol attentive          # a work dir works too
    python tools/eval.py --scratch configs/mae_micro_cifar10.py --protocol finetune   # the from-scratch row
    python tools/eval.py --scratch configs/mae_micro_cifar10.py --protocol linear     # the random-init row
    python tools/eval.py CKPT --protocol finetune --config-eval configs/eval/finetune_vitb.py --data-root DIR
    python tools/eval.py CKPT --benchmark                 # time extraction and the probes (no record written)

Prints the top-1 accuracy and writes a JSON record (default: <work dir>/eval/<protocol>_<ckpt>_seed<seed>.json).
Features are cached in <work dir>/features/, so a second probe of the same checkpoint skips the encoder.
"""
from __future__ import annotations

import argparse
import json
import sys

from mimbench.engine.dist import ends_process_group
from mimbench.engine.runner import DictAction
from mimbench.errors import USER_ERRORS
from mimbench.evaluation import PROTOCOLS, benchmark, evaluate, load_eval_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Evaluate a pretrained encoder.')
    p.add_argument('checkpoint', nargs='?',
                   help='checkpoint file, WORK_DIR/latest.pth, or a work dir (its last checkpoint)')
    p.add_argument('--protocol', choices=PROTOCOLS, help='evaluation protocol')
    p.add_argument('--config', help='pretraining config (default: the one stored in the checkpoint)')
    p.add_argument('--config-eval', help='protocol config (default: configs/eval/<protocol>_micro.py)')
    p.add_argument('--scratch', metavar='CONFIG',
                   help="evaluate a random initialization of CONFIG's encoder instead of a checkpoint")
    p.add_argument('--data-root', help="evaluation data location (replaces the eval config's dataset roots)")
    p.add_argument('--seed', type=int, default=0, help='seed of the probe / fine-tuning (and of a random init)')
    p.add_argument('--out', help='where to write the JSON record')
    p.add_argument('--cache-dir', help='feature cache directory (default: <work dir>/features)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override eval config keys, e.g. epochs=30 base_lr=0.2')
    p.add_argument('--max-iters', type=int, metavar='N',
                   help='fine-tuning only: stop after N iterations, keeping the schedule (smoke runs)')
    p.add_argument('--device', default='auto',
                   help="where extraction, probes and fine-tuning run: auto (a GPU when there is one), cpu, cuda, "
                        "cuda:N")
    p.add_argument('--launcher', choices=('none', 'pytorch'), default='none',
                   help="'pytorch' under torchrun: fine-tuning trains data-parallel (DDP), one process per GPU")
    p.add_argument('--benchmark', action='store_true',
                   help='time feature extraction (60k CIFAR images) and the probes; writes no record')
    p.add_argument('--benchmark-dtypes', nargs='+', default=['bfloat16', 'float32'],
                   choices=('bfloat16', 'float32'), help='--benchmark: the extraction precisions to time '
                   '(the probes run on the features of the first)')
    args = p.parse_args(argv)
    if (args.checkpoint is None) == (args.scratch is None):
        p.error('give a checkpoint or --scratch CONFIG (not both)')
    if not args.benchmark and args.protocol is None:
        p.error('--protocol is required (or --benchmark)')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        if args.benchmark:
            result = benchmark(args.checkpoint, scratch=args.scratch, config=args.config, data_root=args.data_root,
                               seed=args.seed, device=args.device, dtypes=tuple(args.benchmark_dtypes),
                               log=lambda s: print(s, flush=True))
            print(json.dumps(result, indent=2))
            return result
        eval_cfg = load_eval_config(args.protocol, args.config_eval, args.cfg_options)
        with ends_process_group():
            record = evaluate(args.protocol, args.checkpoint, scratch=args.scratch, config=args.config,
                              eval_cfg=eval_cfg, data_root=args.data_root, seed=args.seed, cache_dir=args.cache_dir,
                              out=args.out, max_iters=args.max_iters, device=args.device, launcher=args.launcher,
                              log=lambda s: print(s, flush=True))
    except USER_ERRORS as err:      # bad data, config, checkpoint or command line: one line, not a traceback
        sys.exit(f'error: {err}')
    print(f'{args.protocol} top-1: {record["accuracy"]:.2f}%  ({record["wall_time_s"]:.0f} s; '
          f'record: {record["out"]})')
    return record


if __name__ == '__main__':
    main()
