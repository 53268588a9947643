# A 3-epoch linear probe on synthetic 16 px images in 4 classes (tests).
_base_ = ['knn_tiny.py']
protocol = 'linear'
optimizer = dict(type='LARS', momentum=0.9, weight_decay=0.0)
base_lr = 0.1
batch_size = 32
epochs = 3
warmup_epochs = 1
threads = 1
