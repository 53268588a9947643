"""Evaluation protocols: what a probe may touch, how its BatchNorm behaves, what kNN and layer decay compute,
when features are reused, which checkpoints are refused, and what a record holds."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mimbench.engine.runner import load_config
from mimbench.errors import MimbenchError
from mimbench.evaluation import (AttentiveProbeHead, Classifier, EncoderMismatchError, FeatureCache, Features,
                                 LinearProbeHead, cached_features, evaluate, extract_features, knn_predict,
                                 layer_decay_groups, linear_probe, load_encoder, read_record, resolve_checkpoint,
                                 write_record)
from mimbench.evaluation.attentive import normalize_tokens
from mimbench.evaluation.features import pool_tokens
from mimbench.evaluation.optim import set_lr, torch_threads, warmup_cosine
from mimbench.evaluation.probe import train_probe
from mimbench.evaluation.records import REQUIRED_FIELDS
from mimbench.evaluation.run import run_probe
from mimbench.registry import MODELS

from tests.fixtures.tools import load_tool  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / 'tests/configs/tiny_mae.py')   # ViT: 16 px, patch 4 (4x4 grid), width 32, depth 2, 2 heads


def make_checkpoint(path, options=None, seed=0):
    """An mmengine-style pretraining checkpoint of the tiny MAE: ``state_dict`` plus ``meta['cfg']``."""
    cfg = load_config(TINY, options)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': cfg.pretty_text, 'iter': 2}}, path)
    return model


def eval_config(protocol='linear', **overrides):
    """A seconds-long eval config on synthetic 16 px images in 4 classes."""
    cfg = dict(
        protocol=protocol,
        data=dict(train=dict(type='SyntheticImages', num_images=64, image_size=16, num_classes=4, seed=0),
                  test=dict(type='SyntheticImages', num_images=32, image_size=16, num_classes=4, seed=1),
                  num_classes=4),
        extract=dict(batch_size=32, dtype='float32', num_workers=0),
        pool='cls', optimizer=dict(type='LARS', momentum=0.9, weight_decay=0.0), base_lr=0.1,
        batch_size=32, epochs=3, warmup_epochs=1, k=5, temperature=0.07, num_heads=None)
    if protocol == 'attentive':
        cfg.update(pool='tokens', optimizer=dict(type='SGD', momentum=0.9, weight_decay=0.0), base_lr=0.05)
    if protocol == 'finetune':
        cfg.update(pool='mean', epochs=1, warmup_epochs=0.5, batch_size=16, base_lr=1e-3, layer_decay=0.75,
                   weight_decay=0.05, betas=(0.9, 0.999), drop_path=0.1, label_smoothing=0.1, mixup=0.8,
                   cutmix=1.0, mixup_prob=1.0, mixup_switch_prob=0.5, rand_augment=dict(num_ops=2, magnitude=9),
                   random_erasing=0.25, clip_grad=None, amp=False, num_workers=0, log_interval=1,
                   train_pipeline=[dict(type='RandomResizedCrop', size=16, scale=(0.08, 1.0)),
                                   dict(type='RandomHorizontalFlip')])
    cfg.update(overrides)
    return Config(cfg)


def synthetic(n, dim, num_classes=3, seed=0, scale=1.0, shift=0.0):
    """Gaussian clusters: class c centred on 3 * e_c, so a linear classifier separates them."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    feats = torch.randn(n, dim, generator=g) * 0.3
    feats[torch.arange(n), labels] += 3.0
    return Features(feats * scale + shift, labels)


# ------------------------------------------------------------------------------------------ loading weights

def test_the_encoder_is_rebuilt_from_the_config_stored_in_the_checkpoint(tmp_path):
    model = make_checkpoint(tmp_path / 'run/iter_2.pth')
    (tmp_path / 'run/last_checkpoint').write_text(str(tmp_path / 'run/iter_2.pth'))
    for given in ('run/iter_2.pth', 'run/latest.pth', 'run'):   # a file, the usual alias, a work dir
        loaded = load_encoder(tmp_path / given)
        assert loaded.checkpoint == str(tmp_path / 'run/iter_2.pth')
        for name, value in model.encoder.state_dict().items():
            assert torch.equal(loaded.encoder.state_dict()[name], value), name


def test_a_work_dir_moved_whole_still_resolves_to_its_own_checkpoint(tmp_path):
    make_checkpoint(tmp_path / 'run/iter_2.pth')
    (tmp_path / 'run/last_checkpoint').write_text(str(tmp_path / 'run/iter_2.pth'))   # mmengine: absolute
    import shutil
    shutil.copytree(tmp_path / 'run', tmp_path / 'copy')       # a copy serves its own files, not the original's
    assert resolve_checkpoint(tmp_path / 'copy') == str(tmp_path / 'copy/iter_2.pth')
    (tmp_path / 'run').rename(tmp_path / 'moved')
    assert resolve_checkpoint(tmp_path / 'moved') == str(tmp_path / 'moved/iter_2.pth')
    (tmp_path / 'moved/iter_2.pth').unlink()
    with pytest.raises(FileNotFoundError, match='last_checkpoint points to .*/run/iter_2.pth, which does not exist'):
        resolve_checkpoint(tmp_path / 'moved')


