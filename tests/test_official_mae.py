"""Weights of the official MAE code (facebookresearch/mae) load into our MAE and compute the same thing.

The fixture was written by ``python tools/official_mae.py compare --mae-repo <checkout> --config
tests/configs/tiny_mae.py --cfg-options model.target.normalize=True --write-fixture ...``: the authors'
``MaskedAutoencoderViT`` (their init, seed 0), four N(0, 1) images, their random mask, and their loss and
predictions.
"""
from pathlib import Path

import pytest
import torch

from mimbench.engine.runner import load_config
from mimbench.models.official_mae import OfficialCheckpointError, from_official_mae, half_swap
from mimbench.registry import MODELS

FIXTURE = Path(__file__).parent / 'fixtures' / 'official_mae_tiny.pt'


@pytest.fixture(scope='module')
def case():
    return torch.load(FIXTURE, weights_only=True)


def tiny_mae(case):
    cfg = load_config(str(Path(__file__).parent / 'configs' / 'tiny_mae.py'), case['cfg_options'],
                      log=lambda *a: None)
    return MODELS.build(cfg.model).eval()


def test_converted_official_weights_give_the_authors_loss_and_predictions(case):
    model = tiny_mae(case)
    model.load_state_dict(from_official_mae(case['official_state_dict']), strict=True)
    with torch.no_grad():
        pred = model.reconstruct(case['imgs'], case['mask'])
        loss = model.target.loss(pred, case['imgs'], case['mask'])
    torch.testing.assert_close(pred, case['pred'], atol=1e-5, rtol=0)
    assert loss.item() == pytest.approx(case['loss'].item(), abs=1e-6)


def test_the_converted_model_keeps_our_own_positions(case):
    state = from_official_mae(case['official_state_dict'])
    model = tiny_mae(case)
    assert torch.equal(state['encoder.pos_embed'], model.encoder.pos_embed)
    assert torch.equal(state['decoder.pos_embed'], model.decoder.pos_embed)
    # theirs is the same code with the two halves of the channels swapped
    theirs = case['official_state_dict']['pos_embed']
    torch.testing.assert_close(theirs[..., half_swap(theirs.shape[-1])], model.encoder.pos_embed)


def test_the_released_encoder_only_files_convert_to_encoder_weights(case):
    official = {k: v for k, v in case['official_state_dict'].items()
                if not k.startswith('decoder') and k != 'mask_token'}
    state = from_official_mae({'model': official})
    assert state and all(k.startswith('encoder.') for k in state)
    assert set(state) == set(tiny_mae(case).encoder.state_dict(prefix='encoder.'))


def test_other_positions_or_a_fine_tuned_head_are_refused(case):
    moved = dict(case['official_state_dict'])
    moved['pos_embed'] = moved['pos_embed'] + 0.01
    with pytest.raises(OfficialCheckpointError, match='not the fixed 2-D sin-cos code'):
        from_official_mae(moved)
    with pytest.raises(OfficialCheckpointError, match="unexpected key 'head.weight'"):
        from_official_mae(dict(case['official_state_dict'], **{'head.weight': torch.zeros(10, 32)}))


def test_convert_writes_a_checkpoint_that_evaluation_loads(case, tmp_path):
    from mimbench.cli.official_mae import main
    from mimbench.evaluation.encoder import load_encoder
    torch.save({'model': case['official_state_dict']}, tmp_path / 'official.pth')
    config = str(Path(__file__).parent / 'configs' / 'tiny_mae.py')
    main(['convert', str(tmp_path / 'official.pth'), '--config', config, '--out', str(tmp_path / 'ours.pth')])
    loaded = load_encoder(str(tmp_path / 'ours.pth'))
    expected = from_official_mae(case['official_state_dict'])
    for key, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, expected[f'encoder.{key}'])


def test_convert_refuses_a_half_decoder_or_another_architecture_in_one_line(case, tmp_path):
    from mimbench.cli.official_mae import main
    config = str(Path(__file__).parent / 'configs' / 'tiny_mae.py')
    half = {k: v for k, v in case['official_state_dict'].items() if not k.startswith('decoder_blocks.0.')}
    torch.save({'model': half}, tmp_path / 'half.pth')
    with pytest.raises(SystemExit, match='decoder.blocks.0.norm1.weight missing'):
        main(['convert', str(tmp_path / 'half.pth'), '--config', config, '--out', str(tmp_path / 'a.pth')])
    torch.save({'model': case['official_state_dict']}, tmp_path / 'full.pth')
    with pytest.raises(SystemExit, match=r'encoder.patch_embed.proj.weight: checkpoint \[32, 3, 4, 4\] vs config'):
        main(['convert', str(tmp_path / 'full.pth'), '--config', 'mae_micro_cifar10', '--out',
              str(tmp_path / 'b.pth')])
    assert not (tmp_path / 'a.pth').exists() and not (tmp_path / 'b.pth').exists()
    no_decoder_embed = {k: v for k, v in case['official_state_dict'].items() if not k.startswith('decoder_embed')}
    with pytest.raises(OfficialCheckpointError, match='no decoder_embed'):
        from_official_mae(no_decoder_embed)
