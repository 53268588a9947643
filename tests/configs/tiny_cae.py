# A seconds-long CAE run on synthetic images (4x4 grid, 8 patches removed), for tests of the teacher update.
_base_ = ['tiny_mae.py']

model = dict(
    _delete_=True,
    type='CAE',
    encoder=dict(type='ViT', arch='micro', img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2),
    regressor=dict(type='CAERegressor', depth=1, num_heads=2),
    decoder=dict(type='CAEDecoder', depth=1, num_heads=2),
    masker=dict(type='BlockMasker', num_masked=8, min_block_patches=2),
    target=dict(type='PixelTarget', normalize=False),
    momentum=0.0,
    data_preprocessor=dict(type='ImagePreprocessor', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
)
custom_hooks = [dict(type='MomentumTeacherHook')]