def test_a_checkpoint_under_another_config_that_still_loads_has_other_features(tmp_path):
    # 4 heads instead of 2 split the same weights otherwise: cached features of one must not serve the other
    make_checkpoint(tmp_path / 'ckpt.pth')
    heads = tmp_path / 'heads.py'
    heads.write_text(f"_base_ = ['{TINY}']\nmodel = dict(encoder=dict(num_heads=4))\n")
    own, other = load_encoder(tmp_path / 'ckpt.pth'), load_encoder(tmp_path / 'ckpt.pth', str(heads))
    assert own.identity == own.checkpoint_sha256 == other.checkpoint_sha256    # the cache keys of today stay
    assert other.identity != own.identity
    assert load_encoder(tmp_path / 'ckpt.pth', str(heads)).identity == other.identity
    assert load_encoder(tmp_path / 'ckpt.pth', TINY).identity == own.identity     # its own config, given


def test_a_checkpoint_of_another_architecture_is_refused_naming_keys_and_shapes(tmp_path):
    make_checkpoint(tmp_path / 'ckpt.pth')
    wider = tmp_path / 'wider.py'
    wider.write_text(f"_base_ = ['{TINY}']\nmodel = dict(encoder=dict(embed_dim=48))\n")
    with pytest.raises(EncoderMismatchError, match=r'patch_embed\.proj\.weight: checkpoint \[32, 3, 4, 4\] '
                                                   r'vs config \[48, 3, 4, 4\]'):
        load_encoder(tmp_path / 'ckpt.pth', str(wider))
    deeper = tmp_path / 'deeper.py'
    deeper.write_text(f"_base_ = ['{TINY}']\nmodel = dict(encoder=dict(depth=3))\n")
    with pytest.raises(EncoderMismatchError, match=r'missing from the checkpoint: blocks\.2\.'):
        load_encoder(tmp_path / 'ckpt.pth', str(deeper))


@pytest.mark.parametrize('algorithm', ['BEiT', 'MAE encoder w/ [M]'])
def test_an_encoder_pretrained_with_a_mask_token_is_evaluated_without_it(tmp_path, algorithm):
    # BEiT and MAE's "encoder w/ [M]" train an [M] embedding that whole-image evaluation never reads.
    cfg = load_config(TINY, {'model.mask_token_in_encoder': True})
    if algorithm == 'BEiT':
        cfg.model = dict(type='BEiT', encoder=cfg.model.encoder, target=cfg.model.target,
                         masker=dict(type='BlockMasker', ratio=0.4, min_block_patches=2),
                         data_preprocessor=cfg.model.data_preprocessor)
    model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': cfg.pretty_text}}, tmp_path / 'ckpt.pth')
    assert 'encoder.mask_token' in model.state_dict()
    loaded = load_encoder(tmp_path / 'ckpt.pth')
    assert loaded.encoder.mask_token is None
    for name, value in loaded.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name


def test_the_eval_tool_reports_an_architecture_mismatch_in_one_line(tmp_path):
    main = load_tool('eval').main
    make_checkpoint(tmp_path / 'ckpt.pth')
    wider = tmp_path / 'wider.py'
    wider.write_text(f"_base_ = ['{TINY}']\nmodel = dict(encoder=dict(embed_dim=48, num_heads=2))\n")
    with pytest.raises(SystemExit, match='error: the encoder in .* does not match the config'):
        main([str(tmp_path / 'ckpt.pth'), '--protocol', 'knn', '--config', str(wider)])


# ------------------------------------------------------------------------------------------------- features

def test_features_come_from_the_eval_mode_encoder_in_every_pooling():
    encoder = load_config(TINY).model.encoder
    from mimbench.registry import ENCODERS
    vit = ENCODERS.build(dict(encoder, drop_path_rate=0.5)).train()    # drop path would randomize a train pass
    pre = MODELS.build(dict(type='ImagePreprocessor'))
    from mimbench.data import SyntheticImages
    ds = SyntheticImages(num_images=10, image_size=16)
    a = extract_features(vit, pre, ds, ('cls', 'mean', 'tokens'), batch_size=4)
    b = extract_features(vit, pre, ds, ('cls', 'mean', 'tokens'), batch_size=10)
    with torch.no_grad():
        out = vit.eval()(pre.normalize(ds.images))
    torch.testing.assert_close(a['cls'].features, out[:, 0])
    torch.testing.assert_close(a['mean'].features, out[:, 1:].mean(1))
    assert a['tokens'].features.dtype == torch.float16 and a['tokens'].features.shape == (10, 16, 32)
    torch.testing.assert_close(a['tokens'].features, out[:, 1:].half())
    torch.testing.assert_close(a['cls'].features, b['cls'].features)
    assert torch.equal(a['cls'].labels, ds.labels)
    assert not any(p.requires_grad for p in vit.parameters())
    with pytest.raises(ValueError, match="pool must be one of cls, mean, tokens, got 'max'"):
        pool_tokens(out, 'max')


