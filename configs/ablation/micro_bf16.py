# The micro protocol (micro.py) pretrained in bfloat16 autocast: on a CPU, AutocastOptimWrapper with attention as
# plain products (docs/performance.md: 1.70x the fp32 step of the default cell on an AVX512-BF16 EPYC). The same
# cells but for precision, which is part of a cell's key (amp=True), kept in their own store
# (docs/results/ablation/micro_bf16) and tables (*_micro_bf16.md), so fp32 and bf16 results never mix. Fastest
# where bf16 is native (AVX512-BF16 or AMX CPUs, Ampere+ GPUs); on other CPUs its products run as float32 products
# of the bf16 operands (Float32Products), the same arithmetic at a little under the fp32 speed.
_base_ = ['micro.py']
scale = 'micro_bf16'
description = 'ViT micro (6 blocks x 192, patch 4) on CIFAR-10 at 32 px, bf16 autocast pretraining'
amp = True
