# The schedule study's longest schedule (issue 25): the micro_bf16 cells at 100 pretraining epochs, where a
# GPU is lent, on the device data path (the data held on the GPU: a loader could not feed it). The recipe follows
# the length as at 10 and 20 epochs (micro_bf16_20ep.py): peak lr and warmup kept, the cosine stretched. The data
# path is part of a cell's key, so these cells never share a key with the CPU cells, and every effect is a
# difference of two rows of this scale. Own store and tables (*_micro_bf16_device_100ep.md); on the GPU machine
# see tools/device_check.py for the data and the command.
_base_ = ['micro_bf16_device.py']
scale = 'micro_bf16_device_100ep'
description = ('ViT micro (6 blocks x 192, patch 4) on CIFAR-10 at 32 px, bf16 autocast, batches augmented on '
               'the device')
pretrain_options = {'train_cfg.max_epochs': 100}
seeds = 2