def test_features_are_extracted_once_and_reused_from_the_cache(tmp_path, monkeypatch):
    make_checkpoint(tmp_path / 'a.pth', seed=0)
    make_checkpoint(tmp_path / 'b.pth', seed=1)
    cache = FeatureCache(tmp_path / 'features')
    from mimbench.data import SyntheticImages
    ds = SyntheticImages(num_images=12, image_size=16)
    loaded = load_encoder(tmp_path / 'a.pth')
    first, report = cached_features(loaded, ds, 'train', ['cls', 'tokens'], cache, batch_size=6)
    assert report['extracted'] == ['cls', 'tokens'] and report['cache_hits'] == []
    assert len(list((tmp_path / 'features').glob('*.pt'))) == 2
    assert not list((tmp_path / 'features').glob('*.tmp'))

    import mimbench.evaluation.features as features_module

    def no_extraction(*args, **kwargs):
        raise AssertionError('the encoder ran although the features were cached')

    monkeypatch.setattr(features_module, 'extract_features', no_extraction)
    again, report = cached_features(load_encoder(tmp_path / 'a.pth'), ds, 'train', ['cls', 'tokens'], cache)
    assert report['cache_hits'] == ['cls', 'tokens']
    assert torch.equal(again['cls'].features, first['cls'].features)
    assert torch.equal(again['tokens'].features, first['tokens'].features)
    # Other weights, another split's data, or another pooling are other files.
    for call in (lambda: cached_features(load_encoder(tmp_path / 'b.pth'), ds, 'train', ['cls'], cache),
                 lambda: cached_features(loaded, SyntheticImages(num_images=12, image_size=16, seed=5), 'train',
                                         ['cls'], cache),
                 lambda: cached_features(loaded, ds, 'train', ['mean'], cache)):
        with pytest.raises(AssertionError, match='the encoder ran'):
            call()


@pytest.mark.parametrize('has_units, expected', [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_is_bfloat16_only_on_a_cpu_that_multiplies_it_natively(monkeypatch, has_units, expected):
    import mimbench.machine as machine
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: has_units)
    assert machine.resolve_dtype('auto', 'cpu') == expected
    assert machine.resolve_dtype('float32', 'cpu') == torch.float32       # explicit names are obeyed
    assert machine.resolve_dtype('bfloat16', 'cpu') == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of 'float32', 'bfloat16', 'auto', got 'fp16'"):
        machine.resolve_dtype('fp16')


@pytest.mark.parametrize('has_units, resolved', [(False, 'float32'), (True, 'bfloat16')])
def test_auto_extraction_shares_the_cache_with_the_dtype_it_resolves_to(tmp_path, monkeypatch, has_units, resolved):
    import mimbench.machine as machine
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: has_units)
    make_checkpoint(tmp_path / 'a.pth')
    from mimbench.data import SyntheticImages
    ds = SyntheticImages(num_images=8, image_size=16)
    cache, loaded = FeatureCache(tmp_path / 'features'), load_encoder(tmp_path / 'a.pth')
    named, report = cached_features(loaded, ds, 'train', ['cls'], cache, dtype=resolved)
    assert report['dtype'] == resolved
    auto, report = cached_features(loaded, ds, 'train', ['cls'], cache, dtype='auto')
    assert report['cache_hits'] == ['cls'] and report['dtype'] == resolved       # files written before 'auto' existed
    other = 'bfloat16' if resolved == 'float32' else 'float32'
    _, report = cached_features(loaded, ds, 'train', ['cls'], cache, dtype=other)
    assert report['extracted'] == ['cls'] and report['dtype'] == other          # the other dtype: other files
    assert torch.equal(auto['cls'].features, named['cls'].features)


@pytest.mark.parametrize('capability, expected', [((7, 0), torch.float32), ((8, 0), torch.bfloat16)])
def test_auto_dtype_on_a_gpu_is_bfloat16_from_ampere_on(monkeypatch, capability, expected):
    # torch.cuda.is_bf16_supported() also says yes for a V100, which only emulates bf16
    from mimbench.machine import resolve_dtype
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
    assert resolve_dtype('auto', 'cuda') == expected


def test_the_ablation_eval_hash_records_what_auto_resolved_to(monkeypatch):
    import mimbench.machine as machine
    from mimbench.ablation.cells import Scale
    from mimbench.ablation.execute import eval_config as ablation_eval_config
    paper = Scale.load('paper')                # its probes keep the eval configs' 'auto'
    hashes = {}
    for has_units in (False, True):
        monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: has_units)
        _, cfg, hashes[has_units] = ablation_eval_config(paper, 'lin')
        assert cfg.extract.dtype == ('bfloat16' if has_units else 'float32')
    assert hashes[False] != hashes[True]


def test_the_micro_ablation_pins_its_probes_to_bfloat16_whatever_the_cpu(monkeypatch):
    # every stored micro cell was evaluated in bf16 under these eval hashes; a CPU without bf16 units keeps them
    import mimbench.machine as machine
    from mimbench.ablation.cells import Scale
    from mimbench.ablation.execute import eval_config as ablation_eval_config
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: False)
    micro = Scale.load('micro')
    # ft: another hash since fine-tuning trains under the runner (protocol version 2) and since its recipe was
    # calibrated (10 epochs, pretraining's augmentation); no cell had been stored with ft before either change
    stored = dict(lin='fbcb4927f6c6', lin_mean='ac9f5059e3f2', knn='1351ea105437', att='ba49926da787',
                  ft='1486db10da74')
    assert {name: ablation_eval_config(micro, name)[2] for name in stored} == stored
    assert ablation_eval_config(micro, 'att')[1].token_dtype == 'bfloat16'
    assert Config.fromfile(str(REPO / 'configs/eval/linear_micro.py')).extract.dtype == 'auto'


