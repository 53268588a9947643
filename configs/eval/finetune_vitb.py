# Fine-tuning, paper protocol (MAE ViT-B/16 on ImageNet-1K): MAE's recipe (_base_/finetune_recipe.py) for 100
# epochs with 5 warmup, batch 1024, layer decay 0.65 (0.75 for ViT-L/H), 224 px crops.
_base_ = ['_base_/imagenet.py', '_base_/finetune_recipe.py']
epochs = 100
warmup_epochs = 5
batch_size = 1024
layer_decay = 0.65
train_pipeline = [
    dict(type='RandomResizedCrop', size=224, scale=(0.08, 1.0)),
    dict(type='RandomHorizontalFlip'),
]
num_workers = 10
threads = None
log_interval = 100
