"""The MAE algorithm: what its loss looks at, and its two encoder variants."""
import pytest
import torch

from mimbench.algorithms import MAE, NonFiniteLossError
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
    # Through MAE.loss itself, with the mask it draws: the prediction it scores is kept to read its gradient.
    mae = build_mae()
    seen = {}
    reconstruct = mae.reconstruct

    def keep_prediction(imgs, mask):
        pred = reconstruct(imgs, mask)
        pred.retain_grad()
        seen.update(pred=pred, mask=mask)
        return pred

    mae.reconstruct = keep_prediction
    mae.loss(torch.randn(4, 3, 32, 32))['loss'].backward()
    per_patch, mask = seen['pred'].grad.abs().sum(-1), seen['mask']     # [B, L], True = removed
    assert mask.sum(1).tolist() == [mae.masker.num_masked] * 4
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


@pytest.mark.parametrize('mask_token_in_encoder', [False, True], ids=['visible-only encoder', 'encoder w/ [M]'])
def test_reconstruction_has_one_prediction_per_patch_in_image_order(mask_token_in_encoder):
    # With attention switched off no token reads another, so row i of the output can only depend on patch i:
    # changing the pixels of a visible patch must change that row and no other, and changing a removed patch
    # must change nothing (the model never sees it).
    mae = build_mae(mask_token_in_encoder=mask_token_in_encoder).eval()
    with torch.no_grad():
        for block in [*mae.encoder.blocks, *mae.decoder.blocks]:
            block.attn.proj.weight.zero_()
            block.attn.proj.bias.zero_()
    imgs = torch.randn(2, 3, 32, 32)
    mask = mae.masker(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = mae.reconstruct(imgs, mask)
        assert before.shape == (2, 64, 48)
        for patch in range(64):
            row, col = divmod(patch, 8)
            edited = imgs.clone()
            edited[0, :, 4 * row:4 * row + 4, 4 * col:4 * col + 4] += 1.0
            changed = (mae.reconstruct(edited, mask) - before).abs().amax(-1) > 1e-5     # [B, L]
            expected = [] if mask[0, patch] else [patch]
            assert changed[0].nonzero().flatten().tolist() == expected, f'patch {patch}'
            assert not changed[1].any()


def test_tensor_mode_returns_features_of_all_patches():
    mae = build_mae()
    feats = mae(torch.randn(2, 3, 32, 32), mode='tensor')
    assert feats.shape == (2, 65, 192)


def test_a_nan_loss_stops_before_the_optimizer_step():
    # the model cannot know which checkpoint was saved: the runner adds that (test_training.py)
    mae = build_mae()
    with pytest.raises(NonFiniteLossError, match='stopped before the optimizer step'):
        mae.parse_losses({'loss': torch.tensor(float('nan'))})


def test_a_finite_loss_passes_through_parse_losses():
    loss, log_vars = build_mae().parse_losses({'loss': torch.tensor(0.5)})
    assert loss.item() == 0.5 and log_vars['loss'] == pytest.approx(0.5)


def test_unknown_masker_type_lists_the_available_ones():
    with pytest.raises(KeyError, match='RandomMasker'):
        build_mae(masker=dict(type='Checkerboard'))


def test_mae_is_usable_from_python_without_the_registry_or_the_runner():
    mae = MAE(encoder=dict(type='ViT', arch='micro', img_size=32, patch_size=4, depth=2),
              decoder=dict(type='MAEDecoder', embed_dim=64, depth=1, num_heads=2),
              masker=dict(type='RandomMasker', ratio=0.75), target=dict(type='PixelTarget', normalize=True))
    losses = mae.loss(torch.randn(2, 3, 32, 32))
    assert set(losses) == {'loss'} and losses['loss'].ndim == 0
    losses['loss'].backward()
    assert mae.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