def test_a_new_feature_extraction_version_is_a_new_identity_of_every_probe_but_not_of_fine_tuning(monkeypatch):
    # stored metrics of probes on the old features must not be reused, as their cached features are not
    import mimbench.evaluation.features as features
    from mimbench.ablation.cells import Scale
    from mimbench.ablation.execute import eval_config as ablation_eval_config
    micro = Scale.load('micro')
    names = ('lin', 'lin_mean', 'knn', 'att', 'ft')
    before = {name: ablation_eval_config(micro, name)[2] for name in names}
    monkeypatch.setattr(features, 'FEATURES_VERSION', features.FEATURES_VERSION + 1)
    after = {name: ablation_eval_config(micro, name)[2] for name in names}
    assert [name for name in names if after[name] == before[name]] == ['ft']


# ------------------------------------------------------------------------------------------------- probes

@pytest.mark.parametrize('protocol', ['linear', 'attentive'])
def test_a_probe_leaves_the_encoder_frozen(tmp_path, protocol):
    make_checkpoint(tmp_path / 'ckpt.pth')
    loaded = load_encoder(tmp_path / 'ckpt.pth')
    before = {k: v.clone() for k, v in loaded.encoder.state_dict().items()}
    top1, hparams, _ = run_probe(protocol, loaded, eval_config(protocol), cache=None)
    assert 0 <= top1 <= 100 and hparams['epochs'] == 3
    assert not any(p.requires_grad for p in loaded.encoder.parameters())
    for name, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, before[name]), f'{name} changed during a {protocol} probe'


def test_the_linear_head_batchnorm_has_no_affine_and_uses_running_statistics_in_eval():
    head = LinearProbeHead(8, 3)
    assert head.bn.weight is None and head.bn.bias is None and not head.bn.affine
    assert [n for n, _ in head.named_parameters()] == ['fc.weight', 'fc.bias']
    # Features far from zero mean / unit variance: the BatchNorm is what makes them easy to probe.
    train = synthetic(600, 8, scale=20.0, shift=50.0)
    test = synthetic(300, 8, seed=1, scale=20.0, shift=50.0)
    result = linear_probe(train, test, 3, epochs=30, batch_size=64, warmup_epochs=2, base_lr=1.0,
                          optimizer=dict(type='SGD', momentum=0.9))
    assert result.accuracy == 100.0
    head = result.head
    # Training updated the running statistics towards the training features'.
    torch.testing.assert_close(head.bn.running_mean, train.features.mean(0), atol=1.5, rtol=0.02)
    torch.testing.assert_close(head.bn.running_var, train.features.var(0), atol=0, rtol=0.25)
    # In eval mode a prediction uses those statistics, so it does not depend on the rest of the batch.
    head.eval()
    x = test.features[:5]
    expected = head.fc((x - head.bn.running_mean) / (head.bn.running_var + head.bn.eps).sqrt())
    with torch.no_grad():
        torch.testing.assert_close(head(x), expected)
        torch.testing.assert_close(head(x[:1]), head(x)[:1])
    # In training mode it normalizes with the batch's own statistics.
    head.train()
    with torch.no_grad():
        normed = head.bn(test.features[:64])
    torch.testing.assert_close(normed.mean(0), torch.zeros(8), atol=1e-4, rtol=0)


def test_lars_rescales_matrices_but_not_biases():
    from mimbench.evaluation.optim import build_probe_optimizer
    head = LinearProbeHead(4, 2)
    opt = build_probe_optimizer(dict(type='LARS', momentum=0.9, weight_decay=0.0), head, lr=0.5)
    assert type(opt).__name__ == 'Lars'
    (matrices, vectors) = opt.param_groups
    assert matrices['params'][0] is head.fc.weight and matrices['always_adapt']
    assert vectors['params'][0] is head.fc.bias and not vectors['always_adapt'] and vectors['weight_decay'] == 0


