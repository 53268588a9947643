"""The encoder, decoder, patch helpers and pixel targets: shapes and the guarantees MAE relies on."""
from functools import partial

import pytest
import torch

from mimbench.masking import RandomMasker, split_indices
from mimbench.models import ARCHS, MAEDecoder, ViT, patchify, sincos_pos_embed_2d, unpatchify
from mimbench.registry import ENCODERS, HEADS
from mimbench.targets import PixelTarget


def micro_vit(**kw):
    return ViT(arch='micro', img_size=32, patch_size=4, depth=2, **kw)


def test_patchify_then_unpatchify_returns_the_image():
    imgs = torch.randn(2, 3, 32, 48)
    patches = patchify(imgs, 8)
    assert patches.shape == (2, 4 * 6, 8 * 8 * 3)
    assert torch.equal(unpatchify(patches, 8, (4, 6)), imgs)


def test_patchify_keeps_each_patch_together_in_row_major_order():
    imgs = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    patches = patchify(imgs, 2)
    # patch 1 is the top-right 2x2 block; its first value is channel 0 at (0, 2), then channel 1 at (0, 2)
    assert patches[0, 1, 0] == imgs[0, 0, 0, 2] and patches[0, 1, 1] == imgs[0, 1, 0, 2]


def test_patchify_rejects_sizes_that_are_not_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match='patch_size'):
        patchify(torch.zeros(1, 3, 30, 32), 4)


def test_sincos_position_embedding_is_fixed_distinct_and_zero_for_cls():
    emb = sincos_pos_embed_2d(64, (4, 4), cls_token=True)
    assert emb.shape == (17, 64)
    assert torch.all(emb[0] == 0)
    assert torch.cdist(emb[1:], emb[1:]).add(torch.eye(16)).min() > 0.1  # every position has its own code
    assert torch.equal(emb, sincos_pos_embed_2d(64, (4, 4), cls_token=True))


def test_encoder_position_embedding_is_not_trained():
    enc = micro_vit()
    assert 'pos_embed' not in dict(enc.named_parameters())
    assert 'pos_embed' in enc.state_dict()


def test_visible_path_runs_the_blocks_on_exactly_the_visible_tokens():
    enc = micro_vit()
    imgs = torch.randn(3, 3, 32, 32)
    mask = RandomMasker(enc.grid, ratio=0.75)(3)
    ids = split_indices(mask)
    seen = []
    enc.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    out = enc.forward_visible(imgs, ids.ids_keep)
    assert seen[0].shape == (3, 1 + 16, 192) and out.shape == (3, 17, 192)
    # [cls], then each visible patch's embedding with its own position, in ascending position order
    embedded = enc.patch_embed(imgs) + enc.pos_embed[:, 1:]                     # [B, L, D]
    torch.testing.assert_close(seen[0][:, 1:], embedded[~mask].view(3, 16, 192))
    torch.testing.assert_close(seen[0][:, 0], (enc.cls_token + enc.pos_embed[:, :1])[:, 0].expand(3, -1))


def test_visible_path_equals_the_full_path_when_nothing_is_masked():
    enc = micro_vit().eval()
    imgs = torch.randn(2, 3, 32, 32)
    all_ids = torch.arange(64).expand(2, -1)
    torch.testing.assert_close(enc.forward_visible(imgs, all_ids), enc(imgs))


def test_mask_token_path_puts_the_learned_token_exactly_at_masked_positions():
    enc = micro_vit(use_mask_token=True)
    imgs = torch.randn(2, 3, 32, 32)
    mask = RandomMasker(enc.grid, ratio=0.4)(2)
    seen = []
    enc.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    enc.forward_masked(imgs, mask)
    tokens = seen[0][:, 1:]                                    # drop cls
    expected_masked = enc.mask_token[0, 0] + enc.pos_embed[0, 1:]
    expected_visible = enc.patch_embed(imgs) + enc.pos_embed[:, 1:]
    torch.testing.assert_close(tokens[mask], expected_masked.expand(2, -1, -1)[mask])
    torch.testing.assert_close(tokens[~mask], expected_visible[~mask])


def test_mask_token_path_needs_an_encoder_built_for_it():
    enc = micro_vit()
    with pytest.raises(RuntimeError, match='use_mask_token'):
        enc.forward_masked(torch.randn(1, 3, 32, 32), torch.zeros(1, 64, dtype=torch.bool))


def test_encoder_options_drop_path_and_layer_scale_are_applied():
    enc = micro_vit(drop_path_rate=0.2, layer_scale_init=0.1)
    assert enc.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    assert torch.allclose(enc.blocks[0].ls1.gamma, torch.full((192,), 0.1))


