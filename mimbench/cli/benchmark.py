"""Train-step and forward speed, GFLOPs per image and peak memory of a config's pretraining model, in float32
and in bfloat16 autocast, measured side by side in one run.

    python tools/benchmark.py configs/mae_micro_cifar10.py                 # both precisions; ratio last
    python tools/benchmark.py configs/mae_vitb.py --batch-size 8 --precision bfloat16
    python tools/benchmark.py configs/mae_micro_cifar10.py --attention math flash   # bf16 attention kernels
    python tools/benchmark.py configs/cae_vitb.py --pixel-target --json out.json

Prints each precision's figures, the ratio of its training FLOP rate to this machine's matmul rate in that
precision, and on the last line the bf16 train step's speed over the fp32 one. bf16 runs with the training
step's attention kernel ('auto', see mimbench.engine.precision.attention_kernel) unless --attention names others.
Run it on an otherwise idle machine: anything else running shares the cores and lowers every figure (the
ratio on the last line, measured in one run, suffers least).
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path


import torch

from mimbench.analysis import benchmark_algorithm
from mimbench.analysis.benchmark import bf16_agreement, matmul_gflops
from mimbench.engine.runner import DictAction, load_config
from mimbench.errors import USER_ERRORS
from mimbench.machine import describe, has_native_bfloat16, resolve_device
from mimbench.registry import MODELS


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--batch-size', type=int, help="default: 8 for 224 px inputs, else the config's batch size")
    p.add_argument('--iters', type=int, help='timed steps (median reported; default 10)')
    p.add_argument('--warmup', type=int, help='untimed steps first (default 3)')
    p.add_argument('--precision', choices=('both', 'float32', 'bfloat16'), default='both',
                   help="'both' (default): float32 and bfloat16 autocast side by side, their ratio last")
    p.add_argument('--amp', action='store_true', help='the same as --precision bfloat16')
    p.add_argument('--attention', nargs='+', default=['auto'],
                   help="bf16 attention kernels to time: auto (the trainer's), default (torch's), explicit, "
                        "math, flash, efficient, cudnn")
    p.add_argument('--device', help='cpu or cuda (default: cuda when available)')
    p.add_argument('--compile', action='store_true', help='time torch.compile(model.loss) instead of eager')
    p.add_argument('--threads', type=int, help='torch intra-op threads (default: torch\'s choice)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    p.add_argument('--pixel-target', action='store_true',
                   help="replace the config's target by raw pixels (measures the model without a tokenizer "
                        "checkpoint, e.g. the ViT-B token configs before an ImageNet tokenizer exists)")
    p.add_argument('--profile', type=int, default=0, metavar='STEPS',
                   help='also profile STEPS train steps and print where their time goes (matrix products, '
                        'dtype casts, GELU/softmax/LayerNorm, other; the optimizer step)')
    p.add_argument('--bf16-agreement', type=int, default=0, metavar='STEPS',
                   help='instead of timing: train STEPS steps in float32, in bf16 with torch\'s kernels and in bf16 '
                        'as float32 products (what training runs on a CPU without bf16 units), and print how far '
                        'each run ends from torch\'s bf16 (CPU only; minutes where the CPU has no bf16 units)')
    p.add_argument('--json', help='also write the figures to this file')
    args = p.parse_args(argv)
    if args.bf16_agreement:
        # its runs are fixed (float32, torch's bf16, float32 products) on the CPU: a timing flag would be ignored
        timing = dict(iters=args.iters is not None, warmup=args.warmup is not None,
                      precision=args.precision != 'both', amp=args.amp, attention=args.attention != ['auto'],
                      device=args.device not in (None, 'cpu'), compile=args.compile, profile=bool(args.profile))
        if given := [f'--{flag}' for flag, set_ in timing.items() if set_]:
            sys.exit(f'error: --bf16-agreement trains its own fixed runs on the CPU and takes no {", ".join(given)}; '
                     f'it takes --batch-size, --threads, --cfg-options, --pixel-target and --json')
    args.iters = 10 if args.iters is None else args.iters
    args.warmup = 3 if args.warmup is None else args.warmup

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, args.cfg_options)
        if args.pixel_target:
            cfg.model.target = dict(type='PixelTarget', normalize=False)
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    except USER_ERRORS as err:  # a missing config, a misspelled key, a bad value: one line, not a traceback
        sys.exit(f'error: {err}')
    image_size = cfg.model.encoder.img_size
    if args.bf16_agreement:
        agreement(model, image_size, args)
        return
    batch_size = args.batch_size or (8 if image_size >= 224 else cfg.train_dataloader.batch_size)
    precision = 'bfloat16' if args.amp else args.precision
    runs = ([('float32', None)] if precision in ('both', 'float32') else []) + \
        ([('bfloat16', a) for a in args.attention] if precision in ('both', 'bfloat16') else [])
    try:
        device = resolve_device(args.device or 'auto')
    except USER_ERRORS as err:
        sys.exit(f'error: {err}')
    rates = {name: matmul_gflops(device=device, dtype=getattr(torch, name)) for name in {r[0] for r in runs}}
    records = []
    for dtype, attention in runs:
        result = benchmark_algorithm(model, image_size, batch_size, warmup=args.warmup, iters=args.iters,
                                     amp=dtype == 'bfloat16', device=device, attention=attention or 'auto',
                                     with_matmul=False, compile=args.compile, profile_steps=args.profile)
        result.matmul_gflops = rates[dtype]
        record = dict(config=args.config, date=date.today().isoformat(), machine=describe(device),
                      bf16_units=has_native_bfloat16(device), threads=torch.get_num_threads(),
                      torch=torch.__version__, **result.as_dict())
        records.append(record)
        print(f'--- {result.dtype}')
        width = max(map(len, record))
        for key, value in record.items():
            if key == 'profile':
                if value:
                    print(f'{key:<{width}}  ' + ', '.join(f'{kind} {share:.0%}' for kind, share in value.items()))
                continue
            print(f'{key:<{width}}  {value:.4g}' if isinstance(value, float) else f'{key:<{width}}  {value}')
    if args.json:
        Path(args.json).write_text(json.dumps(records if len(records) > 1 else records[0], indent=2) + '\n')
    fp32 = next((r for r in records if r['dtype'] == 'float32'), None)
    for record in records:
        if fp32 is not None and record is not fp32:
            print(f"{record['dtype']} train step: {record['train_img_per_s']:.1f} img/s, "
                  f"{record['train_img_per_s'] / fp32['train_img_per_s']:.2f}x float32's "
                  f"{fp32['train_img_per_s']:.1f} img/s")


def agreement(model, image_size: int, args) -> None:
    """--bf16-agreement: the figures of :func:`~mimbench.analysis.benchmark.bf16_agreement`, one line a run."""
    batch_size = args.batch_size or 64
    print(f'{describe("cpu")}, bf16 units: {has_native_bfloat16("cpu")}, {torch.get_num_threads()} threads, '
          f'batch {batch_size}, {args.bf16_agreement} AdamW steps from the same weights, images and masks')
    result = bf16_agreement(model, image_size, batch_size, args.bf16_agreement, log=print)
    for name, diff in result['vs bf16 torch'].items():
        print(f"{name:<24} against bf16 torch: largest loss difference {diff['max_loss_diff']:.2e}, "
              f"weights {diff['weight_diff']:.2e} apart (relative)")
    if args.json:
        record = dict(config=args.config, date=date.today().isoformat(), machine=describe('cpu'),
                      bf16_units=has_native_bfloat16('cpu'), threads=torch.get_num_threads(),
                      torch=torch.__version__, batch_size=batch_size, **result)
        Path(args.json).write_text(json.dumps(record, indent=2) + '\n')


if __name__ == '__main__':
    main()