@pytest.mark.parametrize('token_dtype, tol', [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_the_attentive_head_equals_textbook_cross_attention(token_dtype, tol):
    torch.manual_seed(0)
    head = AttentiveProbeHead(12, 5, num_heads=3, token_dtype=token_dtype)
    with torch.no_grad():   # move every parameter off its initial value, so each one matters
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    tokens = torch.randn(4, 7, 12) * 2 + 1
    # The block as written in the papers: LayerNorm on each input, project, multi-head attention, project.
    H, hd = 3, 4
    q = head.q(head.norm_q(head.query)).view(1, 1, H, hd).transpose(1, 2).expand(4, -1, -1, -1)
    k = F.linear(head.norm_k(tokens), head.k.weight).view(4, 7, H, hd).transpose(1, 2)
    v = head.v(head.norm_v(tokens)).view(4, 7, H, hd).transpose(1, 2)
    attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(4, 12)
    torch.testing.assert_close(head.attend(tokens), head.proj(attended), atol=tol, rtol=tol)
    # Training feeds tokens normalized once up front; the head then skips its own normalization.
    head.inputs_normalized = True
    normed = normalize_tokens(tokens, head.norm_k.eps, dtype=token_dtype)
    torch.testing.assert_close(normed.float(), F.layer_norm(tokens, (12,), eps=1e-6), atol=tol, rtol=tol)
    torch.testing.assert_close(head.attend(normed), head.proj(attended), atol=tol, rtol=tol)


def test_the_attentive_query_starts_at_zero_so_the_first_pooling_is_a_plain_average():
    head = AttentiveProbeHead(8, 2, num_heads=2)
    assert torch.equal(head.query, torch.zeros(1, 8))
    assert head.bn.weight is None                             # BatchNorm(affine=False), as in the linear probe
    tokens = torch.randn(3, 5, 8)
    with torch.no_grad():
        expected = head.proj(head.v(head.norm_v(tokens)).mean(dim=1))
        torch.testing.assert_close(head.attend(tokens), expected, atol=1e-6, rtol=1e-5)


def test_the_attentive_probe_finds_the_token_that_carries_the_class():
    # Class information in one token position only, hidden among noise tokens whose average blurs it.
    def tokens(n, seed):
        gen = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % 2
        x = torch.randn(n, 16, 8, generator=gen)
        x[:, 3, 0] = 6.0 * (2 * labels - 1) + torch.randn(n, generator=gen) * 0.1   # token 3 carries the sign
        x[:, 3, 1] = 8.0                                                             # and is recognizable
        return Features(x.half(), labels)

    from mimbench.evaluation import attentive_probe
    train, test = tokens(512, 0), tokens(256, 1)
    result = attentive_probe(train, test, 2, num_heads=2, epochs=30, batch_size=64, base_lr=2.0, warmup_epochs=2)
    assert result.accuracy > 92
    # Averaging the (normalized) tokens instead loses most of the signal.
    mean = [Features(F.layer_norm(f.features.float(), (8,)).mean(1), f.labels) for f in (train, test)]
    averaged = linear_probe(*mean, 2, epochs=30, batch_size=64, base_lr=1.0,
                            optimizer=dict(type='SGD', momentum=0.9))
    assert averaged.accuracy < 80


# ---------------------------------------------------------------------------------------------------- kNN

def test_knn_weights_votes_by_similarity_with_the_temperature():
    def at(cos, sign=1):   # a unit vector at the given cosine to the test point (1, 0)
        return [cos, sign * math.sqrt(1 - cos ** 2)]

    # One very close neighbour of class 0, two slightly farther of class 1, and a far class-0 point outside k.
    # (Lengths differ on purpose: cosine similarity ignores them.)
    lengths = torch.tensor([[3.0], [0.5], [7.0], [1.0]])
    train = torch.tensor([at(0.99), at(0.90), at(0.90, -1), [-1.0, 0.0]]) * lengths
    labels = torch.tensor([0, 1, 1, 0])
    test = torch.tensor([[2.0, 0.0]])
    # T = 0.07: exp(0.99 / 0.07) = 1.4e6 outweighs 2 exp(0.90 / 0.07) = 7.7e5. T = 1: 2.7 loses to 2 x 2.5.
    assert knn_predict(train, labels, test, 2, k=3, temperature=0.07).tolist() == [0]
    assert knn_predict(train, labels, test, 2, k=3, temperature=1.0).tolist() == [1]
    # k = 1: only the nearest votes.
    assert knn_predict(train, labels, test, 2, k=1, temperature=1.0).tolist() == [0]


def test_knn_in_chunks_predicts_what_it_predicts_at_once():
    train, test = synthetic(500, 16, num_classes=5), synthetic(103, 16, num_classes=5, seed=1)
    noisy = test.features + torch.randn(test.features.shape, generator=torch.Generator().manual_seed(0)) * 1.5
    whole = knn_predict(train.features, train.labels, noisy, 5, chunk_size=10_000)
    chunked = knn_predict(train.features, train.labels, noisy, 5, chunk_size=7)
    assert torch.equal(whole, chunked)
    assert (whole == test.labels).float().mean() > 0.8


# ----------------------------------------------------------------------------------------------- fine-tune

def test_layer_wise_decay_gives_each_block_its_own_lr():
    from mimbench.registry import ENCODERS
    vit = ENCODERS.build(dict(type='ViT', arch='micro', img_size=16, patch_size=4, embed_dim=32, depth=3,
                              num_heads=2, use_mask_token=True))
    model = Classifier(vit, 10)
    opt = torch.optim.AdamW(layer_decay_groups(model, layer_decay=0.5, weight_decay=0.05), lr=1.0)
    set_lr(opt, 2.0)
    name_of = {id(p): n for n, p in model.named_parameters()}
    lr_of = {name_of[id(p)]: g['lr'] for g in opt.param_groups for p in g['params']}
    wd_of = {name_of[id(p)]: g['weight_decay'] for g in opt.param_groups for p in g['params']}
    # lr = 2.0 * 0.5 ** (depth + 1 - layer): embeddings are layer 0, block i is layer i + 1, and the final norm
    # sits with the head at depth + 1 (MAE's rule; timm's own ViT grouping puts it with the last block).
    assert (lr_of['encoder.patch_embed.proj.weight'] == lr_of['encoder.cls_token'] == lr_of['encoder.mask_token']
            == 2.0 * 0.5 ** 4)
    for i in range(3):
        assert lr_of[f'encoder.blocks.{i}.attn.qkv.weight'] == 2.0 * 0.5 ** (3 - i)
        assert lr_of[f'encoder.blocks.{i}.mlp.fc2.bias'] == 2.0 * 0.5 ** (3 - i)
    assert lr_of['encoder.norm.weight'] == lr_of['fc_norm.weight'] == lr_of['head.weight'] == 2.0
    assert set(lr_of) == {n for n, _ in model.named_parameters()}
    # Weight decay on matrices only: not on biases, norms or the cls and [M] tokens.
    assert wd_of['encoder.blocks.0.attn.qkv.weight'] == wd_of['head.weight'] == 0.05
    assert wd_of['encoder.cls_token'] == wd_of['encoder.mask_token'] == wd_of['head.bias'] == 0.0
    assert wd_of['encoder.blocks.1.norm1.weight'] == 0.0


def test_layer_wise_decay_puts_a_shared_relative_position_bias_with_the_head_as_beit_does():
    from mimbench.registry import ENCODERS
    vit = ENCODERS.build(dict(type='ViT', arch='micro', img_size=16, patch_size=4, embed_dim=32, depth=3,
                              num_heads=2, rel_pos_bias=True))
    model = Classifier(vit, 10)
    groups = layer_decay_groups(model, layer_decay=0.5, weight_decay=0.05)
    group_of = lambda param: next(g for g in groups if any(p is param for p in g['params']))  # noqa: E731
    table = group_of(vit.rel_pos_bias.relative_position_bias_table)
    # BEiT's get_num_layer_for_vit gives 'rel_pos_bias' the head's layer (no layer of its own above the head's,
    # which would decay every other layer once more); it is a matrix, decayed as BEiT does
    assert table['lr_scale'] == group_of(model.head.weight)['lr_scale'] == 1.0 and table['weight_decay'] == 0.05
    assert sorted({g['lr_scale'] for g in groups}) == [0.5 ** k for k in range(4, -1, -1)]    # stem, 3 blocks, head


def test_the_authors_pool_averages_the_last_block_without_the_final_norm_and_freezes_that_norm():
    from mimbench.registry import ENCODERS
    torch.manual_seed(0)
    vit = ENCODERS.build(dict(type='ViT', arch='micro', img_size=16, patch_size=4, embed_dim=32, depth=2,
                              num_heads=2))
    with torch.no_grad():      # a pretrained final norm is not the identity: make this one visibly not
        vit.norm.weight.uniform_(0.5, 2.0)
        vit.norm.bias.uniform_(-1.0, 1.0)
    imgs = torch.randn(3, 3, 16, 16)
    blocks_out = vit(imgs, final_norm=False)                                        # [B, 1 + L, D]
    assert torch.allclose(vit.norm(blocks_out), vit(imgs), atol=1e-6)
    # two heads on one encoder: only their forward passes are compared (the first froze vit.norm)
    theirs, ours = Classifier(vit, 10, pool='mean_pre_norm'), Classifier(vit, 10, pool='mean')
    torch.nn.init.normal_(theirs.head.weight)          # a head of std 1, not 2e-5, so outputs differ visibly
    ours.load_state_dict(theirs.state_dict())                                    # the same head and fc_norm
    expected = theirs.head(theirs.fc_norm(blocks_out[:, 1:].mean(dim=1)))
    assert torch.allclose(theirs(imgs), expected, atol=1e-6)
    assert not torch.allclose(ours(imgs), expected, atol=0.1)       # 'mean' averages after the final norm
    # the final norm takes no part: frozen, so no optimizer group holds it and DDP expects no gradient for it
    assert not any(p.requires_grad for p in vit.norm.parameters())
    grouped = {id(p) for g in layer_decay_groups(theirs, layer_decay=0.75, weight_decay=0.05) for p in g['params']}
    assert {n for n, p in theirs.named_parameters() if id(p) not in grouped} == {'encoder.norm.weight',
                                                                                  'encoder.norm.bias'}
    with pytest.raises(ValueError, match="pool must be one of mean, mean_pre_norm, cls, got 'avg'"):
        Classifier(vit, 10, pool='avg')


def test_the_paper_fine_tuning_recipe_pools_as_the_authors_and_the_micro_one_keeps_its_stored_pooling():
    from mimbench.evaluation.run import load_eval_config
    assert load_eval_config('finetune', 'configs/eval/finetune_vitb.py').pool == 'mean_pre_norm'
    assert load_eval_config('finetune', 'configs/eval/finetune_micro.py').pool == 'mean'


def test_warmup_then_cosine():
    factors = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] < 0.001


def test_fine_tuning_trains_the_whole_network_with_the_recipe_augmentations(tmp_path):
    make_checkpoint(tmp_path / 'ckpt.pth')
    loaded = load_encoder(tmp_path / 'ckpt.pth', drop_path_rate=0.1)
    before = {k: v.clone() for k, v in loaded.encoder.state_dict().items()}
    cfg = eval_config('finetune')
    from mimbench.evaluation.run import run_finetune
    lines = []
    top1, hparams, extra = run_finetune(loaded, cfg, max_iters=3, log=lines.append)
    assert 0 <= top1 <= 100 and extra['data'] == dict(train=64, test=32)
    assert hparams['iters'] == 3 and hparams['schedule_iters'] == 4 and hparams['drop_path_rate'] == 0.1
    assert any('iter 3/3' in line and 'loss' in line and 'img/s' in line for line in lines)
    changed = [k for k, v in loaded.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert 'blocks.0.attn.qkv.weight' in changed and 'patch_embed.proj.weight' in changed


def test_fine_tuning_takes_its_pooling_from_the_config_through_the_runner(tmp_path):
    make_checkpoint(tmp_path / 'ckpt.pth')
    loaded = load_encoder(tmp_path / 'ckpt.pth')
    before = {k: v.clone() for k, v in loaded.encoder.state_dict().items()}
    from mimbench.evaluation.run import run_finetune
    _, hparams, _ = run_finetune(loaded, eval_config('finetune', pool='mean_pre_norm'), max_iters=2)
    assert hparams['pool'] == 'mean_pre_norm'
    changed = {k for k, v in loaded.encoder.state_dict().items() if not torch.equal(v, before[k])}
    # the final norm, unused, stays as pretrained while everything else trains
    assert {'norm.weight', 'norm.bias'}.isdisjoint(changed) and 'blocks.1.norm1.weight' in changed


def test_fine_tuning_progress_names_the_epoch_each_logged_iteration_belongs_to(tmp_path):
    make_checkpoint(tmp_path / 'ckpt.pth')
    from mimbench.evaluation.run import run_finetune
    lines = []
    run_finetune(load_encoder(tmp_path / 'ckpt.pth'), eval_config('finetune'), log=lines.append)   # 4 iterations
    progress = [line.split()[:4] for line in lines if line.startswith('  epoch')]
    assert progress == [['epoch', '1/1', 'iter', f'{i}/4'] for i in range(1, 5)]    # the last is not 'epoch 2/1'


def test_fine_tuning_runs_under_the_training_runner_and_resumes_to_the_uninterrupted_state(tmp_path):
    """Fine-tuning trains through MIMRunner like pretraining: a checkpoint every checkpoint_interval iterations
    in its work dir, and a run stopped there continues to exactly what an unbroken run reaches."""
    from mimbench.evaluation.run import run_finetune
    make_checkpoint(tmp_path / 'ckpt.pth')
    cfg = eval_config('finetune', epochs=2, checkpoint_interval=2)     # 4 iterations per epoch

    def run(work_dir, max_iters, log=None):
        loaded = load_encoder(tmp_path / 'ckpt.pth', drop_path_rate=0.1)
        top1, hparams, _ = run_finetune(loaded, cfg, max_iters=max_iters, work_dir=str(work_dir),
                                        log=log or (lambda _: None))
        return loaded.encoder, top1, hparams

    straight, top1, hparams = run(tmp_path / 'straight', 6)
    assert hparams['iters'] == 6 and (tmp_path / 'straight/iter_6.pth').is_file()
    run(tmp_path / 'split', 4)
    lines = []
    resumed, top1_resumed, _ = run(tmp_path / 'split', 6, lines.append)
    assert [line.split()[3] for line in lines if ' iter ' in line] == ['5/6', '6/6']   # it went on from 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert top1_resumed == top1

    other = eval_config('finetune', epochs=2, checkpoint_interval=2, base_lr=2e-3)
    with pytest.raises(MimbenchError, match=r"holds a fine-tuning run of another recipe \(base_lr 0.001 -> 0.002\)"):
        run_finetune(load_encoder(tmp_path / 'ckpt.pth', drop_path_rate=0.1), other, max_iters=6,
                     work_dir=str(tmp_path / 'split'))


@pytest.mark.slow
def test_fine_tuning_under_torchrun_trains_data_parallel_and_rank_0_writes_the_record(tmp_path):
    import os
    import subprocess
    import sys
    make_checkpoint(tmp_path / 'run/iter_2.pth')
    config = tmp_path / 'finetune_tiny.py'
    config.write_text(eval_config('finetune', batch_size=8).pretty_text)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--standalone',
                          str(REPO / 'tools/eval.py'), str(tmp_path / 'run/iter_2.pth'), '--protocol',
                          'finetune', '--config-eval', str(config), '--launcher', 'pytorch', '--device', 'cpu',
                          '--max-iters', '3', '--out', str(tmp_path / 'ft.json')],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    record = read_record(tmp_path / 'ft.json')
    assert record['hparams']['iters'] == 3
    # two processes of batch 8 split the 64 images: 4 iterations per epoch of 16 images, not 8 of 8
    assert record['hparams']['schedule_iters'] == 4
    assert (tmp_path / 'ft_run/iter_3.pth').is_file()


def test_the_scratch_baseline_is_the_same_code_on_a_random_init(tmp_path):
    a = evaluate('finetune', scratch=TINY, eval_cfg=eval_config('finetune'), seed=3, max_iters=2,
                 out=str(tmp_path / 'scratch.json'))
    assert a['init'] == 'random' and a['checkpoint'] is None and a['seed'] == 3
    assert a['hparams']['layer_decay'] == 0.75 and a['hparams']['mixup'] == 0.8
    # The same seed gives the same random encoder; another seed another one.
    w = [load_encoder(None, TINY, seed=s).encoder.blocks[0].attn.qkv.weight for s in (3, 3, 4)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


# ------------------------------------------------------------------------------------------------ records

def test_an_evaluation_writes_a_complete_json_record(tmp_path):
    make_checkpoint(tmp_path / 'run/iter_2.pth')
    out = tmp_path / 'records/knn.json'
    record = evaluate('knn', str(tmp_path / 'run/iter_2.pth'), eval_cfg=eval_config('knn'), seed=7, out=str(out),
                      cache_dir=str(tmp_path / 'cache'))
    saved = read_record(out)
    assert record.pop('out') == str(out) and saved == json.loads(json.dumps(record))
    for field in REQUIRED_FIELDS:
        assert field in saved, field
    assert saved['protocol'] == 'knn' and saved['seed'] == 7 and saved['init'] == 'checkpoint'
    assert saved['checkpoint'] == str(tmp_path / 'run/iter_2.pth') and len(saved['checkpoint_sha256']) == 64
    assert len(saved['config_hash']) == 64 and 0 <= saved['accuracy'] <= 100 and saved['wall_time_s'] > 0
    assert saved['hparams']['k'] == 5 and saved['hparams']['temperature'] == 0.07
    assert saved['hparams']['pool'] == 'cls'
    assert saved['data'] == dict(train=64, test=32)
    assert saved['features']['train']['extracted'] == ['cls']
    assert [p.name for p in out.parent.iterdir()] == ['knn.json']     # no temporary file left behind
    with pytest.raises(ValueError, match='record lacks accuracy'):
        write_record({k: v for k, v in saved.items() if k != 'accuracy'}, tmp_path / 'bad.json')


def test_the_eval_tool_prints_top1_and_writes_the_record_next_to_the_checkpoint(tmp_path, capsys):
    main = load_tool('eval').main
    make_checkpoint(tmp_path / 'run/iter_2.pth')
    (tmp_path / 'run/last_checkpoint').write_text(str(tmp_path / 'run/iter_2.pth'))
    config = tmp_path / 'linear_tiny.py'
    config.write_text(eval_config('linear').pretty_text)
    record = main([str(tmp_path / 'run/latest.pth'), '--protocol', 'linear', '--config-eval', str(config),
                   '--cfg-options', 'epochs=2'])
    printed = capsys.readouterr().out
    assert f'linear top-1: {record["accuracy"]:.2f}%' in printed and 'epoch 2/2' in printed
    assert record['out'] == str(tmp_path / 'run/eval/linear_iter_2_seed0.json')
    assert read_record(record['out'])['hparams']['epochs'] == 2
    assert len(list((tmp_path / 'run/features').glob('iter_2_*_cls_*.pt'))) == 2   # train and test features


def test_probes_run_on_the_configured_number_of_threads_and_restore_it():
    before = torch.get_num_threads()
    seen = []

    class Spy(LinearProbeHead):
        def forward(self, feats):
            seen.append(torch.get_num_threads())
            return super().forward(feats)

    train = synthetic(64, 4)
    train_probe(Spy(4, 3), train, train, epochs=1, batch_size=32, optimizer=dict(type='SGD'), base_lr=0.1,
                threads=1)
    assert set(seen) == {1} and torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16, torch.float32, torch.int64])