def test_drop_path_rates_rise_linearly_over_the_blocks_as_python_floats():
    # the rates every stored run drew its drop decisions with: i * rate / (depth - 1), not a float32 linspace
    enc = ViT(arch='micro', img_size=32, patch_size=4, drop_path_rate=0.1)
    assert [b.drop_path1.drop_prob for b in enc.blocks[1:]] == [0.1 * i / 5 for i in range(1, 6)]
    assert isinstance(enc.blocks[0].drop_path1, torch.nn.Identity)


def test_the_encoder_is_a_timm_vision_transformer_the_runner_does_not_reinitialize():
    from timm.models.vision_transformer import VisionTransformer
    from mmengine.model import BaseModel

    enc = micro_vit()
    assert isinstance(enc, VisionTransformer)
    before = {k: v.clone() for k, v in enc.state_dict().items()}

    class Algorithm(BaseModel):    # what mmengine's Runner.train() does to a model: init_weights() on children
        def __init__(self):
            super().__init__()
            self.encoder = enc

        def forward(self, *args):
            raise NotImplementedError
    Algorithm().init_weights()
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    # timm's own features come for free, and agree with ours
    imgs = torch.randn(2, 3, 32, 32)
    enc.eval()
    assert torch.equal(enc.forward_features(imgs), enc(imgs))
    assert len(enc.forward_intermediates(imgs, indices=2, intermediates_only=True)) == 2


def test_bad_encoder_arguments_name_the_problem():
    with pytest.raises(ValueError, match="arch 'giant'"):
        ViT(arch='giant')
    with pytest.raises(ValueError, match='patch_size'):
        ViT(arch='micro', img_size=30, patch_size=4)
    with pytest.raises(ValueError, match='num_heads'):
        ViT(arch='micro', img_size=32, patch_size=4, num_heads=5)
    with pytest.raises(ValueError, match="weight_init 'xavier'; choose one of mae, beit"):
        ViT(arch='micro', img_size=32, patch_size=4, weight_init='xavier')


def test_encoder_sizes_match_the_papers():
    assert {arch: ARCHS[arch] for arch in ('base', 'large', 'huge')} == {
        'base': (768, 12, 12), 'large': (1024, 24, 16), 'huge': (1280, 32, 16)}
    with torch.device('meta'):  # shapes only: no memory, no init cost
        enc = ViT(arch='large', img_size=224, patch_size=16)
    assert (enc.embed_dim, len(enc.blocks), enc.num_patches) == (1024, 24, 196)
    assert sum(p.numel() for p in enc.parameters()) == pytest.approx(303.3e6, rel=0.01)


def test_decoder_restores_image_order_and_predicts_every_patch():
    dec = MAEDecoder(grid=(8, 8), in_dim=192, out_dim=48, embed_dim=64, depth=1, num_heads=2)
    mask = RandomMasker((8, 8), ratio=0.75)(2)
    ids = split_indices(mask)
    latent = torch.randn(2, 1 + 16, 192)
    pred = dec(latent, ids.ids_restore)
    assert pred.shape == (2, 64, 48)
    # A visible token's prediction depends on its own latent: changing latent j changes the patch ids_keep[j]
    # most at depth 0 (no mixing), so check with a block-free decoder.
    flat = MAEDecoder(grid=(8, 8), in_dim=192, out_dim=48, embed_dim=64, depth=0, num_heads=2)
    base = flat(latent, ids.ids_restore)
    bumped = latent.clone()
    bumped[0, 1 + 3] += 1.0
    changed = (flat(bumped, ids.ids_restore) - base).abs().sum(-1)[0].nonzero().flatten()
    assert changed.tolist() == [ids.ids_keep[0, 3].item()]


def test_decoder_bad_width_is_reported():
    with pytest.raises(ValueError, match='num_heads'):
        HEADS.build(dict(type='MAEDecoder', grid=(8, 8), in_dim=192, out_dim=48, embed_dim=100, num_heads=16))


def test_registry_lists_registered_names_for_an_unknown_type():
    with pytest.raises(KeyError, match="unknown encoder type 'ResNet'.*ViT"):
        ENCODERS.build(dict(type='ResNet'))


