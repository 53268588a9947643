# Fine-tuning, paper protocol (MAE ViT-B/16 on ImageNet-1K): 100 epochs with 5 warmup, batch 1024, base lr
# 5e-4 per 256, AdamW (0.9, 0.999), weight decay 0.05, layer decay 0.65 (0.75 for ViT-L/H), drop path 0.1,
# RandAugment m9 (2 ops), random erasing 0.25, mixup 0.8 / cutmix 1.0, label smoothing 0.1, global average
# pooling. bfloat16 autocast (MAE used float16 AMP).
_base_ = ['_base_/imagenet.py']
protocol = 'finetune'
pool = 'mean'
epochs = 100
warmup_epochs = 5
batch_size = 1024
base_lr = 5e-4
layer_decay = 0.65
weight_decay = 0.05
betas = (0.9, 0.999)
drop_path = 0.1
label_smoothing = 0.1
mixup = 0.8
cutmix = 1.0
mixup_prob = 1.0
mixup_switch_prob = 0.5
rand_augment = dict(num_ops=2, magnitude=9)
random_erasing = 0.25
clip_grad = None
train_pipeline = [
    dict(type='RandomResizedCrop', size=224, scale=(0.08, 1.0)),
    dict(type='RandomHorizontalFlip'),
]
amp = True
num_workers = 10
threads = None
log_interval = 100
