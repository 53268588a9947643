# The micro protocol: MAE on CIFAR-10 at 32 px with patch 4 (an 8x8 grid), small enough that a CPU run of
# about 20 minutes on 2 cores (5 epochs, 975 steps of 256) gives a useful encoder. The paper's recipe otherwise
# (75% random masking, normalized-pixel target, AdamW (0.9, 0.95), wd 0.05, warmup + cosine,
# RandomResizedCrop(0.2, 1) + flip), except the base learning rate: 1.5e-3 instead of 1.5e-4, because such a
# short run gains from the faster start (150-step test in docs/results/mae_micro_cifar10.md).
_base_ = ['_base_/runtime_micro.py', '_base_/data_cifar10.py']

model = dict(
    type='MAE',
    encoder=dict(type='ViT', arch='micro', img_size=32, patch_size=4),
    decoder=dict(type='MAEDecoder', embed_dim=128, depth=2, num_heads=4),
    masker=dict(type='RandomMasker', ratio=0.75),
    target=dict(type='PixelTarget', normalize=True),
    data_preprocessor={{_base_.data_preprocessor}},
)

optim_wrapper = dict(optimizer=dict(lr=1.5e-3))
