# The micro protocol for CAE: CIFAR-10 at 32 px, patch 4 (an 8x8 grid), the micro encoder (192 wide, 6 blocks).
# The authors' recipe scaled down: block-wise masking of half the patches (32 of 64; blocks of at least 4
# patches, the 16-of-196 minimum scaled to the grid), regressor and decoder 2 blocks each (4 in the recipe),
# lambda 2, teacher momentum 0, layer scale 0.1, drop path 0.1 in the encoder, regressor and decoder with the
# teacher in train mode (its drop path active, as in the authors' code), AdamW (0.9, 0.999) wd 0.05, grad clip 3.0,
# token target from our own tokenizer (run `python tools/train_tokenizer.py configs/tokenizer_cifar10.py` first;
# configs/cae_pixel_micro_cifar10.py needs no tokenizer). Base lr 1.5e-3 per 256 images, as the micro MAE.
_base_ = ['_base_/runtime_micro.py', '_base_/data_cifar10.py']

model = dict(
    type='CAE',
    encoder=dict(type='ViT', arch='micro', img_size=32, patch_size=4, drop_path_rate=0.1, layer_scale_init=0.1),
    regressor=dict(type='CAERegressor', depth=2, num_heads=3, layer_scale_init=0.1, drop_path_rate=0.1),
    decoder=dict(type='CAEDecoder', depth=2, num_heads=3, layer_scale_init=0.1, drop_path_rate=0.1),
    masker=dict(type='BlockMasker', num_masked=32, min_block_patches=4),
    target=dict(type='TokenTarget', checkpoint='work_dirs/tokenizer_cifar10/tokenizer.pth'),
    align_weight=2.0,
    momentum=0.0,
    teacher_train_mode=True,
    data_preprocessor={{_base_.data_preprocessor}},
)

# LayerScale's gamma is not decayed either (the authors decay no 1-D parameter).
optim_wrapper = dict(optimizer=dict(lr=1.5e-3, betas=(0.9, 0.999)), clip_grad=dict(max_norm=3.0),
                     paramwise_cfg=dict(custom_keys={'.gamma': dict(decay_mult=0.0)}))
# The teacher follows the encoder after every optimizer step.
custom_hooks = [dict(type='ThroughputHook'), dict(type='MomentumTeacherHook')]