@pytest.mark.parametrize('shape', [(50, 64, 6), (50, 3), (50, 5, 3), (50,)])
def test_a_probe_batch_holds_exactly_the_rows_it_draws(dtype, shape):
    """The probe loop gathers whole samples as flat rows of 8-byte words where their size allows: the batch must
    be bit for bit what plain indexing gives, whatever the dtype, row width or order."""
    from mimbench.evaluation.probe import take_rows
    x = (torch.randn(shape) * 100).to(dtype)
    idx = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:17]
    assert torch.equal(take_rows(x, idx), x[idx])
    assert torch.equal(take_rows(x[:, None][:, 0] if x.dim() > 1 else x, idx), x[idx])


def test_probe_training_is_reproducible_from_the_seed():
    train, test = synthetic(200, 6), synthetic(100, 6, seed=1)
    runs = [linear_probe(train, test, 3, epochs=3, batch_size=32, seed=s).head.fc.weight for s in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_a_probe_whose_loss_is_not_finite_stops_with_advice():
    train = synthetic(64, 4)
    train.features[5, 2] = float('nan')          # one broken feature poisons the BatchNorm statistics
    with pytest.raises(FloatingPointError, match='probe loss became nan in epoch 1'):
        train_probe(LinearProbeHead(4, 3), train, train, epochs=2, batch_size=64,
                    optimizer=dict(type='SGD', momentum=0.9), base_lr=0.1)
