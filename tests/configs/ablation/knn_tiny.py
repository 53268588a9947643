# kNN on synthetic 16 px images in 4 classes (tests).
_base_ = ['_base_/synthetic.py']
protocol = 'knn'
pool = 'cls'
k = 5
temperature = 0.07
