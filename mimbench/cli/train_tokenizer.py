"""Train the discrete tokenizer that token targets use, then measure it and write the file they load.

    python tools/train_tokenizer.py configs/tokenizer_cifar10.py
    python tools/train_tokenizer.py configs/tokenizer_cifar10.py --resume          # continue a killed run
    python tools/train_tokenizer.py configs/tokenizer_cifar10.py --eval-only       # re-measure the last checkpoint

Training is an ordinary run of the shared runner (checkpoints, ``--resume``, logs in ``work_dirs/<config name>/``).
Afterwards, on un-augmented images of ``tokenizer_eval.split``, it reports the reconstruction error (MSE on the
[0, 1] pixel scale and PSNR) and codebook usage (perplexity of the token distribution, codes never used), and
writes ``<work dir>/tokenizer.pth`` plus ``tokenizer_metrics.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


import torch
from mmengine.dist import get_rank
from mmengine.model import is_model_wrapper

from mimbench.data import unaugmented_split
from mimbench.engine.checkpoint import load_local_checkpoint, pointed_checkpoint
from mimbench.engine.dist import LAUNCHERS, ends_process_group
from mimbench.engine.runner import DictAction, apply_cli, build_runner, load_config
from mimbench.errors import USER_ERRORS
from mimbench.models.tokenizer import codebook_usage
from mimbench.registry import MODELS
from mimbench.targets.token import save_tokenizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a discrete tokenizer for token targets.')
    p.add_argument('config', help='config file, e.g. configs/tokenizer_cifar10.py')
    p.add_argument('--work-dir', help='where logs, checkpoints and tokenizer.pth go (default: work_dirs/<config>)')
    p.add_argument('--data-root', help="dataset location (replaces every dataloader's dataset.root)")
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, help='override config keys')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                   help='continue from CHECKPOINT, or from the latest one in the work dir when none is given')
    p.add_argument('--launcher', choices=LAUNCHERS, default='none', help="'pytorch' under torchrun for DDP")
    p.add_argument('--max-iters', type=int, metavar='N', help='stop after N iterations, keeping the schedule')
    p.add_argument('--eval-only', action='store_true',
                   help="skip training: measure the work dir's latest checkpoint and write tokenizer.pth")
    return p.parse_args(argv)


@torch.no_grad()
def evaluate(tokenizer, preprocessor, dataset, num_images: int, batch_size: int) -> dict:
    """Reconstruction error and codebook usage on the first ``num_images`` of ``dataset`` (no augmentation)."""
    tokenizer.eval()
    device = preprocessor.mean.device
    counts = torch.zeros(tokenizer.vocab_size, dtype=torch.long, device=device)
    sq_err_norm = sq_err_pix = 0.0
    n = min(num_images, len(dataset))
    for start in range(0, n, batch_size):
        batch = torch.stack([dataset[i]['inputs'] for i in range(start, min(start + batch_size, n))]).to(device)
        imgs = preprocessor.normalize(batch)
        out = tokenizer(imgs)
        sq_err_norm += float((out['recon'] - imgs).pow(2).sum())
        sq_err_pix += float((preprocessor.denormalize(out['recon']) - batch.float() / 255).pow(2).sum())
        counts += torch.bincount(out['ids'].flatten(), minlength=tokenizer.vocab_size)
    values = n * batch[0].numel()
    mse_pix = sq_err_pix / values
    return {'num_images': n, 'recon_mse_normalized': sq_err_norm / values, 'recon_mse_pixels': mse_pix,
            'psnr_db': 10 * math.log10(1 / max(mse_pix, 1e-12)), **codebook_usage(counts.cpu())}


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        apply_cli(cfg, args.config, work_dir=args.work_dir, data_root=args.data_root,
                  resume=args.resume, launcher=args.launcher, max_iters=args.max_iters)
        work_dir = Path(cfg.work_dir)
        if args.eval_only:
            last = pointed_checkpoint(work_dir)
            if not last:
                sys.exit(f'error: no checkpoint in {work_dir}; train first without --eval-only')
            model = MODELS.build(cfg.model)
            model.load_state_dict(load_local_checkpoint(last)['state_dict'])
            iterations, rank = None, get_rank()
        else:
            runner = build_runner(cfg)
            rank = get_rank()
            with ends_process_group():         # rank 0 then measures the tokenizer alone
                runner.train()
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            iterations = runner.iter
        if rank != 0:
            return
        eval_cfg = cfg.get('tokenizer_eval', dict(split='test', num_images=10000, batch_size=500, pipeline=[]))
        dataset = unaugmented_split(cfg.train_dataloader.dataset, eval_cfg['split'],
                                    pipeline=eval_cfg.get('pipeline', []))
    except USER_ERRORS as err:  # bad data, config or command line: one clear line, not a traceback
        sys.exit(f'error: {err}')

    metrics = evaluate(model.tokenizer, model.data_preprocessor, dataset, eval_cfg['num_images'],
                       eval_cfg['batch_size'])
    metrics.update(split=str(getattr(dataset, 'split', 'all')), iterations=iterations)
    mean = model.data_preprocessor.mean.flatten().tolist()
    std = model.data_preprocessor.std.flatten().tolist()
    default_path = str(work_dir / 'tokenizer.pth')
    written = save_tokenizer(default_path, cfg.model.tokenizer.to_dict(), model.tokenizer, mean, std, metrics)
    if written != default_path:
        # Cells and runs that read the existing file were made with it; a smoke run must not change them.
        print(f'{default_path} already holds another tokenizer, left as it is; this one is {written} (use it '
              f'with --cfg-options model.target.checkpoint={written})')
    (work_dir / 'tokenizer_metrics.json').write_text(json.dumps(metrics, indent=2) + '\n')
    print(f"tokenizer on {metrics['num_images']} {metrics['split']} images: reconstruction MSE "
          f"{metrics['recon_mse_pixels']:.5f} on [0, 1] pixels (PSNR {metrics['psnr_db']:.2f} dB; "
          f"{metrics['recon_mse_normalized']:.4f} normalized); codebook perplexity {metrics['perplexity']:.1f} of "
          f"{metrics['vocab_size']}, dead codes {metrics['dead_codes']} ({metrics['dead_fraction']:.1%})")
    print(f"wrote {written} and {work_dir / 'tokenizer_metrics.json'}")


if __name__ == '__main__':
    main()
