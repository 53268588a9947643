"""Export to timm gives the same features; reconstruction pictures show what they claim and say how."""
from pathlib import Path

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from mimbench.engine.runner import load_config
from mimbench.evaluation.export import timm_model_args, timm_state_dict
from mimbench.evaluation.reconstruction import MASK_GREY, reconstruct
from mimbench.models.patches import patchify, unpatchify
from mimbench.registry import ENCODERS, MODELS

from tests.fixtures.tokenizers import make_tokenizer_file
from tests.fixtures.tools import load_tool  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / 'tests/configs/tiny_mae.py')   # MAE: 16 px, patch 4, width 32, depth 2; raw-pixel target
TINY_CAE = str(REPO / 'tests/configs/tiny_cae.py')   # CAE: same encoder size, 8 of 16 patches removed; raw pixels


def tiny_config(algorithm, target=None):
    """The tiny MAE or CAE config, or a BEiT-style one on the same 16 px images, with ``target`` if given."""
    if algorithm == 'BEiT':
        cfg = load_config(TINY)
        cfg.model = dict(type='BEiT', target=dict(type='PixelTarget', normalize=False),
                         encoder=dict(type='ViT', arch='micro', img_size=16, patch_size=4, embed_dim=32, depth=1,
                                      num_heads=2),
                         masker=dict(type='RandomMasker', ratio=0.5),
                         data_preprocessor=cfg.model.data_preprocessor)
    else:
        cfg = load_config(TINY if algorithm == 'MAE' else TINY_CAE)
    if target is not None:
        cfg.model.target = target
    return cfg


def make_checkpoint(path, options=None, seed=0, cfg=None):
    cfg = cfg or load_config(TINY, options)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    with torch.no_grad():   # move the zero/one-initialized tensors too, so that every weight is checked
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': cfg.pretty_text}}, path)
    return model


# --------------------------------------------------------------------------------------------------- export

@pytest.mark.parametrize('options', [None, {'model.mask_token_in_encoder': True},
                                     {'model.encoder.layer_scale_init': 0.1}],
                         ids=['plain', 'with-mask-token', 'layer-scale'])
def test_an_export_loads_into_timm_create_model_and_gives_identical_features(tmp_path, options):
    model = make_checkpoint(tmp_path / 'ckpt.pth', options)
    payload = load_tool('export').main([str(tmp_path / 'ckpt.pth'), str(tmp_path / 'vit.pth')])
    meta = payload['meta']
    assert 'mask_token' not in payload['state_dict']
    vit = timm.create_model(meta['timm_model'], checkpoint_path=str(tmp_path / 'vit.pth'), **meta['timm_kwargs'])
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ours = model.encoder.eval()(x)
        theirs = vit.eval().forward_features(x)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def test_an_encoder_with_a_relative_position_bias_is_refused_by_export_with_the_reason(tmp_path, capsys):
    make_checkpoint(tmp_path / 'ckpt.pth', {'model.encoder.rel_pos_bias': True})
    with pytest.raises(SystemExit, match="^error: export writes timm's VisionTransformer, which has no relative "
                                         'position bias'):
        load_tool('export').main([str(tmp_path / 'ckpt.pth'), str(tmp_path / 'vit.pth')])
    assert not (tmp_path / 'vit.pth').exists()


