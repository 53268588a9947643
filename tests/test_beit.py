"""BEiT-style pretraining: [M] replaces exactly the removed patches, the head reads only those, 40% block masking."""
import pytest
import torch

from mimbench.algorithms import BEiT
from mimbench.masking import BlockMasker
from mimbench.registry import MODELS
from tests.fixtures.tokenizers import make_tokenizer_file


def build_beit(**overrides):
    cfg = dict(
        type='BEiT',
        encoder=dict(type='ViT', arch='micro', img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2),
        target=dict(type='PixelTarget'),
    )
    cfg.update(overrides)
    return MODELS.build(cfg)


def test_encoder_input_has_the_mask_token_exactly_at_removed_positions():
    beit = build_beit()
    enc = beit.encoder
    embedded, block_input = [], []
    enc.patch_embed.register_forward_hook(lambda m, inp, out: embedded.append(out))
    enc.blocks[0].register_forward_pre_hook(lambda m, inp: block_input.append(inp[0]))
    mask = beit.masker(2)
    beit.loss(torch.randn(2, 3, 32, 32), mask)
    tokens = block_input[0][:, 1:] - enc.pos_embed[:, 1:]                 # [B, L, D], positions removed
    mask_token = enc.mask_token.expand_as(tokens)
    torch.testing.assert_close(tokens[mask], mask_token[mask])
    torch.testing.assert_close(tokens[~mask], embedded[0][~mask])
    assert not torch.allclose(embedded[0][mask], mask_token[mask])       # the replacement did something


def test_encoder_sees_every_patch_and_the_head_only_the_removed_ones():
    beit = build_beit()
    seen, head_in = [], []
    beit.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    beit.head.register_forward_hook(lambda m, inp, out: head_in.append(inp[0].shape))
    beit.loss(torch.randn(2, 3, 32, 32))
    assert seen == [1 + 64]
    assert head_in == [(2, beit.masker.num_masked, 32)]


def test_default_masking_is_block_wise_at_about_40_percent():
    masker = build_beit().masker
    assert isinstance(masker, BlockMasker)
    assert masker.num_masked == 26 and masker.ratio == pytest.approx(0.4, abs=0.01)


def test_loss_is_the_target_loss_of_the_head_output_at_removed_patches_only():
    beit = build_beit()
    imgs, mask = torch.randn(2, 3, 32, 32), beit.masker(2)
    head_out = []
    beit.head.register_forward_hook(lambda m, inp, out: head_out.append(out))
    loss = beit.loss(imgs, mask)['loss']
    target = beit.target(imgs)[mask].view(2, beit.masker.num_masked, -1)   # removed patches, ascending position
    torch.testing.assert_close(loss, (head_out[0] - target).pow(2).mean())
    loss.backward()
    assert beit.encoder.mask_token.grad.abs().sum() > 0


def test_token_target_sets_the_head_width_to_the_vocabulary(tmp_path):
    tok = make_tokenizer_file(tmp_path / 'tok.pth', vocab_size=16)
    beit = build_beit(target=dict(type='TokenTarget', checkpoint=tok))
    assert beit.head.head.out_features == 16
    losses = beit.loss(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(losses['loss'])


def test_head_width_that_does_not_match_the_tokenizer_vocabulary_fails_at_build_time(tmp_path):
    tok = make_tokenizer_file(tmp_path / 'tok.pth', vocab_size=16)
    with pytest.raises(ValueError, match='head out_dim=8192 does not match the target, which needs 16'):
        build_beit(target=dict(type='TokenTarget', checkpoint=tok), head=dict(type='LinearHead', out_dim=8192))


def test_beit_is_exported():
    assert BEiT is type(build_beit())
