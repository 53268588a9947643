"""The device data path: an in-memory training set stays on the device as uint8 and whole batches are cropped
and flipped there. Boxes follow torchvision's RandomResizedCrop rule, resampling matches torchvision's
resize where both are defined, and training on it resumes exactly like the per-sample path."""
import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from mimbench.data import SyntheticImages
from mimbench.data.device import (BatchHorizontalFlip, BatchRandomResizedCrop, DeviceBatchLoader, augment_batch,
                                  sample_crop_boxes, to_device_loader)
from mimbench.data.sampler import ResumableSampler
from mimbench.engine.runner import load_config
from mimbench.errors import MimbenchError
from tests.test_training import TINY, train


@pytest.mark.parametrize('height, width', [(32, 32), (32, 48)])
def test_boxes_follow_the_random_resized_crop_rule(height, width):
    from torchvision.transforms import RandomResizedCrop
    torch.manual_seed(0)
    n, scale, ratio = 4000, (0.2, 1.0), (3 / 4, 4 / 3)
    top, left, h, w = sample_crop_boxes(n, height, width, scale, ratio).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    assert ((w / h) > 0.7).all() and ((w / h) < 1.43).all()                      # 3/4..4/3 up to rounding
    area = h * w / (height * width)
    img = torch.zeros(3, height, width)
    ref = torch.tensor([(lambda b: b[2] * b[3])(RandomResizedCrop.get_params(img, scale, ratio))
                        for _ in range(n)]) / (height * width)
    # the same distribution of areas as torchvision's draws (a wide image rejects more large draws)
    assert abs(area.mean() - ref.mean()) < 0.015 and abs(area.std() - ref.std()) < 0.015
    # positions spread over all that fits, not just the corner
    assert (top > 0).float().mean() > 0.5 and (left > 0).float().mean() > 0.5


def test_when_no_draw_fits_the_crop_is_the_central_one_at_the_nearest_allowed_ratio():
    top, left, h, w = sample_crop_boxes(50, 10, 100, scale=(0.9, 1.0), ratio=(1.0, 2.0))[0].tolist()
    assert (h, w) == (10, 20) and (top, left) == (0, 40)


def test_a_full_box_reproduces_the_image_and_a_box_matches_torchvisions_resized_crop():
    torch.manual_seed(1)
    imgs = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    crop = BatchRandomResizedCrop(16, interpolation='bicubic')
    full = torch.tensor([[0., 0., 16., 16.]] * 2)
    torch.testing.assert_close(crop.resample(imgs, full), imgs.float(), atol=1e-3, rtol=0)
    box = torch.tensor([[2., 3., 8., 10.], [0., 6., 16., 10.]])
    ours = BatchRandomResizedCrop(16, interpolation='bilinear').resample(imgs, box)
    for i, (top, left, h, w) in enumerate(box.int().tolist()):
        ref = TF.resized_crop(imgs[i].float(), top, left, h, w, [16, 16], interpolation=InterpolationMode.BILINEAR,
                              antialias=False)
        torch.testing.assert_close(ours[i], ref, atol=1e-3, rtol=0)


def test_a_flip_folded_into_the_crop_is_the_mirror_of_the_crop():
    imgs = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    crop = BatchRandomResizedCrop(12)
    box = torch.tensor([[1., 2., 9., 7.]] * 3)
    flip = torch.tensor([True, False, True])
    out, plain = crop.resample(imgs, box, flip), crop.resample(imgs, box)
    torch.testing.assert_close(out[0], plain[0].flip(-1))
    torch.testing.assert_close(out[1], plain[1])
    # fused or as two steps: the same draws in the same order, the same batch
    steps = [BatchRandomResizedCrop(12, interpolation='bilinear'), BatchHorizontalFlip()]
    torch.manual_seed(5)
    fused = augment_batch(imgs, steps)
    torch.manual_seed(5)
    separate = steps[1](steps[0](imgs))
    torch.testing.assert_close(fused, separate, atol=1e-3, rtol=0)


def test_the_loader_serves_the_samplers_order_with_its_labels_and_resumes_mid_epoch():
    data = SyntheticImages(num_images=40, image_size=8, num_classes=4, seed=0)
    sampler = ResumableSampler(data, shuffle=True, seed=3)
    loader = DeviceBatchLoader(data, sampler, batch_size=16, device='cpu')
    assert len(loader) == 2                                      # 40 // 16, the short batch dropped
    sampler.set_epoch(1)
    order = list(iter(sampler))
    batches = list(loader)
    assert [b['inputs'].shape for b in batches] == [(16, 3, 8, 8)] * 2
    assert torch.equal(batches[1]['inputs'], data.images[order[16:32]].float())   # no augment: the images
    assert torch.equal(batches[1]['label'], data.labels[order[16:32]])
    sampler.set_epoch(1, start=16)
    assert torch.equal(next(iter(loader))['label'], batches[1]['label'])


def test_training_on_the_device_path_resumes_to_exactly_the_uninterrupted_state(tmp_path):
    options = None
    straight = train(tmp_path / 'straight', max_iters=10, options=options, config=TINY, device_data=True)
    assert type(straight.train_loop.dataloader).__name__ == 'DeviceBatchLoader'
    train(tmp_path / 'split', max_iters=6, config=TINY, device_data=True)
    resumed = train(tmp_path / 'split', max_iters=10, resume='auto', config=TINY, device_data=True)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_pipeline_step_without_a_batch_counterpart_is_refused_by_name():
    cfg = load_config(TINY)
    cfg.train_dataloader.dataset.pipeline = [dict(type='ColorJitter', brightness=0.4)]
    with pytest.raises(MimbenchError, match="step 'ColorJitter' has no batch counterpart; steps that convert: "
                                            "RandomResizedCrop, RandomHorizontalFlip"):
        to_device_loader(cfg)
    cfg = load_config(TINY)
    to_device_loader(cfg)
    assert cfg.train_dataloader.augment == [
        dict(type='BatchRandomResizedCrop', size=16, scale=(0.5, 1.0)), dict(type='BatchHorizontalFlip')]
