# A seconds-long MAE run on synthetic images, for tests of the training machinery.
_base_ = ['../../configs/_base_/runtime.py']

model = dict(
    type='MAE',
    encoder=dict(type='ViT', arch='micro', img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2),
    decoder=dict(type='MAEDecoder', embed_dim=32, depth=1, num_heads=2),
    masker=dict(type='RandomMasker', ratio=0.75),
    target=dict(type='PixelTarget', normalize=False),
    data_preprocessor=dict(type='ImagePreprocessor', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
)
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    drop_last=True,
    sampler=dict(type='ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='SyntheticImages', num_images=64, image_size=16, num_classes=4,
                 pipeline=[dict(type='RandomResizedCrop', size=16, scale=(0.5, 1.0)),
                           dict(type='RandomHorizontalFlip')]),
)
optim_wrapper = dict(optimizer=dict(lr=2e-2))
train_cfg = dict(type='MIMTrainLoop', max_epochs=10)   # 4 iterations per epoch
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=1, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=4))
log_level = 'WARNING'
