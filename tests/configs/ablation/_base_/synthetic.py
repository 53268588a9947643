# Evaluation data for tests: synthetic 16 px images in 4 classes, extracted in float32 on one batch.
data = dict(train=dict(type='SyntheticImages', num_images=64, image_size=16, num_classes=4, seed=0),
            test=dict(type='SyntheticImages', num_images=32, image_size=16, num_classes=4, seed=1),
            num_classes=4)
extract = dict(batch_size=32, dtype='float32', num_workers=0, threads=None)
