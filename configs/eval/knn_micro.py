# kNN, micro protocol (CIFAR-10): cosine similarity of L2-normalized [cls] features, the 20 nearest training
# images vote with weight exp(similarity / 0.07).
_base_ = ['_base_/cifar10.py']
protocol = 'knn'
pool = 'cls'
k = 20
temperature = 0.07
