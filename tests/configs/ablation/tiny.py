# A seconds-long ablation scale for tests: the tiny MAE/CAE configs on synthetic 16 px images, two epochs of
# 8 iterations per cell, kNN and linear probes on synthetic features.
scale = 'tiny'
description = 'tiny ViT (2 blocks x 32, patch 4) on synthetic 16 px images'
paper = 'ViT-L/16 on ImageNet-1K, 800 pretraining epochs'
methods = dict(mae='tests/configs/tiny_mae.py', cae='tests/configs/tiny_cae.py')
method_options = dict(mae={'model.decoder.embed_dim': 16})
pretrain_options = {'train_cfg.max_epochs': 2}   # 8 iterations (warmup is 1 epoch)
amp = False
num_train_images = 64
num_test_images = 32
evaluations = dict(
    lin=dict(protocol='linear', config='tests/configs/ablation/linear_tiny.py'),
    knn=dict(protocol='knn', config='tests/configs/ablation/knn_tiny.py'),
)
default_evaluations = ['knn']
seeds = 1
efficiency = 0.5
probe_seconds = dict(lin=1, knn=1)
test_fraction = 0.5
evaluations['lin_mean'] = dict(protocol='linear', config='tests/configs/ablation/linear_tiny.py',
                               options=dict(pool='mean'))
