"""Checkpoints of the official MAE code: convert them, and check that our MAE computes what theirs does.

    # an official checkpoint -> a mimbench checkpoint that tools/eval.py and tools/export.py read
    python tools/official_mae.py convert mae_visualize_vit_base.pth --config configs/mae_vitb.py \\
        --out work_dirs/official/mae_vitb.pth

    # the authors' models_mae.py and ours on the same weights, images and masks (a checkout of
    # facebookresearch/mae); --write-fixture saves a small case for tests/test_official_mae.py
    python tools/official_mae.py compare --mae-repo ../mae --config configs/mae_vitb.py --seeds 3

The conversion (names, and the sin-cos channel order undone by re-indexing the residual stream) is
``mimbench/models/official_mae.py``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from mmengine.config import DictAction
from torch import nn

from mimbench.engine.checkpoint import load_local_checkpoint
from mimbench.errors import USER_ERRORS
from mimbench.fileio import atomic_path
from mimbench.models.official_mae import from_official_mae, official_state_dict
from mimbench.paths import resolve_config
from mimbench.registry import MODELS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Convert official MAE checkpoints; compare our MAE with theirs.')
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert', help='official checkpoint -> mimbench checkpoint')
    c.add_argument('checkpoint', help='an official MAE .pth (mae_pretrain_vit_*.pth or mae_visualize_vit_*.pth)')
    c.add_argument('--config', required=True, help='the mimbench config with the same architecture '
                   '(e.g. configs/mae_vitb.py); stored in the output so evaluation rebuilds the model')
    c.add_argument('--out', required=True, help='output .pth')
    m = sub.add_parser('compare', help="run the authors' models_mae.py and ours on the same weights")
    m.add_argument('--mae-repo', required=True, help='a checkout of facebookresearch/mae')
    m.add_argument('--config', default='mae_vitb', help='a mimbench MAE config (random masking, pixel target)')
    m.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config keys, e.g. model.target.normalize=True')
    m.add_argument('--batch', type=int, default=4)
    m.add_argument('--seeds', type=int, default=3, help='independent weights/images/masks to compare')
    m.add_argument('--write-fixture', help='save the first seed as a test fixture (.pt)')
    return p.parse_args(argv)


def build_mae(config: str, cfg_options: dict | None = None):
    from mimbench.engine.runner import load_config
    cfg = load_config(str(resolve_config(config)), cfg_options, log=lambda *a: None)
    if cfg.model.type != 'MAE':
        raise SystemExit(f'error: {config} builds {cfg.model.type}, not MAE')
    return cfg, MODELS.build(cfg.model).eval()


def convert(args) -> dict:
    cfg, model = build_mae(args.config)
    state = from_official_mae(official_state_dict(load_local_checkpoint(args.checkpoint, map_location='cpu')))
    expected = model.state_dict()
    has_decoder = any(k.startswith('decoder.') for k in state)
    # the encoder must be whole; the decoder whole or absent (the released mae_pretrain_* files have none)
    bad = [f'{k}: checkpoint {list(v.shape)} vs config {list(expected[k].shape)}' for k, v in state.items()
           if k in expected and v.shape != expected[k].shape]
    bad += [f'{k} missing' for k in expected if k not in state and (has_decoder or k.startswith('encoder.'))]
    bad += [f'{k} not in the config\'s model' for k in state if k not in expected]
    if bad:
        raise SystemExit(f'error: {args.checkpoint} does not fit {args.config}: '
                         f'{"; ".join(bad[:8])}{f" (and {len(bad) - 8} more)" if len(bad) > 8 else ""}')
    model.load_state_dict(state, strict=has_decoder)
    payload = {'state_dict': {k: v.contiguous() for k, v in model.state_dict().items()},
               'meta': {'cfg': cfg.pretty_text, 'converted_from': str(args.checkpoint),
                        'decoder': 'official' if has_decoder else 'random (the checkpoint has none)'}}
    with atomic_path(Path(args.out)) as tmp:
        torch.save(payload, tmp)
    print(f'wrote {args.out}: {len(state)} tensors converted'
          + ('' if has_decoder else '; the checkpoint holds the encoder only, the decoder is randomly initialized'))
    return payload


def import_official(repo: str):
    """``models_mae`` from a checkout, on today's timm and numpy: its ``Block(..., qk_scale=None)`` (timm 0.3)
    and ``np.float`` (numpy < 1.24) are the only things that no longer exist."""
    import timm.models.vision_transformer as tvit
    if not hasattr(np, 'float'):
        np.float = float

    class Block(tvit.Block):
        def __init__(self, *a, qk_scale=None, **kw):
            assert qk_scale is None     # None is timm's default scale, head_dim ** -0.5
            super().__init__(*a, **kw)

    saved = tvit.Block
    tvit.Block = Block
    sys.path.insert(0, str(Path(repo).resolve()))
    try:
        return importlib.import_module('models_mae')
    finally:
        tvit.Block = saved
        sys.path.pop(0)


def official_twin(models_mae, model) -> nn.Module:
    """The authors' ``MaskedAutoencoderViT`` with the architecture of our ``model``."""
    enc, dec = model.encoder, model.decoder
    if type(model.masker).__name__ != 'RandomMasker' or type(model.target).__name__ != 'PixelTarget':
        raise SystemExit('error: compare needs an MAE config with RandomMasker and PixelTarget (as the '
                         'authors\' code)')
    kw = enc.timm_kwargs
    return models_mae.MaskedAutoencoderViT(
        img_size=kw['img_size'], patch_size=kw['patch_size'], in_chans=kw['in_chans'], embed_dim=kw['embed_dim'],
        depth=kw['depth'], num_heads=kw['num_heads'], decoder_embed_dim=dec.embed.out_features,
        decoder_depth=len(dec.blocks), decoder_num_heads=dec.blocks[0].attn.num_heads if len(dec.blocks) else 1,
        mlp_ratio=kw['mlp_ratio'], norm_layer=partial(nn.LayerNorm, eps=1e-6),
        norm_pix_loss=bool(model.target.normalize)).eval()


