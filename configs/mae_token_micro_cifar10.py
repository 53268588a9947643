# Cross-combination: the micro MAE predicting our tokenizer's visual tokens (cross-entropy) instead of pixels.
# Needs `python tools/train_tokenizer.py configs/tokenizer_cifar10.py` first.
_base_ = ['mae_micro_cifar10.py']

model = dict(target=dict(_delete_=True, type='TokenTarget', checkpoint='work_dirs/tokenizer_cifar10/tokenizer.pth'))
