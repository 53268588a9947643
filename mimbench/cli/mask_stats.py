"""Shape statistics of block-wise masks: ours, and the authors' generators when their checkouts are given.

    python tools/mask_stats.py
    python tools/mask_stats.py --reference beit=../unilm/beit/masking_generator.py \
        --reference cae=../CAE/furnace/masking_generator.py --draws 500 --json stats.json

For each setting (grid, patches removed, smallest block) prints the mean number of 4-connected pieces per mask
(with its standard deviation), the mean size of the largest piece, single-patch pieces and the patch count range.
A reference is a file defining BEiT's ``MaskingGenerator(input_size, num_masking_patches, min_num_patches)``;
it is imported and run as it is, seeded with ``random.seed``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path


import numpy as np
import torch

from mimbench.analysis.mask_stats import mask_shape_stats
from mimbench.masking import BlockMasker

# (grid side, patches removed, smallest block): the ViT-B/16 BEiT and CAE settings and the micro configs'.
SETTINGS = [(14, 75, 16), (14, 98, 16), (8, 32, 4), (8, 48, 4)]


def _load_reference(spec: str):
    name, _, path = spec.partition('=')
    if not path or not Path(path).is_file():
        raise SystemExit(f'error: --reference wants NAME=PATH to a masking_generator.py, got {spec!r}')
    module_spec = importlib.util.spec_from_file_location(f'reference_{name}', path)
    module = importlib.util.module_from_spec(module_spec)
    if not hasattr(np, 'int'):  # BEiT's generator uses np.int, removed in numpy 1.24
        np.int = int
    module_spec.loader.exec_module(module)
    return name, module.MaskingGenerator


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--draws', type=int, default=500)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--reference', action='append', default=[], metavar='NAME=PATH')
    p.add_argument('--json', help='also write the figures to this file')
    args = p.parse_args(argv)
    references = [_load_reference(spec) for spec in args.reference]

    results = {}
    print(f'{"setting":<18} {"generator":<10} {"pieces":>13} {"largest":>8} {"singles":>8} {"count":>10}')
    for side, num_masked, min_block in SETTINGS:
        setting = f'{side}x{side}/{num_masked}/min{min_block}'
        generators = {}
        masker = BlockMasker(side, num_masked=num_masked, min_block_patches=min_block)
        torch_generator = torch.Generator().manual_seed(args.seed)
        generators['mimbench'] = lambda m=masker, g=torch_generator: m(1, generator=g).view(m.grid).numpy()
        for name, cls in references:
            generators[name] = cls((side, side), num_masked, min_block)
        for name, draw in generators.items():
            random.seed(args.seed)
            np.random.seed(args.seed)
            stats = mask_shape_stats(draw, args.draws)
            results.setdefault(setting, {})[name] = stats
            count = (f'{stats["count_min"]}' if stats['count_min'] == stats['count_max']
                     else f'{stats["count_min"]}-{stats["count_max"]}')
            print(f'{setting:<18} {name:<10} {stats["pieces_mean"]:6.2f} ± {stats["pieces_std"]:4.2f} '
                  f'{stats["largest_mean"]:8.1f} {stats["single_patch_pieces_mean"]:8.2f} {count:>10}')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + '\n')
    return results


if __name__ == '__main__':
    main()
