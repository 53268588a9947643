"""The VQ-VAE tokenizer, its usage statistics, and tools/train_tokenizer.py from config to the file targets load."""
import json
from pathlib import Path

import pytest
import torch

from mimbench.models import VQTokenizer, codebook_usage
from mimbench.targets import TokenTarget

REPO = Path(__file__).resolve().parents[1]


def tiny(**kw):
    return VQTokenizer(**{**dict(vocab_size=16, code_dim=8, hidden_dim=8, downsample=4), **kw})


def test_tokenize_gives_one_id_per_patch_in_the_vocabulary():
    ids = tiny().eval().tokenize(torch.randn(3, 3, 16, 16))
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert 0 <= ids.min() and ids.max() < 16


def test_forward_reconstructs_at_full_size_and_the_gradient_passes_the_quantizer():
    tok = tiny()
    imgs = torch.randn(2, 3, 16, 16)
    out = tok(imgs)
    assert out['recon'].shape == imgs.shape and out['ids'].shape == (2, 16)
    out['loss_recon'].backward()
    assert tok.encoder[0].weight.grad.abs().sum() > 0      # straight-through estimator


def test_first_training_batch_places_every_codeword_on_the_data():
    tok = tiny(dead_threshold=0.0)
    imgs = torch.randn(4, 3, 16, 16)
    tok.train()(imgs)
    z = tok._encode(imgs).reshape(-1, 8).detach()
    nearest = torch.cdist(tok.codebook, z).min(1).values
    # After one EMA step each used codeword is a mix of its old position (a data point) and its members' mean.
    assert bool(tok.initialized) and nearest.max() < z.std() * 8 ** 0.5


def test_decoding_the_ids_matches_the_forward_reconstruction():
    tok = tiny().eval()
    imgs = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(tok.decode(tok.tokenize(imgs)), tok(imgs)['recon'], atol=1e-5, rtol=1e-5)


def test_codebook_usage_perplexity_and_dead_codes():
    assert codebook_usage(torch.full((8,), 5)) == pytest.approx(
        {'perplexity': 8.0, 'dead_codes': 0, 'dead_fraction': 0.0, 'vocab_size': 8})
    one = codebook_usage(torch.tensor([9, 0, 0, 0]))
    assert one['perplexity'] == pytest.approx(1.0) and one['dead_codes'] == 3


@pytest.mark.parametrize('kw, message', [(dict(downsample=3), 'power of two'), (dict(vocab_size=1), '>= 2'),
                                         (dict(ema_decay=1.0), r'ema_decay must be in \[0, 1\)')])
def test_bad_tokenizer_settings_are_clear_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kw)


def test_train_tokenizer_tool_writes_a_file_token_targets_load(tmp_path, capsys):
    from mimbench.cli import train_tokenizer

    config = tmp_path / 'tiny_tokenizer.py'
    config.write_text(f"_base_ = ['{REPO / 'configs/tokenizer_cifar10.py'}']\n"
                      "model = dict(tokenizer=dict(hidden_dim=8, vocab_size=32))\n"
                      "train_dataloader = dict(batch_size=16, dataset=dict(_delete_=True, type='SyntheticImages', "
                      "num_images=64, image_size=32))\n"
                      "tokenizer_eval = dict(num_images=32, batch_size=16)\n"
                      "param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, "
                      "convert_to_iter_based=True)]\n"
                      "log_level = 'WARNING'\n")
    train_tokenizer.main([str(config), '--work-dir', str(tmp_path / 'run'), '--max-iters', '6'])
    out = capsys.readouterr().out
    assert 'codebook perplexity' in out and 'dead codes' in out
    metrics = json.loads((tmp_path / 'run/tokenizer_metrics.json').read_text())
    assert metrics['num_images'] == 32 and metrics['vocab_size'] == 32 and metrics['iterations'] == 6
    assert 1 <= metrics['perplexity'] <= 32 and metrics['recon_mse_pixels'] > 0
    target = TokenTarget(patch_size=4, checkpoint=str(tmp_path / 'run/tokenizer.pth'))
    assert target.channels == 32 and target(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    # --eval-only measures the latest checkpoint again and rewrites the same file.
    train_tokenizer.main([str(config), '--work-dir', str(tmp_path / 'run'), '--eval-only'])
    again = json.loads((tmp_path / 'run/tokenizer_metrics.json').read_text())
    assert again['perplexity'] == pytest.approx(metrics['perplexity'])
    assert again['recon_mse_pixels'] == pytest.approx(metrics['recon_mse_pixels'], rel=1e-5)
