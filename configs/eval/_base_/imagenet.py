# Evaluation data of the paper protocols: ImageNet-1K in ImageFolder layout (root/train, root/val), resized
# to 256 on the shorter side and centre-cropped to 224, as in MAE's linear probe. Pass --data-root.
data_root = 'data/imagenet'
eval_pipeline = [dict(type='Resize', size=256), dict(type='CenterCrop', size=224)]
data = dict(
    train=dict(type='ImageFolder', root=data_root, split='train', pipeline=eval_pipeline),
    test=dict(type='ImageFolder', root=data_root, split='val', pipeline=eval_pipeline),
    num_classes=1000,
)
# dtype 'auto': bfloat16 where the extracting device computes it natively, float32 elsewhere
extract = dict(batch_size=256, dtype='auto', num_workers=8, threads=None)
