"""Draw what a pretrained model reconstructs: original | masked | reconstruction | reconstruction + visible patches.

    python tools/visualize.py work_dirs/mae_micro_cifar10/latest.pth --out recon.png
    python tools/visualize.py CKPT --out recon.png --num 12 --split train --seed 3

Images come from the pretraining dataset (test split by default), unaugmented, resized and centre-cropped to
the encoder's input size when they differ from it. The masks are drawn by the model's own masker.

MAE, CAE and BEiT-style models with a pixel target are drawn; CAE and BEiT predict only the removed patches, so
their reconstruction panel is grey at the visible ones. A model that predicts something else (tokenizer ids, PCA
coefficients) has no picture: the tool says so in one ``error:`` line.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path


import torch

from mimbench.data import InMemoryImages, unaugmented_split
from mimbench.errors import USER_ERRORS
from mimbench.evaluation.encoder import load_algorithm
from mimbench.evaluation.reconstruction import Reconstruction, reconstruct
from mimbench.fileio import save_figure

COLUMNS = ('original', 'masked', 'reconstruction', 'visible pasted back')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Draw the reconstructions of a pixel-predicting model.')
    p.add_argument('checkpoint', help='pretraining checkpoint, WORK_DIR/latest.pth, or a work dir')
    p.add_argument('--out', default='recon.png', help='PNG to write')
    p.add_argument('--config', help='pretraining config (default: the one stored in the checkpoint)')
    p.add_argument('--data-root', help="image location (replaces the config's dataset root)")
    p.add_argument('--split', default='test', help="dataset split to draw from (default 'test')")
    p.add_argument('--num', type=int, default=8, help='number of images (rows)')
    p.add_argument('--seed', type=int, default=0, help='picks the images and the masks')
    return p.parse_args(argv)


def sample_images(cfg, img_size: int, split: str, num: int, seed: int, data_root: str | None) -> torch.Tensor:
    """``num`` unaugmented uint8 images ``[num, 3, img_size, img_size]`` from the pretraining dataset."""
    dataset = unaugmented_split(cfg.train_dataloader.dataset, split, data_root)
    if not (isinstance(dataset, InMemoryImages) and tuple(dataset.images.shape[-2:]) == (img_size, img_size)):
        dataset = unaugmented_split(cfg.train_dataloader.dataset, split, data_root,
                                    [dict(type='Resize', size=img_size), dict(type='CenterCrop', size=img_size)])
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num]
    return torch.stack([dataset[int(i)]['inputs'] for i in idx])


def draw(rec: Reconstruction, out: str) -> Path:
    import matplotlib
    matplotlib.use('Agg')  # files only; no display needed
    import matplotlib.pyplot as plt

    rows = rec.original.shape[0]
    panels = (rec.original, rec.masked, rec.reconstruction, rec.pasted)
    caption_in = 0.6   # inches under the grid for the caption
    height = rows * 1.6 + caption_in
    fig, axes = plt.subplots(rows, 4, figsize=(4 * 1.6, height), squeeze=False)
    for r in range(rows):
        for c, images in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(images[r].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(COLUMNS[c], fontsize=8)
    fig.text(0.5, 0.005, textwrap.fill(rec.caption, 95), ha='center', va='bottom', fontsize=6.5)
    fig.tight_layout(rect=(0, caption_in / height, 1, 1))
    return save_figure(fig, out, dpi=150)


def main(argv=None) -> Reconstruction:
    args = parse_args(argv)
    try:
        model, cfg = load_algorithm(args.checkpoint, args.config)
        img_size = model.encoder.grid[0] * model.encoder.patch_size
        imgs = sample_images(cfg, img_size, args.split, args.num, args.seed, args.data_root)
        rec = reconstruct(model, imgs, generator=torch.Generator().manual_seed(args.seed))
    except USER_ERRORS as err:      # bad checkpoint or data, or a model with no pixels to draw: one line
        sys.exit(f'error: {err}')
    out = draw(rec, args.out)
    print(f'wrote {out}: {rec.caption}')
    return rec


if __name__ == '__main__':
    main()
