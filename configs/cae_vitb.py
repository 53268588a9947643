# CAE ViT-B/16 on ImageNet-1K, the authors' recipe: block-wise masking of 98 of 196 patches (blocks >= 16),
# regressor 4 and decoder 4 blocks with layer scale 0.1, lambda 2, teacher momentum 0, drop path 0.1 in the
# encoder, the regressor and the decoder (the authors pass one --drop_path to all three), the teacher run in
# train mode so its drop path is active too (in their code it is a submodule that model.train() switches),
# AdamW lr 1.5e-3 (at batch 2048) betas (0.9, 0.999) wd 0.05, grad clip 3.0, 10 warmup epochs then cosine,
# 300 epochs (the paper also reports 800 and 1600), RandomResizedCrop (0.08, 1) + flip, token target.
# The DALL-E tokenizer cannot be downloaded here: train ours first with configs/tokenizer_imagenet.py.
_base_ = ['_base_/runtime.py', '_base_/data_imagenet.py']

model = dict(
    type='CAE',
    encoder=dict(type='ViT', arch='base', img_size=224, patch_size=16, drop_path_rate=0.1, layer_scale_init=0.1),
    regressor=dict(type='CAERegressor', depth=4, num_heads=12, layer_scale_init=0.1, drop_path_rate=0.1,
                   num_masked=98),
    decoder=dict(type='CAEDecoder', depth=4, num_heads=12, layer_scale_init=0.1, drop_path_rate=0.1),
    masker=dict(type='BlockMasker', num_masked=98, min_block_patches=16),
    target=dict(type='TokenTarget', checkpoint='work_dirs/tokenizer_imagenet/tokenizer.pth'),
    align_weight=2.0,
    momentum=0.0,
    teacher_train_mode=True,
    data_preprocessor={{_base_.data_preprocessor}},
)

train_dataloader = dict(
    batch_size=128,  # per GPU; 16 GPUs x 128 = the recipe's 2048
    dataset=dict(pipeline=[dict(type='RandomResizedCrop', size=224, scale=(0.08, 1.0)),
                           dict(type='RandomHorizontalFlip')]))
# LayerScale's gamma is not decayed either (the authors decay no 1-D parameter).
optim_wrapper = dict(optimizer=dict(lr=1.5e-3, betas=(0.9, 0.999), weight_decay=0.05),
                     clip_grad=dict(max_norm=3.0), paramwise_cfg=dict(custom_keys={'.gamma': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=True, base_batch_size=2048)   # lr 1.5e-3 is for the total batch of 2048
custom_hooks = [dict(type='ThroughputHook'), dict(type='MomentumTeacherHook')]
train_cfg = dict(type='MIMTrainLoop', max_epochs=300)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=10, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=1000))
