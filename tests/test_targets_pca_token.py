"""PCA and token targets: what they predict, how they are fitted or loaded, and the errors a config can hit."""
from pathlib import Path

import pytest
import torch

from mimbench.engine.runner import load_config
from mimbench.models.patches import patchify
from mimbench.targets import PCATarget, TokenTarget, fit_pca
from mimbench.targets.pca import fit_basis_file
from tests.fixtures.tokenizers import make_tokenizer_file

REPO = Path(__file__).resolve().parents[1]


def correlated_patches(n=4000, dim=48, rank=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, rank, generator=g) * torch.linspace(3, 1, rank)) @ torch.randn(rank, dim, generator=g) \
        + 0.1 * torch.randn(n, dim, generator=g) + 0.5


@pytest.mark.parametrize('k', [4, 16])
def test_pca_inverse_recovers_the_patch_up_to_the_discarded_variance(k):
    patches = correlated_patches()
    target = PCATarget(patch_size=4, num_components=k).fit(patches)
    coeffs = (patches - target.mean) @ target.components.t()
    residual = (target.inverse(coeffs[None])[0] - patches).pow(2).sum(1).mean()
    discarded = fit_pca(patches)['variances'][k:].sum() * (len(patches) - 1) / len(patches)
    assert residual.item() == pytest.approx(discarded.item(), rel=1e-3)


def test_pca_with_every_component_inverts_images_exactly():
    imgs = torch.randn(3, 3, 16, 16)
    target = PCATarget(patch_size=4, num_components=48).fit(patchify(imgs, 4).reshape(-1, 48))
    torch.testing.assert_close(target.inverse(target(imgs)), patchify(imgs, 4), atol=1e-4, rtol=1e-4)


