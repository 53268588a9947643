# Linear probe, paper protocol (MAE, ViT-B/L on ImageNet-1K): LARS, batch 16,384, base lr 0.1 per 256,
# 90 epochs with 10 warmup, [cls] features of the 224 px centre crop.
_base_ = ['_base_/imagenet.py', '_base_/linear_recipe.py']
base_lr = 0.1
batch_size = 16384
threads = None
