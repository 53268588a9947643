# Shared by every pretraining config: logging, checkpointing, the training loop and the optimizer recipe
# common to MAE, CAE and BEiT (AdamW, no weight decay on biases, norms and embeddings; warmup + cosine).
default_scope = 'mimbench'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Checkpoints by iteration so a killed run loses at most `interval` steps; two kept plus the last.
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2, save_last=True),
    # MIMTrainLoop positions the sampler itself (epoch and mid-epoch start).
    sampler_seed=None,
)
custom_hooks = [dict(type='ThroughputHook')]
log_processor = dict(by_epoch=False, window_size=20)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
randomness = dict(seed=0)
launcher = 'none'

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='SummaryOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0),
                     'mask_token': dict(decay_mult=0.0)}),
)
# optimizer.lr is the base learning rate for a batch of 256; the runner scales it by (total batch) / 256.
auto_scale_lr = dict(enable=True, base_batch_size=256)