def test_pca_whitened_coefficients_have_unit_variance_and_invert_like_plain_ones():
    patches = correlated_patches()
    white = PCATarget(patch_size=4, num_components=6, whiten=True).fit(patches)
    plain = PCATarget(patch_size=4, num_components=6).fit(patches)
    imgs = torch.randn(2, 3, 16, 16)
    coeffs = ((patches - white.mean) @ white.components.t()) / white.variances.sqrt()
    torch.testing.assert_close(coeffs.var(0), torch.ones(6), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(white.inverse(white(imgs)), plain.inverse(plain(imgs)), atol=1e-4, rtol=1e-4)


def test_pca_is_fitted_on_the_first_training_batch_in_memory_and_writes_no_file(tmp_path):
    basis = tmp_path / 'pca' / 'basis.pth'
    target = PCATarget(patch_size=4, num_components=8, basis_file=str(basis)).train()
    imgs = torch.randn(8, 3, 16, 16) * torch.linspace(0.2, 2, 16)            # anisotropic columns
    assert target(imgs).shape == (8, 16, 8) and bool(target.fitted)
    first = fit_pca(patchify(imgs, 4).reshape(-1, 48))                       # all B * L patches of that batch
    torch.testing.assert_close(target.mean, first['mean'])
    torch.testing.assert_close(target.components, first['components'][:8])
    other = torch.randn(8, 3, 16, 16) * torch.linspace(2, 0.2, 16)           # later batches do not refit
    torch.testing.assert_close(target(other), (patchify(other, 4) - first['mean']) @ first['components'][:8].t())
    assert not basis.exists()   # an estimate or benchmark on noise must leave nothing for real runs to load


def pca_config(tmp_path, basis):
    cfg = load_config(str(REPO / 'tests' / 'configs' / 'tiny_mae.py'))
    cfg.model.target = dict(type='PCATarget', num_components=8, basis_file=str(basis))
    return cfg


def test_a_basis_file_is_fitted_from_the_configs_training_images_once_and_reused(tmp_path):
    basis = tmp_path / 'pca' / 'basis.pth'
    cfg = pca_config(tmp_path, basis)
    assert fit_basis_file(cfg, log=lambda _: None) == [str(basis)]
    saved = torch.load(basis, weights_only=True)
    assert saved['fitted_on']['images'] == 16 and saved['fitted_on']['patches'] == 16 * 16
    first = basis.read_bytes()
    assert fit_basis_file(cfg, log=lambda _: None) == [] and basis.read_bytes() == first   # never replaced
    later = PCATarget(patch_size=4, num_components=4, basis_file=str(basis))   # built, not fitted again
    assert bool(later.fitted)
    torch.testing.assert_close(later.components, saved['components'][:4])
    assert later(torch.randn(2, 3, 16, 16)).shape == (2, 16, 4)


def test_fitting_the_basis_twice_from_one_config_gives_the_same_file(tmp_path):
    one, two = tmp_path / 'a.pth', tmp_path / 'b.pth'
    fit_basis_file(pca_config(tmp_path, one), log=lambda _: None)
    fit_basis_file(pca_config(tmp_path, two), log=lambda _: None)
    assert one.read_bytes() == two.read_bytes()   # same seed, same images: a rerun gets the same cell key


def test_a_target_built_before_the_basis_file_existed_adopts_it(tmp_path):
    basis = tmp_path / 'basis.pth'
    slow = PCATarget(patch_size=4, num_components=8, basis_file=str(basis))   # built before the file exists
    fit_basis_file(pca_config(tmp_path, basis), log=lambda _: None)
    slow.fit(correlated_patches(seed=2))
    torch.testing.assert_close(slow.components, torch.load(basis, weights_only=True)['components'][:8])


def test_pca_without_a_basis_refuses_to_fit_outside_training():
    with pytest.raises(RuntimeError, match='no basis yet'):
        PCATarget(patch_size=4).eval()(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize('k', [0, 49])
def test_pca_component_count_outside_the_patch_size_is_a_clear_error(k):
    with pytest.raises(ValueError, match=r'num_components must be an int in \[1, 48\]'):
        PCATarget(patch_size=4, num_components=k)


def test_pca_basis_for_another_patch_size_is_a_clear_error(tmp_path):
    basis = tmp_path / 'b.pth'
    torch.save(fit_pca(torch.randn(100, 12)), basis)
    with pytest.raises(ValueError, match='is for patches of 12 values, this target has 48'):
        PCATarget(patch_size=4, num_components=4, basis_file=str(basis))


def test_token_ids_are_one_per_patch_and_inside_the_vocabulary(tmp_path):
    target = TokenTarget(patch_size=4, checkpoint=make_tokenizer_file(tmp_path / 't.pth', vocab_size=16))
    ids = target(torch.randn(3, 3, 16, 16))
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert ids.min() >= 0 and ids.max() < 16
    assert target.channels == 16


def test_token_loss_is_cross_entropy_over_removed_patches_only(tmp_path):
    target = TokenTarget(patch_size=4, checkpoint=make_tokenizer_file(tmp_path / 't.pth', vocab_size=16))
    imgs = torch.randn(2, 3, 16, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    pred = torch.randn(2, 16, 16, requires_grad=True)
    loss = target.loss(pred, imgs, mask)
    ids = target(imgs)
    expected = torch.nn.functional.cross_entropy(pred[:, :5].reshape(-1, 16), ids[:, :5].reshape(-1))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.all(pred.grad[:, 5:] == 0) and pred.grad[:, :5].abs().sum() > 0


def test_tokens_do_not_depend_on_training_mode_and_the_tokenizer_is_frozen(tmp_path):
    target = TokenTarget(patch_size=4, checkpoint=make_tokenizer_file(tmp_path / 't.pth'))
    imgs = torch.randn(2, 3, 16, 16)
    train_ids = target.train()(imgs)
    assert not target.tokenizer.training
    assert torch.equal(train_ids, target.eval()(imgs))
    assert not any(p.requires_grad for p in target.parameters())


def test_token_target_maps_the_algorithms_normalization_to_the_tokenizers(tmp_path):
    tok = make_tokenizer_file(tmp_path / 't.pth', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    pixels = torch.rand(2, 3, 16, 16)
    same = TokenTarget(patch_size=4, checkpoint=tok)
    other = TokenTarget(patch_size=4, checkpoint=tok, img_mean=(0.4, 0.4, 0.4), img_std=(0.2, 0.2, 0.2))
    assert torch.equal(same((pixels - 0.5) / 0.25), other((pixels - 0.4) / 0.2))


def test_missing_tokenizer_checkpoint_says_which_command_makes_one(tmp_path):
    with pytest.raises(FileNotFoundError, match='python tools/train_tokenizer.py configs/tokenizer_cifar10.py'):
        TokenTarget(patch_size=4, checkpoint=str(tmp_path / 'missing.pth'))


def test_missing_imagenet_tokenizer_names_the_imagenet_tokenizer_config(tmp_path):
    with pytest.raises(FileNotFoundError, match='configs/tokenizer_imagenet.py --data-root'):
        TokenTarget(patch_size=16, checkpoint=str(tmp_path / 'work_dirs/tokenizer_imagenet/tokenizer.pth'))


def test_a_saved_tokenizer_is_never_replaced_by_another(tmp_path):
    # A smoke run of tools/train_tokenizer.py must not change the tokenizer that stored token cells read.
    path = tmp_path / 'tokenizer_cifar10/tokenizer.pth'
    first = make_tokenizer_file(path)
    before = path.read_bytes()
    torch.manual_seed(1)
    second = make_tokenizer_file(path)
    assert first == str(path) and path.read_bytes() == before
    assert second != first and Path(second).parent == path.parent and Path(second).name.startswith('tokenizer-')
    assert not torch.equal(torch.load(second, weights_only=True)['state_dict']['encoder.0.weight'],
                           torch.load(first, weights_only=True)['state_dict']['encoder.0.weight'])


def test_saving_the_same_tokenizer_again_writes_nothing_new(tmp_path):
    from mimbench.models.tokenizer import VQTokenizer
    from mimbench.targets import save_tokenizer
    cfg = dict(type='VQTokenizer', vocab_size=16, code_dim=8, hidden_dim=8, downsample=4)
    tokenizer = VQTokenizer(**{k: v for k, v in cfg.items() if k != 'type'})
    path = str(tmp_path / 't.pth')
    assert save_tokenizer(path, cfg, tokenizer, (0.5,) * 3, (0.25,) * 3, dict(psnr_db=20.0)) == path
    # re-measured metrics (tools/train_tokenizer.py --eval-only) do not make it another tokenizer
    assert save_tokenizer(path, cfg, tokenizer, (0.5,) * 3, (0.25,) * 3, dict(psnr_db=20.1)) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ['t.pth']


def test_vocabulary_size_that_differs_from_the_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match='vocab_size=8192 but the tokenizer .* has a vocabulary of 16'):
        TokenTarget(patch_size=4, checkpoint=make_tokenizer_file(tmp_path / 't.pth'), vocab_size=8192)


def test_tokenizer_grid_that_differs_from_the_patch_grid_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match='one token per 2x2 pixels but the encoder patch_size is 4'):
        TokenTarget(patch_size=4, checkpoint=make_tokenizer_file(tmp_path / 't.pth', downsample=2))


@pytest.mark.parametrize('kind', ['pixel', 'norm_pixel', 'pca', 'token'])
def test_a_target_scores_predictions_of_the_removed_patches_alone_as_it_scores_them_in_place(kind, tmp_path):
    """CAE and BEiT-style predict the removed patches only: given their positions, a target takes those
    predictions as they come and gives the loss it gives the same values laid out at every patch."""
    from mimbench.masking import split_indices
    from mimbench.masking.indices import gather_tokens
    from mimbench.targets import PixelTarget
    makers = {'pixel': lambda: PixelTarget(4), 'norm_pixel': lambda: PixelTarget(4, normalize=True),
              'pca': lambda: PCATarget(4, num_components=8).train(),
              'token': lambda: TokenTarget(4, checkpoint=make_tokenizer_file(tmp_path / 't.pth', vocab_size=16))}
    target = makers[kind]()
    imgs = torch.randn(3, 3, 16, 16)
    target(imgs)                                           # PCA fits its basis on this first training batch
    mask = torch.zeros(3, 16, dtype=torch.bool)
    for row, cols in enumerate(([0, 5, 9, 12], [1, 2, 3, 15], [4, 7, 8, 11])):
        mask[row, cols] = True
    full = torch.randn(3, 16, target.channels)
    ids_masked = split_indices(mask).ids_masked            # [B, 4]
    alone = gather_tokens(full, ids_masked)                # [B, 4, C]: the removed patches' predictions only
    torch.testing.assert_close(target.loss(alone, imgs, mask, ids_masked), target.loss(full, imgs, mask))
    with pytest.raises(ValueError, match=f'needs {target.channels}'):
        target.loss(alone[..., :-1], imgs, mask, ids_masked)
