# The tokenizer for the ViT-B/16 recipes (cae_vitb.py, beit_vitb.py): a VQ-VAE with one token per 16x16 patch and
# BEiT's vocabulary of 8192, trained on ImageNet-1K (pass --data-root).
#   python tools/train_tokenizer.py configs/tokenizer_imagenet.py --data-root /data/imagenet
_base_ = ['_base_/runtime.py', '_base_/data_imagenet.py']

tokenizer = dict(type='VQTokenizer', vocab_size=8192, code_dim=32, hidden_dim=128, downsample=16)
model = dict(type='TokenizerTraining', tokenizer=tokenizer, data_preprocessor={{_base_.data_preprocessor}})

optim_wrapper = dict(optimizer=dict(lr=2e-3, betas=(0.9, 0.99), weight_decay=0.0))
train_cfg = dict(type='MIMTrainLoop', max_epochs=10)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=0.5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0.5, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=1000))
tokenizer_eval = dict(split='val', num_images=10000, batch_size=100,
                      pipeline=[dict(type='Resize', size=256), dict(type='CenterCrop', size=224)])
