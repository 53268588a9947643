# runtime.py with the micro protocol's schedule, shared by the MAE, CAE and BEiT-style micro configs: 5 epochs
# (975 steps of 256), warmup over the first half epoch then cosine to zero, a checkpoint every 100 steps (a
# killed run loses at most ~2 minutes). The ablation scales change the length only
# (configs/ablation/micro_bf16_*ep.py).
_base_ = ['runtime.py']
train_cfg = dict(type='MIMTrainLoop', max_epochs=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=0.5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0.5, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=100))
