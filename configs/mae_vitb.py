# MAE ViT-B/16 on ImageNet-1K, the paper's recipe: 800 epochs, batch 4096, base lr 1.5e-4 (x batch/256),
# AdamW betas (0.9, 0.95), wd 0.05, 40 warmup epochs then cosine, RandomResizedCrop(0.2, 1) + flip,
# 75% random masking, decoder 8 blocks x 512, normalized-pixel target.
_base_ = ['_base_/runtime.py', '_base_/data_imagenet.py']

model = dict(
    type='MAE',
    encoder=dict(type='ViT', arch='base', img_size=224, patch_size=16),
    decoder=dict(type='MAEDecoder', embed_dim=512, depth=8, num_heads=16),
    masker=dict(type='RandomMasker', ratio=0.75),
    target=dict(type='PixelTarget', normalize=True),
    data_preprocessor={{_base_.data_preprocessor}},
)

train_cfg = dict(type='MIMTrainLoop', max_epochs=800)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40, convert_to_iter_based=True),
    # No `end`: the cosine runs to train_cfg.max_epochs, so overriding the length keeps the schedule whole.
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=40, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=1000))
