# The micro_bf16 protocol on the device data path (mimbench/data/device.py): CIFAR-10 stays on the training
# device as uint8 and whole batches are cropped and flipped there, which a GPU needs to be fed at its speed.
# Another data path (batch crops resampled by grid_sample, not rounded to uint8) is another cell: its own key
# (device_data=True), store and tables (*_micro_bf16_device.md).
_base_ = ['micro_bf16.py']
scale = 'micro_bf16_device'
description = ('ViT micro (6 blocks x 192, patch 4) on CIFAR-10 at 32 px, bf16 autocast, batches augmented on '
               'the device')
device_data = True