def test_pixel_target_normalizes_each_patch():
    target = PixelTarget(patch_size=4, normalize=True)
    t = target(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert t.shape == (2, 64, 48)
    torch.testing.assert_close(t.mean(-1), torch.zeros(2, 64), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.std(-1), torch.ones(2, 64), atol=1e-3, rtol=0)


def test_pixel_loss_counts_removed_patches_only():
    target = PixelTarget(patch_size=4)
    imgs = torch.randn(2, 3, 32, 32)
    mask = RandomMasker((8, 8), ratio=0.75)(2)
    pred = patchify(imgs, 4).clone()
    pred[~mask] += 100.0                         # wrong only where nothing was removed
    assert target.loss(pred, imgs, mask).item() == 0.0
    pred = patchify(imgs, 4).clone()
    pred[mask] += 1.0                            # off by one on every removed value
    assert target.loss(pred, imgs, mask).item() == pytest.approx(1.0)


def _beit_vit(**kw):
    enc = micro_vit(rel_pos_bias=True, layer_scale_init=0.1, **kw)
    with torch.no_grad():       # a learned bias, not the zero it starts from, so that every entry is checked
        enc.rel_pos_bias.relative_position_bias_table.normal_()
    return enc


def test_relative_position_bias_replaces_the_absolute_positions_and_draws_no_other_weight():
    torch.manual_seed(0)
    plain = micro_vit()
    torch.manual_seed(0)
    beit = micro_vit(rel_pos_bias=True)
    assert torch.all(beit.pos_embed == 0) and torch.any(plain.pos_embed != 0)
    theirs = beit.state_dict()
    assert set(theirs) - set(plain.state_dict()) == {'rel_pos_bias.relative_position_bias_table'}
    assert all(torch.equal(v, theirs[k]) for k, v in plain.state_dict().items() if k != 'pos_embed')
    assert torch.all(theirs['rel_pos_bias.relative_position_bias_table'] == 0)      # BEiT starts it at zero
    assert plain.attention_bias() is None


def test_relative_position_bias_encoder_computes_what_timms_beit_computes_with_a_shared_bias():
    from timm.models.beit import Beit

    ours = _beit_vit().eval()
    theirs = Beit(img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3, init_values=0.1, num_classes=0,
                  global_pool='token', use_abs_pos_emb=False, use_shared_rel_pos_bias=True,
                  norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)).eval()
    state = {}
    for name, value in ours.state_dict().items():
        if name == 'pos_embed':
            continue
        name = name.replace('.ls1.gamma', '.gamma_1').replace('.ls2.gamma', '.gamma_2')
        if name.endswith('attn.qkv.bias'):     # BEiT's attention has no key bias: ours is zero there
            q_bias, k_bias, v_bias = value.chunk(3)
            state[name.replace('qkv.bias', 'q_bias')], state[name.replace('qkv.bias', 'v_bias')] = q_bias, v_bias
            assert torch.all(k_bias == 0)
            continue
        state[name] = value
    theirs.load_state_dict(state, strict=True)
    imgs = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(imgs), theirs.forward_features(imgs), rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.forward_features(imgs), ours(imgs))
    with pytest.raises(NotImplementedError, match='relative position bias'):
        ours.forward_intermediates(imgs)


def test_a_subset_of_patches_reads_the_relative_bias_of_its_own_positions():
    # Encoding only the kept patches is attention over all patches with the others' keys masked out: the kept
    # tokens then see the same keys, biases and positions, and every other operation is per token.
    enc = _beit_vit().eval()
    imgs = torch.randn(2, 3, 32, 32)
    ids_keep = split_indices(RandomMasker(enc.grid, ratio=0.75)(2)).ids_keep                # [B, 16]
    kept = torch.cat([torch.zeros(2, 1, dtype=torch.long), ids_keep + 1], dim=1)            # [B, 17], cls first
    keys = torch.full((2, 1, 1, 65), float('-inf')).scatter(3, kept[:, None, None], 0.0)    # 0 for kept keys
    x = torch.cat([enc.cls_token.expand(2, -1, -1), enc.patch_embed(imgs)], dim=1)
    for block in enc.blocks:
        x = block(x, attn_mask=enc.attention_bias() + keys)
    expected = enc.norm(x).gather(1, kept[..., None].expand(-1, -1, 192))
    torch.testing.assert_close(enc.forward_visible(imgs, ids_keep), expected, rtol=1e-5, atol=1e-5)


def test_timms_layer_decay_puts_the_relative_position_bias_with_the_top_layer():
    from timm.optim import param_groups_layer_decay

    scales = {}
    for rel_pos_bias in (False, True):
        enc = micro_vit(rel_pos_bias=rel_pos_bias)
        groups = param_groups_layer_decay(enc, layer_decay=0.5)
        scales[rel_pos_bias] = {n: g['lr_scale'] for g in groups for p in g['params']
                                for n, q in enc.named_parameters() if q is p}
    table = scales[True].pop('rel_pos_bias.relative_position_bias_table')
    assert scales[True] == scales[False] and table == scales[False]['norm.weight'] == 1.0


