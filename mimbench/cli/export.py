"""Export a pretrained encoder as a timm VisionTransformer checkpoint.

    python tools/export.py work_dirs/mae_micro_cifar10/latest.pth vit_micro.pth

then, anywhere timm is installed (the line to use is printed):

    timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=4, ..., depth=6, num_classes=0,
                      checkpoint_path='vit_micro.pth')
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


import torch

from mimbench.errors import USER_ERRORS
from mimbench.evaluation.encoder import load_encoder
from mimbench.evaluation.export import export_payload, timm_create_call
from mimbench.fileio import atomic_path


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Write encoder weights that timm.create_model(checkpoint_path=...) loads.')
    p.add_argument('checkpoint', help='pretraining checkpoint, WORK_DIR/latest.pth, or a work dir')
    p.add_argument('out', help='output .pth file')
    p.add_argument('--config', help='pretraining config (default: the one stored in the checkpoint)')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        loaded = load_encoder(args.checkpoint, args.config)
        payload = export_payload(loaded.encoder, loaded.checkpoint)
    except USER_ERRORS as err:      # a missing or mismatched checkpoint: one line, not a traceback
        sys.exit(f'error: {err}')
    out = Path(args.out)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    meta = payload['meta']
    print(f'wrote {len(payload["state_dict"])} encoder tensors of {loaded.checkpoint} to {out}; load with\n'
          f'  {timm_create_call(meta["timm_model"], meta["timm_kwargs"], str(out))}')
    return payload


if __name__ == '__main__':
    main()
