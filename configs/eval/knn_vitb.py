# kNN, paper-scale protocol (ImageNet-1K): the micro recipe's k = 20 and T = 0.07 on [cls] features of the
# 224 px centre crop.
_base_ = ['_base_/imagenet.py']
protocol = 'knn'
pool = 'cls'
k = 20
temperature = 0.07
