# BEiT v1 ViT-B/16 on ImageNet-1K: [M] tokens in the encoder, block-wise masking of 75 of 196 patches (blocks of
# at least 16), linear head on visual tokens with cross-entropy, AdamW lr 1.5e-3 (at batch 2048) betas
# (0.9, 0.999) wd 0.05, grad clip 3.0, layer scale 0.1, drop path 0.1, colour jitter 0.4 + flip +
# RandomResizedCrop (0.08, 1), 10 warmup epochs then cosine, 800 epochs. Our tokenizer (downsample 16: one token
# per patch, the grid BEiT gets from DALL-E's 8x tokenizer on a half-resolution view) replaces DALL-E's:
# train it first with configs/tokenizer_imagenet.py. Positions are BEiT's: one relative position bias shared by
# the blocks, no absolute positions (the authors' default --rel_pos_bias, no --abs_pos_emb). Init is BEiT's:
# normals of std 0.02 cut at ±0.02 (encoder and head), each block's output projections divided by sqrt(2 * layer).
_base_ = ['_base_/runtime.py', '_base_/data_imagenet.py']

model = dict(
    type='BEiT',
    encoder=dict(type='ViT', arch='base', img_size=224, patch_size=16, drop_path_rate=0.1, layer_scale_init=0.1,
                 rel_pos_bias=True, weight_init='beit'),
    head=dict(type='LinearHead', init_cutoff=0.02),
    masker=dict(type='BlockMasker', num_masked=75, min_block_patches=16),
    target=dict(type='TokenTarget', checkpoint='work_dirs/tokenizer_imagenet/tokenizer.pth'),
    data_preprocessor={{_base_.data_preprocessor}},
)

train_dataloader = dict(
    batch_size=128,  # per GPU; 16 GPUs x 128 = the recipe's 2048
    dataset=dict(pipeline=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0),
        dict(type='RandomHorizontalFlip'),
        dict(type='RandomResizedCrop', size=224, scale=(0.08, 1.0)),
    ]))
# LayerScale's gamma is not decayed either (the authors decay no 1-D parameter).
optim_wrapper = dict(optimizer=dict(lr=1.5e-3, betas=(0.9, 0.999), weight_decay=0.05),
                     clip_grad=dict(max_norm=3.0), paramwise_cfg=dict(custom_keys={'.gamma': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=True, base_batch_size=2048)
train_cfg = dict(type='MIMTrainLoop', max_epochs=800)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=10, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=1000))
