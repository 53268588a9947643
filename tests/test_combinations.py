"""Algorithms x targets x maskers are config changes: every shipped CAE/BEiT/cross-combination config builds and
takes a training step, and the ViT-B configs state the papers' recipes."""
from pathlib import Path

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mimbench.engine.runner import load_config
from mimbench.registry import MODELS
from tests.fixtures.tokenizers import make_tokenizer_file

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'


def build(name, tmp_path, patch_size=4):
    cfg = load_config(str(CONFIGS / name))
    target = cfg.model.target
    if target.type == 'TokenTarget':
        target.checkpoint = make_tokenizer_file(tmp_path / 'tok.pth', vocab_size=32, downsample=patch_size)
    if target.type == 'PCATarget':
        target.basis_file = str(tmp_path / 'pca.pth')
    return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('name, algorithm, target, masker', [
    ('cae_micro_cifar10.py', 'CAE', 'TokenTarget', 'BlockMasker'),
    ('beit_micro_cifar10.py', 'BEiT', 'TokenTarget', 'BlockMasker'),
    ('cae_pixel_micro_cifar10.py', 'CAE', 'PixelTarget', 'BlockMasker'),     # CAE + pixels
    ('mae_token_micro_cifar10.py', 'MAE', 'TokenTarget', 'RandomMasker'),    # MAE + tokens
    ('beit_random_micro_cifar10.py', 'BEiT', 'TokenTarget', 'RandomMasker'), # BEiT-style + random masking
    ('mae_pca_micro_cifar10.py', 'MAE', 'PCATarget', 'RandomMasker'),        # MAE + PCA
])
def test_config_builds_and_takes_a_training_step(tmp_path, name, algorithm, target, masker):
    cfg, model = build(name, tmp_path)
    assert (type(model).__name__, type(model.target).__name__, type(model.masker).__name__) == (
        algorithm, target, masker)
    with DefaultScope.overwrite_default_scope('mimbench'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.encoder.blocks[0].mlp.fc1.weight.detach().clone()
    batch = {'inputs': torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), 'label': torch.zeros(4)}
    log_vars = model.train().train_step(batch, optim_wrapper=wrapper)
    assert torch.isfinite(torch.as_tensor(log_vars['loss']))
    assert not torch.equal(before, model.encoder.blocks[0].mlp.fc1.weight)
    if algorithm == 'CAE':
        assert {'loss_decode', 'loss_align'} <= set(log_vars)
        assert {'type': 'MomentumTeacherHook'} in [dict(h) for h in cfg.custom_hooks]


def test_cae_vitb_states_the_authors_recipe():
    cfg = load_config(str(CONFIGS / 'cae_vitb.py'))
    m = cfg.model
    assert (m.masker.type, m.masker.num_masked, m.masker.min_block_patches) == ('BlockMasker', 98, 16)
    assert (m.regressor.depth, m.decoder.depth, m.align_weight, m.momentum) == (4, 4, 2.0, 0.0)
    assert (m.encoder.arch, m.encoder.layer_scale_init, m.encoder.drop_path_rate) == ('base', 0.1, 0.1)
    opt = cfg.optim_wrapper
    assert (opt.optimizer.lr, tuple(opt.optimizer.betas), opt.optimizer.weight_decay) == (1.5e-3, (0.9, 0.999), 0.05)
    assert opt.clip_grad.max_norm == 3.0 and cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.param_scheduler[0].end == 10


def test_beit_vitb_states_the_beit_v1_recipe():
    cfg = load_config(str(CONFIGS / 'beit_vitb.py'))
    m = cfg.model
    assert (m.type, m.masker.num_masked, m.masker.min_block_patches, m.head.type) == ('BEiT', 75, 16, 'LinearHead')
    assert (m.encoder.layer_scale_init, m.encoder.drop_path_rate, m.encoder.rel_pos_bias) == (0.1, 0.1, True)
    assert (m.encoder.weight_init, m.head.init_cutoff) == ('beit', 0.02)
    assert (cfg.optim_wrapper.optimizer.lr, cfg.train_cfg.max_epochs, cfg.param_scheduler[0].end) == (1.5e-3, 800, 10)
    assert cfg.train_dataloader.dataset.pipeline[0] == dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                                                           saturation=0.4, hue=0.0)


def test_cae_vitb_has_a_vitb_encoder_and_an_identical_teacher(tmp_path):
    cfg = load_config(str(CONFIGS / 'cae_vitb.py'), {'model.target': dict(_delete_=True, type='PixelTarget')})
    with torch.device('meta'):   # shapes only
        cae = MODELS.build(cfg.model)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(cae.encoder) == pytest.approx(85.8e6, rel=0.01)
    assert count(cae.teacher) == count(cae.encoder)
    assert len(cae.regressor.blocks) == 4 and len(cae.decoder.blocks) == 4


@pytest.mark.parametrize('name', ['cae_pixel_micro_cifar10.py', 'beit_micro_cifar10.py'])
def test_layer_scale_gammas_biases_norms_and_tokens_are_not_decayed(tmp_path, name):
    cfg, model = build(name, tmp_path)
    with DefaultScope.overwrite_default_scope('mimbench'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay_of = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    for pname, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.dim() == 1 or pname.split('.')[-1] in ('cls_token', 'mask_token')
        assert decay_of[id(param)] == (0.0 if no_decay else 0.05), pname
