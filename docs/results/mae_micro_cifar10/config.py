auto_scale_lr = dict(base_batch_size=256, enable=True)
cifar10_mean = (
    0.4914,
    0.4822,
    0.4465,
)
cifar10_std = (
    0.247,
    0.2435,
    0.2616,
)
custom_hooks = [
    dict(type='ThroughputHook'),
]
data_preprocessor = dict(
    mean=(
        0.4914,
        0.4822,
        0.4465,
    ),
    std=(
        0.247,
        0.2435,
        0.2616,
    ),
    type='ImagePreprocessor')
data_root = '../shared/data/cifar10'
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False,
        interval=100,
        max_keep_ckpts=2,
        save_last=True,
        type='CheckpointHook'),
    logger=dict(interval=20, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=None,
    timer=dict(type='IterTimerHook'))
default_scope = 'mimbench'
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
launcher = 'none'
log_processor = dict(by_epoch=False, window_size=20)
model = dict(
    data_preprocessor=dict(
        mean=(
            0.4914,
            0.4822,
            0.4465,
        ),
        std=(
            0.247,
            0.2435,
            0.2616,
        ),
        type='ImagePreprocessor'),
    decoder=dict(depth=2, embed_dim=128, num_heads=4, type='MAEDecoder'),
    encoder=dict(arch='micro', img_size=32, patch_size=4, type='ViT'),
    masker=dict(ratio=0.75, type='RandomMasker'),
    target=dict(normalize=True, type='PixelTarget'),
    type='MAE')
optim_wrapper = dict(
    optimizer=dict(
        betas=(
            0.9,
            0.95,
        ), lr=0.0015, type='AdamW', weight_decay=0.05),
    paramwise_cfg=dict(
        bias_decay_mult=0.0,
        custom_keys=dict(
            cls_token=dict(decay_mult=0.0),
            mask_token=dict(decay_mult=0.0),
            pos_embed=dict(decay_mult=0.0)),
        norm_decay_mult=0.0),
    type='OptimWrapper')
param_scheduler = [
    dict(
        begin=0,
        by_epoch=True,
        convert_to_iter_based=True,
        end=0.5,
        start_factor=0.0001,
        type='LinearLR'),
    dict(
        begin=0.5,
        by_epoch=True,
        convert_to_iter_based=True,
        eta_min=0.0,
        type='CosineAnnealingLR'),
]
randomness = dict(seed=0)
train_cfg = dict(max_epochs=5, type='MIMTrainLoop')
train_dataloader = dict(
    batch_size=256,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        pipeline=[
            dict(scale=(
                0.2,
                1.0,
            ), size=32, type='RandomResizedCrop'),
            dict(type='RandomHorizontalFlip'),
        ],
        root='../shared/data/cifar10',
        split='train',
        type='CIFAR10'),
    drop_last=True,
    num_workers=0,
    sampler=dict(shuffle=True, type='ResumableSampler'))
work_dir = 'work_dirs/mae_micro_cifar10'
