# The linear-probe recipe of every scale, shortened to 3 epochs on synthetic 16 px images in 4 classes (tests).
_base_ = ['_base_/synthetic.py', '../../../configs/eval/_base_/linear_recipe.py']
base_lr = 0.1
batch_size = 32
epochs = 3
warmup_epochs = 1
threads = 1
