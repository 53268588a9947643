# MAE's linear-probe recipe, the part every scale keeps: the frozen encoder's [cls] output, LARS with momentum
# 0.9 and no weight decay, 90 epochs of which 10 warm up, then cosine. A scale's config adds its data, batch
# and lr (LARS's lr does not scale with the batch the way SGD's does; see linear_micro.py).
protocol = 'linear'
pool = 'cls'
optimizer = dict(type='LARS', momentum=0.9, weight_decay=0.0)
epochs = 90
warmup_epochs = 10