def test_relative_position_bias_trains_through_gradient_checkpointing_alike():
    enc = _beit_vit()
    imgs = torch.randn(2, 3, 32, 32)
    ids_keep = split_indices(RandomMasker(enc.grid, ratio=0.5)(2)).ids_keep
    grads = []
    for checkpointing in (False, True):
        enc.set_grad_checkpointing(checkpointing)
        enc.zero_grad()
        enc.forward_visible(imgs, ids_keep).square().mean().backward()
        grads.append(enc.rel_pos_bias.relative_position_bias_table.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])


def _assert_beit_draw(weight, bound, rel=0.05):
    """BEiT's trunc_normal_(std=s) cuts at ±s: every value inside, the std of a unit normal cut at ±1 times s."""
    from scipy.stats import truncnorm

    assert weight.abs().max() <= bound
    assert weight.std().item() == pytest.approx(truncnorm(-1, 1).std() * bound, rel=rel)


def test_beit_init_cuts_every_normal_at_one_std_and_damps_each_blocks_residual_outputs_by_its_depth():
    torch.manual_seed(0)
    enc = ViT(arch='micro', img_size=32, patch_size=4, depth=4, layer_scale_init=0.1, use_mask_token=True,
              rel_pos_bias=True, weight_init='beit')
    for _ in range(2):     # at construction, and when drawn again (init_weights keeps the encoder's own rule)
        _assert_beit_draw(enc.patch_embed.proj.weight, 0.02)
        for token in (enc.cls_token, enc.mask_token):
            _assert_beit_draw(token, 0.02, rel=0.2)     # 192 values: a 3.5% standard error
        for layer, block in enumerate(enc.blocks, start=1):
            _assert_beit_draw(block.attn.qkv.weight, 0.02)
            _assert_beit_draw(block.mlp.fc1.weight, 0.02)
            # fix_init_weight: the two projections that write into the residual stream, / sqrt(2 * layer)
            _assert_beit_draw(block.attn.proj.weight, 0.02 / (2 * layer) ** 0.5)
            _assert_beit_draw(block.mlp.fc2.weight, 0.02 / (2 * layer) ** 0.5)
            assert torch.all(block.ls1.gamma == 0.1) and torch.all(block.ls2.gamma == 0.1)
        for name, param in enc.named_parameters():
            if name.endswith('.bias') or 'rel_pos_bias' in name:
                assert torch.all(param == 0), name
            if name.startswith('norm.') or '.norm' in name:
                assert torch.all(param == (1 if name.endswith('weight') else 0)), name
        with torch.no_grad():
            for param in enc.parameters():
                param.normal_()
        enc.init_weights()


def test_mae_init_stays_every_encoders_default_and_draws_what_every_stored_run_drew():
    torch.manual_seed(0)
    default = micro_vit()
    # the draws of this seed since before weight_init existed (torch 2.14.1's generator)
    assert default.cls_token[0, 0, :3].tolist() == [0.03430992737412453, 0.018014565110206604, -0.003613642882555723]
    assert default.blocks[1].attn.proj.weight[0, :3].tolist() == [-0.07867160439491272, 0.046589210629463196,
                                                                   0.031850576400756836]
    torch.manual_seed(0)
    mae = micro_vit(weight_init='mae').state_dict()
    assert all(torch.equal(v, mae[k]) for k, v in default.state_dict().items())
    # Xavier-uniform on a 192 x 192 projection: std sqrt(2 / 384) = 0.072, far from BEiT's cut normal
    assert micro_vit().blocks[1].attn.proj.weight.std().item() == pytest.approx(0.072, rel=0.05)


def test_linear_head_cuts_its_init_where_asked_and_keeps_torchs_default_draw_otherwise():
    from mimbench.models import LinearHead

    torch.manual_seed(0)
    head = LinearHead(192, 512)
    torch.manual_seed(0)
    reference = torch.nn.Linear(192, 512)
    torch.nn.init.trunc_normal_(reference.weight, std=0.02)
    assert torch.equal(head.head.weight, reference.weight)     # the stored BEiT-style cells' draw
    _assert_beit_draw(LinearHead(192, 512, init_cutoff=0.02).head.weight, 0.02)
    with pytest.raises(ValueError, match='init_cutoff must be positive'):
        LinearHead(192, 512, init_cutoff=0.0)
