# Evaluation data of the micro protocol: CIFAR-10 at 32 px. Probes and kNN train on features of the training
# split and report top-1 on the test split; features are of the unaugmented images (no pipeline).
data_root = '../shared/data/cifar10'
data = dict(
    train=dict(type='CIFAR10', root=data_root, split='train'),
    test=dict(type='CIFAR10', root=data_root, split='test'),
    num_classes=10,
)
# Feature extraction: 250 images per forward pass (on 2 CPU cores larger batches were slower: 519 img/s at 250,
# 247-487 at 500, activations fall out of cache). dtype 'auto' runs a bfloat16 copy of the encoder where the
# device computes bf16 natively, float32 elsewhere: on an AMD EPYC (Zen 4, AVX512-BF16), bf16 was twice as fast
# as float32 with the same probe accuracy (micro MAE, linear / kNN top-1: cls 51.2 / 39.8 in bf16 vs 51.4 /
# 39.7 in fp32; mean 56.7 / 44.1 in both); on a CPU without bf16 units bf16 runs as float32 products, a little
# slower than float32 (docs/evaluation.md).
# threads: None uses every core (fastest on an idle machine); 1 when another job shares the machine.
extract = dict(batch_size=250, dtype='auto', num_workers=0, threads=None)