def compare(args) -> list[dict]:
    models_mae = import_official(args.mae_repo)
    cfg, ours = build_mae(args.config, args.cfg_options)
    ratio = cfg.model.masker.get('ratio', 0.75)
    rows = []
    print(f'{args.config}: the authors\' models_mae.py vs mimbench MAE, same weights (theirs, converted), images '
          f'N(0, 1) [{args.batch}, 3, {ours.encoder.timm_kwargs["img_size"]}px], their random masks at {ratio}')
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        theirs = official_twin(models_mae, ours)        # their own init, from this seed
        imgs = torch.randn(args.batch, 3, *(ours.encoder.timm_kwargs['img_size'],) * 2)
        with torch.no_grad():
            loss_t, pred_t, mask = theirs(imgs, mask_ratio=ratio)
            ours.load_state_dict(from_official_mae(theirs.state_dict()), strict=True)
            mask_b = mask.bool()
            pred_o = ours.reconstruct(imgs, mask_b)
            loss_o = ours.target.loss(pred_o, imgs, mask_b)
        row = dict(seed=seed, loss_theirs=loss_t.item(), loss_ours=loss_o.item(),
                   loss_diff=abs(loss_t.item() - loss_o.item()),
                   pred_max_abs_diff=(pred_t - pred_o).abs().max().item(),
                   pred_scale=pred_t.abs().max().item())
        rows.append(row)
        print(f'  seed {seed}: loss theirs {row["loss_theirs"]:.7f} ours {row["loss_ours"]:.7f} '
              f'|diff| {row["loss_diff"]:.1e}; predictions max |diff| {row["pred_max_abs_diff"]:.1e} '
              f'(max |pred| {row["pred_scale"]:.2f})')
        if seed == 0 and args.write_fixture:
            fixture = dict(config=args.config, cfg_options=args.cfg_options,
                           official_state_dict=theirs.state_dict(), imgs=imgs, mask=mask_b, loss=loss_t, pred=pred_t)
            with atomic_path(Path(args.write_fixture)) as tmp:
                torch.save(fixture, tmp)
            print(f'  wrote {args.write_fixture}')
    worst = max(rows, key=lambda r: r['loss_diff'])
    print(f'largest loss difference {worst["loss_diff"]:.1e} (seed {worst["seed"]}); largest prediction '
          f'difference {max(r["pred_max_abs_diff"] for r in rows):.1e}')
    return rows


def main(argv=None):
    args = parse_args(argv)
    try:
        return convert(args) if args.command == 'convert' else compare(args)
    except USER_ERRORS as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
