# The schedule study (docs/results/schedule_study.md): the micro_bf16 protocol with 10 pretraining epochs a cell
# instead of 5, nothing else changed. How the learning-rate schedule follows the length was fixed before any
# probe was seen: the peak lr (1.5e-3 at batch 256) and the warmup (0.5 epochs: 97 steps, as mmengine rounds
# 0.5 x 195 down) stay, the cosine decay to zero stretches over the rest, as the MAE paper's schedule
# ablation (Figure 7) keeps its recipe and warmup and varies only the length. Own store and tables
# (*_micro_bf16_10ep.md).
_base_ = ['micro_bf16.py']
scale = 'micro_bf16_10ep'
description = 'ViT micro (6 blocks x 192, patch 4) on CIFAR-10 at 32 px, bf16 autocast'
pretrain_options = {'train_cfg.max_epochs': 10}
seeds = 1
