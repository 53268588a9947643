"""Datasets, transforms and the resumable sampler: the item contract and the guarantees training relies on.

Every dataset item is ``{'inputs': uint8 [3, H, W], 'label': int}``; transforms keep uint8; bad data fails
early with a message naming the path; decoded folders are cached and a bad cache is rebuilt; a resumed epoch
continues with exactly the samples the uninterrupted run would have drawn.
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from torchvision.io import write_jpeg, write_png

import mimbench.data.folder as folder_module
from mimbench.data import (CIFAR10, DatasetError, ImageFolder, ResumableSampler, SyntheticImages,
                           build_pipeline, cache_dir)
from mimbench.registry import DATA_SAMPLERS, DATASETS, TRANSFORMS

REAL_CIFAR = Path('/work/shared/data/cifar10')

# torchvision 0.29 warns on every decode that torchvision.io is deprecated in favour of TorchCodec.
pytestmark = pytest.mark.filterwarnings('ignore:The image decoding and encoding capabilities:DeprecationWarning')


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own decoded-image cache, never the user's ~/.cache."""
    path = tmp_path / 'cache'
    monkeypatch.setenv('MIMBENCH_CACHE', str(path))
    return path


def random_image(h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def write_image(path: Path, img: torch.Tensor) -> Path:
    """Write a uint8 [3, H, W] image in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in ('.jpg', '.jpeg'):
        write_jpeg(img, str(path), quality=95)
    elif suffix == '.png':
        write_png(img, str(path))
    else:  # bmp, webp: through PIL
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path, lossless=True)
    return path


def make_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (8, 8), ext: str = '.png') -> Path:
    """``root/<class>/<i><ext>`` with ``counts[class]`` random images each."""
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / name / f'{i}{ext}', random_image(*size, seed=100 * c + i))
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return make_folder(tmp_path / 'data' / 'train', {'dog': 3, 'cat': 2})


def assert_item(item: dict, shape: tuple[int, int, int] | None = None) -> None:
    assert set(item) == {'inputs', 'label'}
    assert isinstance(item['inputs'], torch.Tensor) and item['inputs'].dtype == torch.uint8
    assert item['inputs'].dim() == 3 and item['inputs'].shape[0] == 3
    assert type(item['label']) is int
    if shape is not None:
        assert tuple(item['inputs'].shape) == shape


# --------------------------------------------------------------------------------------------- item contract


@pytest.mark.parametrize('in_memory', [False, True])
def test_image_folder_items_are_uint8_chw_with_int_labels_and_collate_to_batches(tiny_folder, in_memory):
    ds = ImageFolder(tiny_folder.parent, split='train', in_memory=in_memory)
    assert len(ds) == 5 and ds.classes == ['cat', 'dog'] and ds.num_classes == 2  # classes sorted by name
    assert [ds[i]['label'] for i in range(5)] == [0, 0, 1, 1, 1]
    for i in range(len(ds)):
        assert_item(ds[i], (3, 8, 8))
    batch = default_collate([ds[i] for i in range(4)])
    assert batch['inputs'].shape == (4, 3, 8, 8) and batch['inputs'].dtype == torch.uint8
    assert batch['label'].tolist() == [0, 0, 1, 1]


def test_in_memory_and_lazy_loading_give_identical_pixels(tiny_folder):
    lazy = ImageFolder(tiny_folder)
    memory = ImageFolder(tiny_folder, in_memory=True)
    assert memory.images.shape == (5, 3, 8, 8) and memory.images.dtype == torch.uint8
    for i in range(5):
        assert torch.equal(lazy[i]['inputs'], memory[i]['inputs'])
    assert torch.equal(lazy[0]['inputs'], random_image(8, 8, seed=100))  # png is lossless: the written pixels


def test_in_memory_items_do_not_alias_the_big_tensor(tiny_folder):
    ds = ImageFolder(tiny_folder, in_memory=True)
    ds[0]['inputs'].zero_()
    assert ds.images[0].any()


def test_image_folder_finds_every_supported_extension_in_any_case_and_ignores_other_files(tmp_path):
    for i, name in enumerate(['a.jpg', 'b.JPEG', 'c.Png', 'd.bmp', 'e.WEBP', 'sub/f.jpg']):
        write_image(tmp_path / 'only' / name, random_image(seed=i))
    (tmp_path / 'only' / 'notes.txt').write_text('not an image')
    (tmp_path / 'only' / '.hidden.jpg').write_bytes(b'')
    ds = ImageFolder(tmp_path, in_memory=True)
    assert len(ds) == 6
    assert torch.equal(ds.images[3], random_image(seed=3))  # bmp decoded exactly (through PIL)
    assert torch.equal(ds.images[4], random_image(seed=4))  # lossless webp


def test_grayscale_and_rgba_images_are_decoded_as_rgb(tmp_path):
    (tmp_path / 'x').mkdir()
    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(tmp_path / 'x' / 'gray.png')
    Image.fromarray(np.full((4, 5, 4), 9, np.uint8)).save(tmp_path / 'x' / 'rgba.png')
    ds = ImageFolder(tmp_path, in_memory=True)
    assert ds.images.shape == (2, 3, 4, 5)
    assert (ds.images[0] == 7).all() and (ds.images[1] == 9).all()


def test_synthetic_images_follow_the_contract_and_are_deterministic():
    ds = SyntheticImages(num_images=12, image_size=16, num_classes=3, seed=1)
    assert len(ds) == 12 and ds.num_classes == 3 and len(ds.classes) == 3
    assert_item(ds[0], (3, 16, 16))
    assert [ds[i]['label'] for i in range(6)] == [0, 1, 2, 0, 1, 2]  # balanced classes
    assert torch.equal(ds.images, SyntheticImages(num_images=12, image_size=16, num_classes=3, seed=1).images)
    assert not torch.equal(ds.images, SyntheticImages(num_images=12, image_size=16, num_classes=3, seed=2).images)


def test_synthetic_images_have_smooth_learnable_structure():
    """Neighbouring pixels agree far more than random pairs: masked patches are predictable from context."""
    imgs = SyntheticImages(num_images=64, image_size=32).images.float()
    neighbour_diff = (imgs[..., 1:] - imgs[..., :-1]).abs().mean()
    random_pair_diff = (imgs - imgs[torch.randperm(64)].roll(7, -1)).abs().mean()
    assert imgs.std() > 20  # not flat
    assert neighbour_diff < 0.3 * random_pair_diff
    class_means = torch.stack([imgs[i::4].mean(0) for i in range(4)])
    assert torch.cdist(class_means.flatten(1), class_means.flatten(1)).add(1e9 * torch.eye(4)).min() > 100


def test_datasets_are_buildable_from_configs(tiny_folder):
    ds = DATASETS.build(dict(type='ImageFolder', root=str(tiny_folder),
                             pipeline=[dict(type='RandomResizedCrop', size=4)]))
    assert_item(ds[0], (3, 4, 4))
    assert len(DATASETS.build(dict(type='SyntheticImages', num_images=8))) == 8


def test_pipeline_output_that_breaks_the_contract_is_reported():
    ds = SyntheticImages(num_images=2, pipeline=[lambda img: img.float() / 255])
    with pytest.raises(TypeError, match='uint8'):
        ds[0]


# ------------------------------------------------------------------------------------------------ transforms

TRANSFORM_CASES = [
    (dict(type='RandomResizedCrop', size=12), (12, 12)),
    (dict(type='RandomResizedCrop', size=(10, 14), scale=(0.5, 1.0), interpolation='bilinear'), (10, 14)),
    (dict(type='RandomCrop', size=12), (12, 12)),
    (dict(type='RandomCrop', size=20, padding=4), (20, 20)),
    (dict(type='CenterCrop', size=10), (10, 10)),
    (dict(type='Resize', size=10), (10, 12)),  # int: the shorter side, aspect ratio kept
    (dict(type='Resize', size=(10, 14)), (10, 14)),
    (dict(type='RandomHorizontalFlip'), (20, 24)),
    (dict(type='ColorJitter'), (20, 24)),
]


@pytest.mark.parametrize('cfg, hw', TRANSFORM_CASES, ids=lambda x: x['type'] if isinstance(x, dict) else '')
def test_each_transform_keeps_uint8_and_gives_the_requested_size(cfg, hw):
    t = TRANSFORMS.build(cfg)
    for seed in range(5):
        out = t(random_image(20, 24, seed=seed))
        assert out.dtype == torch.uint8 and tuple(out.shape) == (3, *hw)


def test_horizontal_flip_with_p_1_mirrors_and_color_jitter_changes_colours():
    img = random_image(6, 7)
    assert torch.equal(TRANSFORMS.build(dict(type='RandomHorizontalFlip', p=1.0))(img), img.flip(-1))
    torch.manual_seed(0)
    assert not torch.equal(TRANSFORMS.build(dict(type='ColorJitter'))(img), img)


@pytest.mark.parametrize('cfgs', [None, []])
def test_empty_pipeline_is_the_identity(cfgs):
    img = random_image()
    assert torch.equal(build_pipeline(cfgs)(img), img)


def test_pipeline_mixes_configs_and_callables_in_order():
    pipe = build_pipeline([dict(type='CenterCrop', size=4), lambda img: img.flip(-1)])
    img = random_image(8, 8)
    assert torch.equal(pipe(img), img[:, 2:6, 2:6].flip(-1))
    with pytest.raises(TypeError, match='pipeline'):
        build_pipeline([42])
    with pytest.raises(KeyError, match='RandomResizedCrop'):  # unknown type: the error lists known ones
        build_pipeline([dict(type='RandomResizeCrop', size=4)])


@pytest.mark.parametrize('cfg, name', [
    (dict(type='RandomResizedCrop', size=8, scale=(0.0, 1.0)), 'scale'),
    (dict(type='RandomResizedCrop', size=8, scale=(0.8, 0.2)), 'scale'),
    (dict(type='RandomResizedCrop', size=8, scale=(0.2, 1.5)), 'scale'),
    (dict(type='RandomResizedCrop', size=8, ratio=(2.0, 0.5)), 'ratio'),
    (dict(type='RandomResizedCrop', size=0), 'size'),
    (dict(type='RandomResizedCrop', size=8, interpolation='cubic'), 'interpolation'),
    (dict(type='RandomCrop', size=8, padding=-1), 'padding'),
    (dict(type='CenterCrop', size=(8, 8, 8)), 'size'),
    (dict(type='Resize', size=-4), 'size'),
    (dict(type='RandomHorizontalFlip', p=1.5), 'p'),
    (dict(type='ColorJitter', brightness=-0.1), 'brightness'),
    (dict(type='ColorJitter', hue=0.7), 'hue'),
])
def test_bad_transform_arguments_raise_value_errors_naming_the_argument(cfg, name):
    with pytest.raises(ValueError, match=rf'\b{name}\b'):
        TRANSFORMS.build(cfg)


# ------------------------------------------------------------------------------------------- bad data errors


def test_missing_root_or_split_is_named(tmp_path, tiny_folder):
    with pytest.raises(DatasetError, match=str(tmp_path / 'nowhere')):
        ImageFolder(tmp_path / 'nowhere')
    with pytest.raises(DatasetError, match=r'data/val.*train'):  # names the split and lists what exists
        ImageFolder(tiny_folder.parent, split='val')


def test_folder_without_class_folders_is_an_error(tmp_path):
    write_image(tmp_path / 'flat' / 'a.png', random_image())
    with pytest.raises(DatasetError, match='no class folders'):
        ImageFolder(tmp_path / 'flat')


def test_empty_class_folder_error_names_the_folder(tiny_folder):
    (tiny_folder / 'emu').mkdir()
    (tiny_folder / 'emu' / 'readme.txt').write_text('no images here')
    with pytest.raises(DatasetError, match=str(tiny_folder / 'emu')):
        ImageFolder(tiny_folder)


@pytest.fixture
def folder_with_corrupt_jpeg(tmp_path) -> tuple[Path, Path]:
    root = make_folder(tmp_path / 'corrupt', {'a': 2, 'b': 2}, ext='.jpg')
    bad = root / 'b' / '0.jpg'
    bad.write_bytes(bad.read_bytes()[:40] + b'\x00garbage' * 10)  # valid JPEG header, broken body
    return root, bad


def test_corrupt_jpeg_is_named_when_loading_in_memory(folder_with_corrupt_jpeg):
    root, bad = folder_with_corrupt_jpeg
    with pytest.raises(DatasetError, match=str(bad)):
        ImageFolder(root, in_memory=True)


def test_corrupt_jpeg_is_named_when_read_lazily(folder_with_corrupt_jpeg):
    root, bad = folder_with_corrupt_jpeg
    ds = ImageFolder(root)  # lazy: the scan does not decode
    assert_item(ds[0])
    with pytest.raises(DatasetError, match=str(bad)):
        ds[2]


def test_mixed_sizes_cannot_be_stacked_in_memory_unless_resized(tmp_path):
    root = make_folder(tmp_path / 'mixed', {'a': 2}, size=(8, 8))
    odd = write_image(root / 'a' / '9.png', random_image(6, 10))
    with pytest.raises(DatasetError, match=rf'{odd}.*image_size'):
        ImageFolder(root, in_memory=True)
    assert ImageFolder(root, in_memory=True, image_size=8).images.shape == (3, 3, 8, 8)
    assert ImageFolder(root, image_size=(4, 6))[2]['inputs'].shape == (3, 4, 6)  # lazy resizes the same way
    assert ImageFolder(root)[2]['inputs'].shape == (3, 6, 10)  # lazy, no image_size: sizes as stored


# -------------------------------------------------------------------------------------------------- the cache


def forbid_decoding(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError('decoded although a valid cache exists')
    monkeypatch.setattr(folder_module, 'decode_image', boom)
    monkeypatch.setattr(folder_module, '_decode_with_pil', boom)


def test_decoded_images_are_cached_under_MIMBENCH_CACHE_and_reused(tiny_folder, isolated_cache, monkeypatch):
    first = ImageFolder(tiny_folder, in_memory=True)
    assert cache_dir() == isolated_cache
    assert first.cache_path.parent == isolated_cache and [p.name for p in isolated_cache.iterdir()] == [
        first.cache_path.name]  # one file, no temp files left behind
    forbid_decoding(monkeypatch)
    second = ImageFolder(tiny_folder, in_memory=True)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_cache_is_keyed_by_image_size_and_can_be_disabled(tiny_folder, isolated_cache):
    a = ImageFolder(tiny_folder, in_memory=True)
    b = ImageFolder(tiny_folder, in_memory=True, image_size=4)
    assert a.cache_path != b.cache_path and b.images.shape == (5, 3, 4, 4)
    ImageFolder(tiny_folder, in_memory=True, image_size=6, cache=False)
    assert len(list(isolated_cache.iterdir())) == 2


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'flipped byte'])
def test_corrupt_cache_is_rebuilt_not_trusted(tiny_folder, monkeypatch, damage):
    good = ImageFolder(tiny_folder, in_memory=True)
    blob = good.cache_path.read_bytes()
    if damage == 'garbage':
        blob = b'not a cache'
    elif damage == 'truncated':
        blob = blob[:len(blob) // 2]
    else:  # the pixel data sits in the middle of the file; a flip there still unpickles fine
        i = blob.index(good.images[2].flatten()[:16].numpy().tobytes())
        blob = blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:]
    good.cache_path.write_bytes(blob)
    rebuilt = ImageFolder(tiny_folder, in_memory=True)
    assert torch.equal(rebuilt.images, good.images)
    forbid_decoding(monkeypatch)  # and the rebuilt cache is valid again
    assert torch.equal(ImageFolder(tiny_folder, in_memory=True).images, good.images)


def test_changed_image_makes_the_cache_stale(tiny_folder):
    before = ImageFolder(tiny_folder, in_memory=True)
    changed = write_image(tiny_folder / 'cat' / '0.png', random_image(seed=999))
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # even on coarse-mtime file systems
    after = ImageFolder(tiny_folder, in_memory=True)
    assert after.cache_path != before.cache_path
    assert torch.equal(after.images[0], random_image(seed=999))


def test_unwritable_cache_only_warns(tiny_folder, tmp_path, monkeypatch):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    monkeypatch.setenv('MIMBENCH_CACHE', str(blocker / 'cache'))  # cannot create a folder inside a file
    logged = []
    monkeypatch.setattr(folder_module, 'print_log', lambda msg, **kw: logged.append((msg, kw.get('level'))))
    ds = ImageFolder(tiny_folder, in_memory=True)
    assert torch.equal(ds.images, torch.stack([ImageFolder(tiny_folder)[i]['inputs'] for i in range(5)]))
    warned = [msg for msg, level in logged if level == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith(f'could not write dataset cache {ds.cache_path}')


# ------------------------------------------------------------------------------------------------------ CIFAR


def write_cifar_batches(root: Path, per_batch: int = 4) -> Path:
    """A miniature ``cifar-10-batches-py/`` in the official pickle format."""
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    names = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    with open(folder / 'batches.meta', 'wb') as f:
        pickle.dump({'label_names': names}, f)
    rng = np.random.default_rng(0)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        batch = {'data': rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 'labels': rng.integers(0, 10, per_batch).tolist()}
        with open(folder / name, 'wb') as f:
            pickle.dump(batch, f)
    return folder


def test_cifar10_reads_the_official_python_batches(tmp_path):
    folder = write_cifar_batches(tmp_path)
    train = CIFAR10(tmp_path, split='train', download=False)
    test = CIFAR10(tmp_path, split='test', download=False)
    assert len(train) == 20 and len(test) == 4 and train.num_classes == 10 and train.classes[0] == 'airplane'
    with open(folder / 'test_batch', 'rb') as f:
        raw = pickle.load(f)
    # each row is the red plane, then green, then blue, each 32x32 row-major
    assert torch.equal(test.images[1, 2], torch.from_numpy(raw['data'][1, 2048:].reshape(32, 32)))
    assert test[1]['label'] == raw['labels'][1]
    assert_item(train[0], (3, 32, 32))


def test_cifar10_reads_an_image_folder_layout(tmp_path):
    make_folder(tmp_path / 'train', {'cat': 2, 'dog': 1}, size=(32, 32), ext='.jpg')
    ds = CIFAR10(tmp_path, split='train', pipeline=[dict(type='RandomCrop', size=32, padding=4)])
    assert ds.images.shape == (3, 3, 32, 32) and ds.classes == ['cat', 'dog']
    assert_item(ds[2], (3, 32, 32))


def test_cifar10_split_must_be_train_or_test(tmp_path):
    with pytest.raises(ValueError, match='split'):
        CIFAR10(tmp_path, split='val')


def test_cifar10_without_data_and_without_network_fails_fast_with_a_hint(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError('simulated: network is unreachable')
    # Every urllib connection goes through these: the real torchvision download path runs, offline.
    monkeypatch.setattr(socket, 'create_connection', no_network)
    monkeypatch.setattr(socket, 'getaddrinfo', no_network)
    timeout_before = socket.getdefaulttimeout()
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        CIFAR10(tmp_path / 'empty', split='train', download=True)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert '--data-root' in message and 'cifar-10-batches-py' in message and 'download' in message
    assert str(tmp_path / 'empty') in message
    assert info.value.__suppress_context__ and info.value.__cause__ is None  # no traceback wall
    assert socket.getdefaulttimeout() == timeout_before


def test_cifar10_without_data_and_download_off_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetError, match='--data-root') as info:
        CIFAR10(tmp_path, split='test', download=False)
    assert str(tmp_path / 'test') in str(info.value)


@pytest.mark.slow
def test_real_cifar10_test_split_loads_in_memory():
    if not (REAL_CIFAR / 'test').is_dir():
        pytest.skip(f'real CIFAR-10 not on this machine: {REAL_CIFAR}/test/<class>/*.jpg does not exist')
    ds = CIFAR10(root=REAL_CIFAR, split='test')
    assert ds.images.shape == (10000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.num_classes == 10
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    assert_item(ds[9999], (3, 32, 32))


# ---------------------------------------------------------------------------------------------------- sampler


def test_resumed_epoch_yields_exactly_the_tail_of_the_uninterrupted_order():
    data = range(37)
    uninterrupted = ResumableSampler(data, seed=123)
    uninterrupted.set_epoch(4)
    order = list(uninterrupted)
    resumed = ResumableSampler(data, seed=123)  # a fresh process after a restart
    resumed.set_epoch(4, start=10)
    assert list(resumed) == order[10:]
    assert len(resumed) == 37 and resumed.num_remaining == 27  # len stays the full epoch
    resumed.set_epoch(5)  # the next epoch starts from its beginning again
    assert len(list(resumed)) == 37


def test_each_epoch_has_its_own_order_determined_by_seed_and_epoch():
    s = ResumableSampler(range(50), seed=0)
    orders = []
    for epoch in range(3):
        s.set_epoch(epoch)
        orders.append(list(s))
    assert orders[0] != orders[1] != orders[2] and sorted(orders[0]) == list(range(50))
    s.set_epoch(1)
    assert list(s) == orders[1]


def test_two_ranks_partition_each_epoch_and_resume_independently(monkeypatch):
    orders = {}
    for rank in (0, 1):
        monkeypatch.setattr('mmengine.dataset.sampler.get_dist_info', lambda rank=rank: (rank, 2))
        s = ResumableSampler(range(10), seed=7)
        s.set_epoch(2)
        orders[rank] = list(s)
        assert len(s) == 5
        s.set_epoch(2, start=3)
        assert list(s) == orders[rank][3:]
    assert sorted(orders[0] + orders[1]) == list(range(10))


def test_resume_start_must_lie_within_the_epoch():
    s = ResumableSampler(range(8), seed=0)
    for bad in (-1, 9):
        with pytest.raises(ValueError, match='start'):
            s.set_epoch(0, start=bad)
    s.set_epoch(0, start=8)
    assert list(s) == []


def test_resumed_dataloader_continues_with_the_same_batches():
    ds = SyntheticImages(num_images=24, image_size=8)
    sampler = DATA_SAMPLERS.build(dict(type='ResumableSampler'), default_args=dict(dataset=ds, seed=3))
    assert isinstance(sampler, ResumableSampler)
    sampler.set_epoch(1)
    full = [b['label'].tolist() for b in DataLoader(ds, batch_size=4, sampler=sampler)]
    sampler.set_epoch(1, start=2 * 4)  # two batches were done before the interruption
    assert [b['label'].tolist() for b in DataLoader(ds, batch_size=4, sampler=sampler)] == full[2:]


def test_a_folder_resized_to_another_size_is_another_dataset_for_the_feature_cache(tiny_folder):
    from mimbench.evaluation.features import dataset_fingerprint
    prints = [dataset_fingerprint(ImageFolder(tiny_folder, in_memory=True, image_size=size, cache=False))
              for size in (None, 4, 6)]
    assert 'image_size' not in prints[0]           # folders decoded as they are keep the keys they had
    assert len({repr(p) for p in prints}) == 3
