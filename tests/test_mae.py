"""The MAE algorithm: what its loss looks at, and its two encoder variants."""
import pytest
import torch

from mimbench.algorithms import MAE, NonFiniteLossError
from mimbench.masking import split_indices
from mimbench.registry import MODELS


def build_mae(**overrides):
    cfg = dict(
        type='MAE',
        encoder=dict(type='ViT', arch='micro', img_size=32, patch_size=4, depth=2),
        decoder=dict(type='MAEDecoder', embed_dim=64, depth=1, num_heads=2),
        masker=dict(type='RandomMasker', ratio=0.75),
        target=dict(type='PixelTarget', normalize=True),
    )
    cfg.update(overrides)
    return MODELS.build(cfg)


def test_parts_are_sized_from_the_encoder():
    mae = build_mae()
    assert mae.masker.grid == (8, 8)
    assert mae.decoder.head.out_features == 4 * 4 * 3
    assert mae.decoder.embed.in_features == 192


def test_loss_gradient_is_zero_at_visible_patches():
    mae = build_mae()
    imgs = torch.randn(4, 3, 32, 32)
    mask = mae.masker(4)
    pred = mae.reconstruct(imgs, mask).detach().requires_grad_(True)
    mae.target.loss(pred, imgs, mask).backward()
    per_patch = pred.grad.abs().sum(-1)
    assert torch.all(per_patch[~mask] == 0)
    assert torch.all(per_patch[mask] > 0)


def test_encoder_sees_a_quarter_of_the_patches_at_mask_ratio_075():
    mae = build_mae()
    seen = []
    mae.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    mae.loss(torch.randn(2, 3, 32, 32))
    assert seen == [1 + 16]


def test_encoder_with_mask_tokens_sees_every_patch():
    mae = build_mae(mask_token_in_encoder=True)
    seen = []
    mae.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    loss = mae.loss(torch.randn(2, 3, 32, 32))['loss']
    assert seen == [1 + 64]
    loss.backward()
    assert mae.encoder.mask_token.grad is not None and mae.encoder.mask_token.grad.abs().sum() > 0


def test_reconstruction_has_one_prediction_per_patch_in_image_order():
    mae = build_mae()
    imgs = torch.randn(2, 3, 32, 32)
    mask = mae.masker(2)
    assert mae.reconstruct(imgs, mask).shape == (2, 64, 48)
    assert split_indices(mask).ids_keep.shape == (2, 16)


def test_tensor_mode_returns_features_of_all_patches():
    mae = build_mae()
    feats = mae(torch.randn(2, 3, 32, 32), mode='tensor')
    assert feats.shape == (2, 65, 192)


def test_a_nan_loss_stops_before_the_optimizer_step():
    mae = build_mae()
    with pytest.raises(NonFiniteLossError, match='last saved checkpoint'):
        mae.parse_losses({'loss': torch.tensor(float('nan'))})


def test_a_finite_loss_passes_through_parse_losses():
    loss, log_vars = build_mae().parse_losses({'loss': torch.tensor(0.5)})
    assert loss.item() == 0.5 and log_vars['loss'] == pytest.approx(0.5)


def test_unknown_masker_type_lists_the_available_ones():
    with pytest.raises(KeyError, match='RandomMasker'):
        build_mae(masker=dict(type='Checkerboard'))


def test_mae_is_exported_and_usable_without_the_runner():
    assert MAE is type(build_mae())
