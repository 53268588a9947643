"""Pretrain a model from a config.

    python tools/train.py configs/mae_micro_cifar10.py
    python tools/train.py configs/mae_vitb.py --data-root /data/imagenet
    torchrun --nproc_per_node 8 tools/train.py configs/mae_vitb.py --launcher pytorch
    python tools/train.py CONFIG --resume            # continue from the work dir's latest checkpoint
"""
from __future__ import annotations

import argparse
import sys

from mimbench.engine.dist import LAUNCHERS, ends_process_group
from mimbench.engine.runner import DictAction, apply_cli, build_runner, load_config
from mimbench.errors import USER_ERRORS
from mimbench.targets.pca import fit_basis_file


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Pretrain a masked-image-modeling model.')
    p.add_argument('config', help='config file, e.g. configs/mae_micro_cifar10.py')
    p.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    p.add_argument('--data-root', help="dataset location (replaces every dataloader's dataset.root)")
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config keys, e.g. train_dataloader.batch_size=128 model.masker.ratio=0.6')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                   help='continue from CHECKPOINT, or from the latest one in the work dir when none is given')
    p.add_argument('--launcher', choices=LAUNCHERS, default='none', help="'pytorch' under torchrun for DDP")
    p.add_argument('--precision', choices=('float32', 'bfloat16', 'auto'),
                   help="'bfloat16': autocast on CUDA or CPU; 'auto': bfloat16 where the device computes it "
                        "natively (AVX512-BF16/AMX CPUs, Ampere+ GPUs), float32 elsewhere (default: the config's)")
    p.add_argument('--amp', action='store_true', help='the same as --precision bfloat16')
    p.add_argument('--seed', type=int, help='random seed (default: the config\'s randomness.seed)')
    p.add_argument('--max-iters', type=int, metavar='N',
                   help='stop after N iterations, keeping the configured schedule (smoke runs, CI)')
    p.add_argument('--tensorboard', action='store_true', help='also log to TensorBoard in the work dir')
    p.add_argument('--device-data', action='store_true',
                   help='keep the (in-memory) training set on the device as uint8 and augment whole batches there')
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        apply_cli(cfg, args.config, work_dir=args.work_dir, data_root=args.data_root, resume=args.resume,
                  launcher=args.launcher, amp=args.amp, seed=args.seed, max_iters=args.max_iters,
                  tensorboard=args.tensorboard, precision=args.precision, device_data=args.device_data)
        # A PCA target's basis is fitted from real images and written once before training, so that every run
        # and every ablation cell naming that file reads the same basis.
        fit_basis_file(cfg)
        with ends_process_group():
            build_runner(cfg).train()
    except USER_ERRORS as err:  # bad data, config or command line: one clear line, not a traceback
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
