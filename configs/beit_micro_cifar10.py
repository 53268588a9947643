# The micro protocol for BEiT-style pretraining: CIFAR-10 at 32 px, patch 4 (an 8x8 grid), the micro encoder
# with [M] tokens, block-wise masking of 40% (26 of 64; blocks of at least 4 patches), a linear head on the
# token target from our own tokenizer (`python tools/train_tokenizer.py configs/tokenizer_cifar10.py` first).
# BEiT v1's recipe otherwise: AdamW (0.9, 0.999) wd 0.05, grad clip 3.0, layer scale 0.1, drop path 0.1, colour
# jitter 0.4. Base lr 1.5e-3 per 256 images.
_base_ = ['_base_/runtime_micro.py', '_base_/data_cifar10.py']

model = dict(
    type='BEiT',
    encoder=dict(type='ViT', arch='micro', img_size=32, patch_size=4, drop_path_rate=0.1, layer_scale_init=0.1),
    head=dict(type='LinearHead'),
    masker=dict(type='BlockMasker', ratio=0.4, min_block_patches=4),
    target=dict(type='TokenTarget', checkpoint='work_dirs/tokenizer_cifar10/tokenizer.pth'),
    data_preprocessor={{_base_.data_preprocessor}},
)

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0),
    dict(type='RandomHorizontalFlip'),
    dict(type='RandomResizedCrop', size=32, scale=(0.2, 1.0)),
]))
# LayerScale's gamma is not decayed either (the authors decay no 1-D parameter).
optim_wrapper = dict(optimizer=dict(lr=1.5e-3, betas=(0.9, 0.999)), clip_grad=dict(max_norm=3.0),
                     paramwise_cfg=dict(custom_keys={'.gamma': dict(decay_mult=0.0)}))
