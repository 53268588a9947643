"""The speed axis: MAE's wall-clock table (encoder w/ and w/o [M], decoder depth 8 and 1) on this machine."""
import json

import pytest
import torch

from mimbench.ablation.speed import (SPEED_ROWS, analytic_encoder_flops, encoder_flops, run_speed_axis,
                                     speed_cells, speed_table)
from mimbench.engine.runner import load_config
from mimbench.registry import MODELS

TINY = 'tests/configs/tiny_mae.py'   # ViT 2 x 32, 16 px images, patch 4: L = 16 patches, 4 visible at 0.75
TINY_ENCODER = dict(depth=2, dim=32, num_patches=16, patch_dim=3 * 4 * 4)


def _flatten(d, prefix=''):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def test_the_three_cells_differ_only_in_mask_tokens_and_decoder_depth():
    base = _flatten(load_config(TINY).to_dict())
    cells = speed_cells(TINY)
    assert [label for label, _ in cells] == [row.label for row in SPEED_ROWS]
    for row, (_, cfg) in zip(SPEED_ROWS, cells):
        flat = _flatten(cfg.to_dict())
        changed = {k for k in flat.keys() | base.keys() if flat.get(k, 'absent') != base.get(k, 'absent')}
        assert changed <= {'model.mask_token_in_encoder', 'model.decoder.depth'}
        assert flat['model.mask_token_in_encoder'] is row.mask_token_in_encoder
        assert flat['model.decoder.depth'] == row.decoder_depth


def test_cfg_options_apply_to_every_cell():
    for _, cfg in speed_cells(TINY, {'model.masker.ratio': 0.5}):
        assert cfg.model.masker.ratio == 0.5


def test_the_rows_are_the_papers_table():
    assert [(r.mask_token_in_encoder, r.decoder_depth, r.paper['speedup']) for r in SPEED_ROWS] == [
        (True, 8, 1.0), (False, 8, 2.8), (False, 1, 3.7)]


def test_analytic_flops_of_vit_large_are_the_published_61_6_gmacs():
    # ViT-L/16 at 224 px: 197 tokens, 196 patches of 16 x 16 x 3; 61.6 GMACs is timm's figure for it
    flops = analytic_encoder_flops(24, 1024, 197, num_patches=196, patch_dim=768)
    assert flops / 2 == pytest.approx(61.6e9, rel=2e-3)


def test_encoder_flops_are_the_analytic_formula_with_and_without_mask_tokens():
    (_, with_m), (_, without_m), _ = speed_cells(TINY)
    torch.manual_seed(0)
    model_m, model = MODELS.build(with_m.model), MODELS.build(without_m.model)
    imgs = torch.randn(2, 3, 16, 16)
    mask = model.masker(2)                      # the same 12 of 16 patches removed for both encoders
    measured_m = encoder_flops(model_m, imgs, mask) / 2
    measured = encoder_flops(model, imgs, mask) / 2
    analytic_m = analytic_encoder_flops(tokens=1 + 16, **TINY_ENCODER)
    analytic = analytic_encoder_flops(tokens=1 + 4, **TINY_ENCODER)
    # attention included: the counted FLOPs are exactly the formula, not just proportional to it
    assert measured_m == pytest.approx(analytic_m, rel=1e-6)
    assert measured == pytest.approx(analytic, rel=1e-6)
    assert measured_m / measured == pytest.approx(analytic_m / analytic, rel=1e-6)


FAKE = dict(machine='Test CPU, 2 cores', device='cpu', threads=2, torch='2.14.1', date='2026-01-02',
            batch_size=8, iters=10, warmup=3)
FAKE_RESULTS = [   # out of order on purpose: the table follows SPEED_ROWS
    dict(FAKE, label='encoder, decoder depth 1', train_gflops_per_img=40.0, encoder_gflops_per_img=30.75,
         train_s_per_step=2.0, train_img_per_s=4.0),
    dict(FAKE, label='encoder w/ [M], decoder depth 8', train_gflops_per_img=420.0, encoder_gflops_per_img=123.1,
         train_s_per_step=8.0, train_img_per_s=1.0),
    dict(FAKE, label='encoder, decoder depth 8', train_gflops_per_img=125.25, encoder_gflops_per_img=30.75,
         train_s_per_step=3.2, train_img_per_s=2.5),
]
EXPECTED_TABLE = """\
| row | train GFLOPs/img | encoder fwd GFLOPs/img | s/step | img/s | speedup | paper speedup (ViT-L) |
|---|---|---|---|---|---|---|
| encoder w/ [M], decoder depth 8 | 420 | 123.1 | 8 | 1 | 1.00x | 1.0x (42.4 h, ft 84.2) |
| encoder, decoder depth 8 | 125.2 | 30.75 | 3.2 | 2.5 | 2.50x | 2.8x (15.4 h, ft 84.9) |
| encoder, decoder depth 1 | 40 | 30.75 | 2 | 4 | 4.00x | 3.7x (11.6 h, ft 84.8) |

Measured on Test CPU, 2 cores (cpu, 2 threads, torch 2.14.1) on 2026-01-02: batch 8, median of 10 train steps \
(forward + backward + AdamW) after 3 warm-up steps. GFLOPs are counted by torch FlopCounterMode (train: forward \
+ backward; encoder: forward over the tokens it sees), attention counted as its two matmuls. Paper: MAE Table 2, \
ViT-L, 800 epochs on 128 TPU-v3 cores (pretraining hours, fine-tune top-1 %).
"""


def test_table_lists_rows_in_paper_order_with_speedup_over_the_mask_token_encoder():
    assert speed_table(FAKE_RESULTS) == EXPECTED_TABLE


def test_table_without_the_mask_token_row_has_no_speedup():
    assert speed_table(FAKE_RESULTS[:1]).splitlines()[2].split(' | ')[5] == 'n/a'


def test_table_rejects_an_unknown_row():
    with pytest.raises(ValueError, match='unknown speed row'):
        speed_table([dict(FAKE_RESULTS[0], label='encoder, decoder depth 2')])


def test_run_speed_axis_writes_the_table_and_the_raw_figures(tmp_path):
    out = tmp_path / 'speed' / 'speed_axis.md'
    logged = []
    results = run_speed_axis(TINY, out, batch_size=2, iters=1, warmup=0, log=logged.append)

    assert [r['label'] for r in results] == [row.label for row in SPEED_ROWS]
    assert out.read_text() == f'# Speed axis: {TINY}\n\n' + speed_table(results)
    raw = json.loads(out.with_suffix('.json').read_text())
    assert raw['base_config'] == TINY and raw['results'] == results
    assert sorted(p.name for p in out.parent.iterdir()) == ['speed_axis.json', 'speed_axis.md']  # no temp files
    assert len(logged) == 2 * len(SPEED_ROWS)

    with_m, dec8, dec1 = results
    assert (with_m['encoder_tokens'], dec8['encoder_tokens']) == (1 + 16, 1 + 4)
    assert with_m['encoder_gflops_per_img'] * 1e9 == pytest.approx(analytic_encoder_flops(tokens=17, **TINY_ENCODER))
    assert dec8['encoder_gflops_per_img'] == dec1['encoder_gflops_per_img']
    # each change removes work: the encoder's [M] tokens, then seven decoder blocks
    assert with_m['train_gflops_per_img'] > dec8['train_gflops_per_img'] > dec1['train_gflops_per_img']
    assert all(r['train_s_per_step'] > 0 and r['batch_size'] == 2 for r in results)
