# The micro ablation protocol: every cell pretrains on CIFAR-10 (32 px, patch 4) on CPU, then is evaluated by
# the micro recipes of configs/eval/. docs/results/ablation_protocol.md records how the budget was chosen.
scale = 'micro'
description = 'ViT micro (6 blocks x 192, patch 4) on CIFAR-10 at 32 px'
paper = 'ViT-L/16 on ImageNet-1K, 800 pretraining epochs'
# The pretraining config of each method; axes change them with --cfg-options style overrides.
methods = dict(
    mae='configs/mae_micro_cifar10.py',
    cae='configs/cae_micro_cifar10.py',
    beit='configs/beit_micro_cifar10.py',
)
# The ablation's default MAE is the paper's default scaled to the micro encoder: decoder 2 blocks (8 of ViT-L's
# 24 is a third; a third of 6 is 2) and 96 wide (512 of 1024 is half; half of 192 is 96).
method_options = dict(mae={'model.decoder.embed_dim': 96})
# The per-cell budget, the same for every cell of every axis.
pretrain_options = {'train_cfg.max_epochs': 5}
amp = False
num_train_images = 50000
num_test_images = 10000
# The weight files cells read, pinned by content (sha256, first 16 hex digits): the tokenizer of the token
# target and of CAE / BEiT-style, and the PCA basis. A cell's key takes the file's content from here, so it is
# the same on a fresh clone without work_dirs/; before a cell runs, tools/ablate.py puts the pinned file back at
# its path from the results store (docs/results/ablation/micro/files/) and refuses a file there with other
# content. Every scale built on this one (micro_bf16, the 10- and 20-epoch scales) reads the same files.
artifacts = {
    'work_dirs/tokenizer_cifar10/tokenizer.pth': '2ad582f36018001b',
    'work_dirs/pca_basis_32px_g8.pth': 'edab07ebc00cf245',
}
# What each evaluation column is: protocol, eval config, overrides. 'lin' is the paper's [cls] probe.
# The probes' numerics are pinned to bfloat16, not the eval configs' 'auto': every stored cell was evaluated
# that way (on a CPU with bf16 units). 'auto' resolves to float32 on a CPU without them, and the eval hash
# records what it resolved to, so every stored cell would count as unevaluated there; its features would also
# be rounded differently from the rest of its table. On such a CPU the pin costs a little time (bf16 products
# run as float32 products, Float32Products), not accuracy. (Fine-tuning never reads extract.dtype; it is pinned
# there too so that the ft column's eval hash stays what it was.)
bf16 = {'extract.dtype': 'bfloat16'}
evaluations = dict(
    lin=dict(protocol='linear', config='configs/eval/linear_micro.py', options=bf16),
    lin_mean=dict(protocol='linear', config='configs/eval/linear_micro.py', options=dict(bf16, pool='mean')),
    knn=dict(protocol='knn', config='configs/eval/knn_micro.py', options=bf16),
    att=dict(protocol='attentive', config='configs/eval/attentive_micro.py',
             options=dict(bf16, token_dtype='bfloat16')),
    ft=dict(protocol='finetune', config='configs/eval/finetune_micro.py', options=bf16),
)
default_evaluations = ['lin', 'lin_mean', 'knn', 'att']   # 'ft' with --finetune
# The metric of each table's check line (does the paper's direction show?). At this budget MAE's [cls] output
# is barely above a random encoder's while its mean-pooled patch tokens are 10+ points above
# (docs/results/ablation_protocol.md), so the linear probe on mean-pooled tokens carries the signal here.
check_metric = 'lin_mean'
seeds = 2
# --dry-run's time estimate: FLOPs / (device rate x this fraction); docs/performance.md measured 46-67% of the
# matmul rate for micro pretraining steps on CPU.
efficiency = 0.5
# Measured probe times on cached features (docs/evaluation.md, idle machine), for the dry-run estimate.
probe_seconds = dict(lin=8, lin_mean=8, knn=2, att=110)
test_fraction = 0.2    # 10,000 test images per 50,000 training images
