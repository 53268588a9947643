# Linear probe, micro protocol (CIFAR-10). MAE's recipe: frozen encoder, the [cls] output, BatchNorm without
# affine then a linear layer, LARS (momentum 0.9, no weight decay), 90 epochs with 10 warmup epochs then cosine.
# Scaled: batch 16,384 -> 1,024 for the 25x smaller training set (49 steps per epoch instead of 78), keeping
# the paper's actual LARS lr of 6.4 (base lr 1.6 at 1,024) instead of scaling it down with the batch.
# LARS normalizes every step to lr * 0.001 * |w|, so unlike SGD's its progress per step does not grow with the
# batch; scaled down 16x (base lr 0.1) the probe underfits: 44.4% train and test accuracy after 90 epochs on
# the 20-minute micro MAE's features, against 52.8% train / 51.4% test at lr 6.4, where the training loss
# has converged (SGD at lr 0.4 converges to the same 51.5%).
_base_ = ['_base_/cifar10.py', '_base_/linear_recipe.py']
base_lr = 1.6
batch_size = 1024
threads = 1    # a probe's operations are too small to split over threads (mimbench.evaluation.probe)
