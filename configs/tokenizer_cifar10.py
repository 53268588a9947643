# The discrete tokenizer that token targets use on CIFAR-10: a VQ-VAE with one token per 4x4 patch (the micro
# encoder's grid) and a vocabulary of 512, trained on the same augmented training images MIM pretraining sees.
#   python tools/train_tokenizer.py configs/tokenizer_cifar10.py
# writes work_dirs/tokenizer_cifar10/tokenizer.pth and reports reconstruction error and codebook usage.
_base_ = ['_base_/runtime.py', '_base_/data_cifar10.py']

tokenizer = dict(type='VQTokenizer', vocab_size=512, code_dim=32, hidden_dim=64, downsample=4)
model = dict(type='TokenizerTraining', tokenizer=tokenizer, data_preprocessor={{_base_.data_preprocessor}})

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(optimizer=dict(lr=2e-3, betas=(0.9, 0.99), weight_decay=0.0))
train_cfg = dict(type='MIMTrainLoop', max_epochs=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=0.1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0.1, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=100))
# What tools/train_tokenizer.py measures after training: un-augmented images of this split.
tokenizer_eval = dict(split='test', num_images=10000, batch_size=500, pipeline=[])