def test_the_micro_encoder_matches_a_hand_built_timm_vision_transformer():
    torch.manual_seed(0)
    ours = ENCODERS.build(dict(type='ViT', arch='micro', img_size=32, patch_size=4)).eval()
    name, kwargs = timm_model_args(ours)
    assert name == 'vit_tiny_patch16_224'
    assert kwargs == dict(img_size=32, patch_size=4, in_chans=3, embed_dim=192, depth=6, num_heads=3,
                          mlp_ratio=4.0, qkv_bias=True, init_values=None, num_classes=0, global_pool='token')
    theirs = VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3, num_classes=0)
    assert theirs.norm.eps == ours.norm.eps == 1e-6
    theirs.load_state_dict(timm_state_dict(ours), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval().forward_features(x), ours(x), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- pictures

def tiny_mae(normalize):
    cfg = load_config(TINY, {'model.target.normalize': normalize})
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def images(n=3):
    from mimbench.data import SyntheticImages
    return SyntheticImages(num_images=n, image_size=16).images


def test_norm_pixel_predictions_are_unnormalized_with_each_patch_statistics_and_the_caption_says_so():
    model = tiny_mae(normalize=True)
    imgs = images()
    # A model that predicts the normalized target perfectly must give back the original image ...
    model.reconstruct = lambda x, mask: model.target(x)
    rec = reconstruct(model, imgs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rec.reconstruction, rec.original, atol=1e-4, rtol=0)
    # ... and one that predicts all zeros gets flat patches at each true patch's mean: the statistics leak.
    # (The tiny config normalizes all channels alike, so the mean over a patch's channels survives drawing.)
    model.reconstruct = lambda x, mask: torch.zeros_like(model.target(x))
    rec = reconstruct(model, imgs, generator=torch.Generator().manual_seed(0))
    flat = patchify(rec.reconstruction, 4)
    torch.testing.assert_close(flat, patchify(rec.original, 4).mean(-1, keepdim=True).expand_as(flat),
                               atol=1e-4, rtol=0)
    assert 'un-normalized with the ground-truth mean and variance of that patch' in rec.caption
    assert 'leaks' in rec.caption


def test_raw_pixel_predictions_are_drawn_as_predicted():
    model = tiny_mae(normalize=False)
    model.reconstruct = lambda x, mask: torch.zeros(x.shape[0], 16, 48)   # 0 = the dataset mean colour
    rec = reconstruct(model, images(), generator=torch.Generator().manual_seed(0))
    mean_colour = model.data_preprocessor.mean.view(1, 3, 1, 1).expand_as(rec.reconstruction)
    torch.testing.assert_close(rec.reconstruction, mean_colour)
    assert 'leaks' not in rec.caption and 'drawn as predicted' in rec.caption


def test_the_pasted_panel_keeps_visible_patches_and_the_masked_panel_greys_removed_ones():
    model = tiny_mae(normalize=True)
    rec = reconstruct(model, images(), generator=torch.Generator().manual_seed(1))
    mask = rec.mask.unsqueeze(-1)                                          # [B, L, 1], True = removed
    assert rec.mask.sum(1).tolist() == [model.masker.num_masked] * 3     # the model's own masker drew it
    pasted, original = patchify(rec.pasted, 4), patchify(rec.original, 4)
    recon, masked = patchify(rec.reconstruction, 4), patchify(rec.masked, 4)
    assert torch.equal(torch.where(mask, 0, pasted), torch.where(mask, 0, original))
    torch.testing.assert_close(torch.where(mask, pasted, 0), torch.where(mask, recon, 0))
    assert torch.all(torch.where(mask, masked, MASK_GREY) == MASK_GREY)
    assert '75% of patches removed' in rec.caption


def test_the_visualize_tool_writes_a_png_with_the_caption(tmp_path, capsys):
    make_checkpoint(tmp_path / 'ckpt.pth', {'model.target.normalize': True})
    rec = load_tool('visualize').main([str(tmp_path / 'ckpt.pth'), '--out', str(tmp_path / 'recon.png'),
                                       '--num', '2'])
    assert (tmp_path / 'recon.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert rec.original.shape == (2, 3, 16, 16)
    assert 'ground-truth mean and variance' in capsys.readouterr().out


def tiny_model(algorithm):
    torch.manual_seed(0)
    return MODELS.build(tiny_config(algorithm).model).eval()


def scored_prediction(model, x, mask):
    """The prediction that ``model``'s training loss compares with the target, for ``mask``, laid out by patch
    ``[B, L, C_t]`` (0 where nothing was predicted: the loss takes CAE's and BEiT's removed patches only)."""
    from mimbench.masking.scatter import scatter_tokens
    scored = []
    real = model.target.loss

    def keep(pred, imgs, m, ids_masked=None):
        by_patch = pred if ids_masked is None else scatter_tokens(pred, ids_masked, m.shape[1])
        scored.append(by_patch.detach())
        return real(pred, imgs, m, ids_masked)

    model.target.loss = keep
    try:
        with torch.no_grad():
            model.loss(x, mask)
    finally:
        del model.target.loss       # the class's method again
    return scored[0]


@pytest.mark.parametrize('algorithm', ['CAE', 'BEiT'])
def test_reconstruct_is_the_prediction_the_training_loss_scores(algorithm):
    model = tiny_model(algorithm)
    x = torch.randn(3, 3, 16, 16)
    mask = model.masker(3, generator=torch.Generator().manual_seed(0))
    scored = scored_prediction(model, x, mask)
    torch.testing.assert_close(model.reconstruct(x, mask), scored, atol=0, rtol=0)
    assert torch.all(scored[~mask] == 0) and torch.all(scored[mask].abs().sum(-1) > 0)   # removed patches only


@pytest.mark.parametrize('algorithm', ['CAE', 'BEiT'])
def test_a_picture_of_a_model_that_predicts_removed_patches_only_draws_them_and_greys_the_visible_ones(algorithm):
    model = tiny_model(algorithm)
    imgs = images()
    rec = reconstruct(model, imgs, generator=torch.Generator().manual_seed(0))
    x = model.data_preprocessor.normalize(imgs)
    scored = model.data_preprocessor.denormalize(unpatchify(scored_prediction(model, x, rec.mask), 4, (4, 4)))
    removed = rec.mask.unsqueeze(-1)                                       # [B, L, 1], True = removed
    assert 0 < rec.mask.sum() < rec.mask.numel()
    for panel in (rec.reconstruction, rec.pasted):    # at removed patches: what training scored, in place
        torch.testing.assert_close(torch.where(removed, patchify(panel, 4), 0),
                                   torch.where(removed, patchify(scored, 4), 0))
    assert (patchify(rec.reconstruction, 4)[rec.mask] != MASK_GREY).any(-1).all()   # a prediction is drawn
    assert torch.all(torch.where(removed, MASK_GREY, patchify(rec.reconstruction, 4)) == MASK_GREY)
    assert 'reconstruction of each removed patch' in rec.caption
    assert f'{algorithm} predicts the removed patches only: the visible ones are grey' in rec.caption


def test_a_pca_target_is_drawn_through_its_own_basis():
    """The target owns the way back to pixels: a PCA model's picture is its coefficients through the basis."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_config('MAE', dict(type='PCATarget', num_components=8)).model)
    imgs = images()
    model.target.train()
    model.target(model.data_preprocessor.normalize(imgs))            # fits the basis, as the first batch would
    rec = reconstruct(model, imgs, generator=torch.Generator().manual_seed(0))
    x = model.data_preprocessor.normalize(imgs)
    drawn = model.target.inverse(model.reconstruct(x, rec.mask))     # [B, L, 48] patches
    expected = model.data_preprocessor.denormalize(unpatchify(drawn, 4, (4, 4)))
    torch.testing.assert_close(rec.reconstruction, expected)
    assert 'principal components' in rec.caption


def test_the_visualize_tool_draws_a_cae_checkpoint(tmp_path, capsys):
    make_checkpoint(tmp_path / 'ckpt.pth', cfg=tiny_config('CAE'))
    rec = load_tool('visualize').main([str(tmp_path / 'ckpt.pth'), '--out', str(tmp_path / 'recon.png'),
                                       '--num', '2'])
    assert (tmp_path / 'recon.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert rec.original.shape == (2, 3, 16, 16)
    assert 'CAE predicts the removed patches only' in capsys.readouterr().out


@pytest.mark.parametrize('algorithm', ['BEiT', 'CAE'])
def test_visualize_on_a_token_target_checkpoint_stops_with_one_error_line_saying_why_and_what_is_drawn(
        algorithm, tmp_path):
    tokenizer = make_tokenizer_file(tmp_path / 'tok.pth', vocab_size=16)
    make_checkpoint(tmp_path / 'ckpt.pth', cfg=tiny_config(algorithm, dict(type='TokenTarget', checkpoint=tokenizer)))
    with pytest.raises(SystemExit) as stop:
        load_tool('visualize').main([str(tmp_path / 'ckpt.pth'), '--out', str(tmp_path / 'recon.png')])
    message = str(stop.value.code)
    assert message.startswith('error: ') and '\n' not in message
    assert f'no reconstruction picture for {algorithm} with a TokenTarget' in message
    assert 'it predicts tokenizer code ids, not pixels' in message
    assert 'pictures are drawn for MAE, CAE and BEiT-style models with a PixelTarget or a PCATarget' in message
    assert not (tmp_path / 'recon.png').exists()


def test_training_curves_read_across_a_resume_and_plot(tmp_path):
    """A resumed run logs into a second timestamped folder; its records replace the first run's from the resume
    iteration on, and the curve is drawn from the merged list."""
    from mimbench.analysis.curves import plot_curves, read_scalars
    import json
    first, second = tmp_path / '20260101_000000/vis_data', tmp_path / '20260101_010000/vis_data'
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    lines = lambda rows: '\n'.join(json.dumps(r) for r in rows) + '\n'  # noqa: E731
    (first / 'scalars.json').write_text(lines([dict(iter=10, loss=2.0, lr=1e-3), dict(iter=20, loss=1.5, lr=1e-3),
                                               dict(iter=30, loss=9.9, lr=1e-3)]))
    (second / 'scalars.json').write_text(lines([dict(iter=30, loss=1.2, lr=9e-4), dict(coco_eval=1.0),
                                                dict(iter=40, loss=1.0, lr=8e-4)]))
    records = read_scalars(tmp_path)
    assert [(r['iter'], r['loss']) for r in records] == [(10, 2.0), (20, 1.5), (30, 1.2), (40, 1.0)]
    out = plot_curves(records, tmp_path / 'curves' / 'loss.png', title='tiny')
    assert out.read_bytes()[:4] == b'\x89PNG'
    assert plot_curves(records, tmp_path / 'curves' / 'bare') == tmp_path / 'curves' / 'bare.png'   # as savefig
    with pytest.raises(FileNotFoundError, match='vis_data'):
        read_scalars(tmp_path / 'curves')
