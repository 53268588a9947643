# Attentive probe, micro protocol (CIFAR-10). CAE's recipe: frozen encoder, one cross-attention block with a
# zero-initialized class query over all patch tokens (LayerNorm on q/k/v, no MLP, no residual) as wide as the
# encoder with its number of heads, then BatchNorm(affine=False) + linear; SGD momentum 0.9, lr 0.4 at batch
# 8192 (0.0125 per 256), no weight decay, 90 epochs, no augmentation. Batch 1,024 for the 25x smaller
# training set, lr scaled by the batch (SGD's progress does follow the batch, unlike LARS's); 10 warmup epochs
# as in MAE's linear probe. token_dtype 'auto' runs the products over all tokens in bfloat16 with float32
# accumulation on a CPU with bf16 units (3x faster there, same accuracy on the micro MAE: 65.8% both ways) and
# in float32 on a CPU without them.
_base_ = ['_base_/cifar10.py']
protocol = 'attentive'
pool = 'tokens'
num_heads = None          # None: the encoder's
optimizer = dict(type='SGD', momentum=0.9, weight_decay=0.0)
base_lr = 0.0125
batch_size = 1024
epochs = 90
warmup_epochs = 10
token_dtype = 'auto'
# Both cores on an idle machine (1.35 s per epoch against 2 s on one), one when another job is running (on two
# threads beside a busy process every step waits for a descheduled thread: 6x slower).
threads = 'auto'
