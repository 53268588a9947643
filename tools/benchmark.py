"""Train-step and forward speed, GFLOPs per image and peak memory of a config's pretraining model.

    python tools/benchmark.py configs/mae_vitb.py --batch-size 8
    python tools/benchmark.py configs/mae_micro_cifar10.py --json out.json
    python tools/benchmark.py configs/cae_vitb.py --pixel-target

Prints the figures and the ratio of the achieved training FLOP rate to this machine's fp32 matmul rate.
Run it on an otherwise idle machine: anything else running shares the cores and lowers every figure.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from mimbench.analysis import benchmark_algorithm  # noqa: E402
from mimbench.engine.runner import DictAction, load_config  # noqa: E402
from mimbench.registry import MODELS  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--batch-size', type=int, help="default: 8 for 224 px inputs, else the config's batch size")
    p.add_argument('--iters', type=int, default=10, help='timed steps (median reported)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    p.add_argument('--device', help='cpu or cuda (default: cuda when available)')
    p.add_argument('--threads', type=int, help='torch intra-op threads (default: torch\'s choice)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    p.add_argument('--pixel-target', action='store_true',
                   help="replace the config's target by raw pixels (measures the model without a tokenizer "
                        "checkpoint, e.g. the ViT-B token configs before an ImageNet tokenizer exists)")
    p.add_argument('--json', help='also write the figures to this file')
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    if args.pixel_target:
        cfg.model.target = dict(type='PixelTarget', normalize=False)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    image_size = cfg.model.encoder.img_size
    batch_size = args.batch_size or (8 if image_size >= 224 else cfg.train_dataloader.batch_size)
    result = benchmark_algorithm(model, image_size, batch_size, warmup=args.warmup, iters=args.iters,
                                 amp=args.amp, device=args.device)
    record = dict(config=args.config, date=date.today().isoformat(), machine=platform.processor() or platform.machine(),
                  threads=torch.get_num_threads(), torch=torch.__version__, **result.as_dict())
    width = max(map(len, record))
    for key, value in record.items():
        print(f'{key:<{width}}  {value:.4g}' if isinstance(value, float) else f'{key:<{width}}  {value}')
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + '\n')


if __name__ == '__main__':
    main()
