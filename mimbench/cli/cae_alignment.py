"""Is the CAE encoder's output in the space the regressor predicts into? Decode it directly and see.

    python tools/cae_alignment.py work_dirs/cae_pixel_micro_cifar10/iter_200.pth

For a CAE trained with a raw-pixel target it masks held-out images with the model's masker and reconstructs the
removed patches in two ways: the training path (encoder on the visible patches -> regressor -> decoder) and the
alignment path (encoder on every patch -> decoder; the regressor is dropped). The same alignment path with a
randomly initialized encoder is the control. It prints each path's MSE on the removed patches (in the
normalized pixel space of the loss and on the [0, 1] scale) and writes a PNG grid, one image per row:
input | masked input | decoder after regressor | decoder fed the encoder's output directly | random-encoder control.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


import torch
import torch.nn.functional as F
from mmengine.config import Config
from torchvision.utils import save_image

import mimbench  # noqa: F401  (registers every component)
from mimbench.algorithms import CAE
from mimbench.data import unaugmented_split
from mimbench.engine.checkpoint import load_local_checkpoint
from mimbench.errors import USER_ERRORS
from mimbench.masking import split_indices
from mimbench.models.patches import patchify, unpatchify
from mimbench.registry import ENCODERS, MODELS
from mimbench.targets import PixelTarget


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Decode a CAE encoder's output directly (the alignment check).")
    p.add_argument('checkpoint', help='a pixel-target CAE checkpoint (its config is read from the checkpoint)')
    p.add_argument('--data-root', help='dataset location (default: the one in the config)')
    p.add_argument('--split', default='test', help='images to measure on (default: test)')
    p.add_argument('--num-images', type=int, default=1000, help='images for the MSE figures')
    p.add_argument('--show', type=int, default=8, help='images in the picture')
    p.add_argument('--out', help='PNG path (default: next to the checkpoint, cae_alignment.png)')
    p.add_argument('--seed', type=int, default=0, help='seed of the masks and of the random control encoder')
    return p.parse_args(argv)


def load_model(checkpoint: str) -> tuple[CAE, Config]:
    ckpt = load_local_checkpoint(checkpoint, map_location='cpu')
    cfg = Config.fromstring(ckpt['meta']['cfg'], '.py')
    model = MODELS.build(cfg.model)
    if not isinstance(model, CAE) or not isinstance(model.target, PixelTarget) or model.target.normalize:
        sys.exit(f'error: {checkpoint} is not a CAE with a raw-pixel target (PixelTarget, normalize=False), so its '
                 'decoder output is not a picture; train e.g. configs/cae_pixel_micro_cifar10.py')
    model.load_state_dict(ckpt['state_dict'])
    return model.eval(), cfg


@torch.no_grad()
def reconstructions(model: CAE, encoder, imgs: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Patch predictions ``[B, L, p*p*C]`` of both paths: 'regressor' (removed patches only, the rest copied from
    the input) and 'direct' (the decoder applied to ``encoder`` output for every patch)."""
    ids = split_indices(mask)
    patches = patchify(imgs, model.encoder.patch_size)
    latent = model.encoder.forward_visible(imgs, ids.ids_keep)
    predicted = model.decoder(model.regressor(latent, ids.ids_keep, ids.ids_masked), ids.ids_masked)
    regressor = patches.clone()
    regressor[mask] = predicted.reshape(-1, patches.shape[-1])         # ids_masked is ascending, as mask order
    all_ids = torch.arange(mask.shape[1]).expand(mask.shape[0], -1)
    direct = model.decoder(encoder(imgs)[:, 1:], all_ids)
    return {'regressor': regressor, 'direct': direct}


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    return float(F.mse_loss(pred[mask], target[mask]))


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        model, cfg = load_model(args.checkpoint)
        dataset = unaugmented_split(cfg.train_dataloader.dataset, args.split, args.data_root)
    except USER_ERRORS as err:  # a missing checkpoint or data: one line, not a traceback
        sys.exit(f'error: {err}')
    n = min(args.num_images, len(dataset))
    raw = torch.stack([dataset[i]['inputs'] for i in range(n)])
    imgs = model.data_preprocessor.normalize(raw)
    mask = model.masker(n, generator=torch.Generator().manual_seed(args.seed))

    torch.manual_seed(args.seed)
    random_encoder = ENCODERS.build(cfg.model.encoder).eval()
    p, grid = model.encoder.patch_size, model.encoder.grid
    target = patchify(imgs, p)
    to_pixels = lambda x: model.data_preprocessor.denormalize(unpatchify(x, p, grid))  # noqa: E731
    rows = {}
    for start in range(0, n, 250):
        part = slice(start, min(start + 250, n))
        outs = reconstructions(model, model.encoder, imgs[part], mask[part])
        outs['random'] = reconstructions(model, random_encoder, imgs[part], mask[part])['direct']
        for key, value in outs.items():
            rows.setdefault(key, []).append(value)
    outs = {k: torch.cat(v) for k, v in rows.items()}
    pixels = to_pixels(target)
    names = {'regressor': 'encoder(visible) -> regressor -> decoder', 'direct': 'encoder(all) -> decoder',
             'random': 'random-init encoder(all) -> decoder'}
    print(f'MSE on the {mask[0].sum()} removed patches of {n} {args.split} images '
          '(normalized pixels | [0, 1] pixels):')
    for key, name in names.items():
        print(f'  {name:<44} {masked_mse(outs[key], target, mask):.4f} | '
              f'{masked_mse(patchify(to_pixels(outs[key]), p), patchify(pixels, p), mask):.5f}')
    baseline = 'predicting the dataset mean colour'
    print(f'  {baseline:<44} {float(target[mask].pow(2).mean()):.4f} |')

    show = min(args.show, n)
    masked_input = target[:show].clone()
    masked_input[mask[:show]] = 0.0   # 0 in normalized space: the dataset's mean colour
    panels = [pixels[:show], to_pixels(masked_input)] + [to_pixels(outs[k][:show]) for k in names]
    grid_imgs = torch.stack(panels, dim=1).flatten(0, 1)               # row-major: one image per row
    grid_imgs = F.interpolate(grid_imgs, scale_factor=4, mode='nearest')
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / 'cae_alignment.png'
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid_imgs, out, nrow=len(panels), padding=2, pad_value=1.0)
    print(f'wrote {out} (columns: input | masked input | {" | ".join(names.values())})')


if __name__ == '__main__':
    main()
