"""Evaluation protocols for pretrained encoders: linear, attentive and kNN probes on cached frozen features,
end-to-end fine-tuning (and its from-scratch baseline), timm export and reconstruction pictures.

Importing this package registers the LARS optimizer (``OPTIMIZERS``). The probe heads are plain modules the
probes build themselves: they are no pretraining part, so they stay out of the ``HEADS`` registry.
"""
from mimbench.evaluation.attentive import AttentiveProbeHead, attentive_probe
from mimbench.evaluation.encoder import EncoderMismatchError, LoadedEncoder, load_encoder, resolve_checkpoint
from mimbench.evaluation.features import POOLS, FeatureCache, Features, cached_features, extract_features
from mimbench.evaluation.finetune import Classifier, finetune, layer_decay_groups
from mimbench.evaluation.knn import knn_accuracy, knn_predict
from mimbench.evaluation.linear import LinearProbeHead, linear_probe
from mimbench.evaluation.records import make_record, read_record, write_record
from mimbench.evaluation.run import PROTOCOLS, benchmark, evaluate, load_eval_config

__all__ = [
    'AttentiveProbeHead', 'Classifier', 'EncoderMismatchError', 'FeatureCache', 'Features', 'LinearProbeHead',
    'LoadedEncoder', 'POOLS', 'PROTOCOLS', 'attentive_probe', 'benchmark', 'cached_features', 'evaluate',
    'extract_features', 'finetune', 'knn_accuracy', 'knn_predict', 'layer_decay_groups', 'linear_probe',
    'load_encoder', 'load_eval_config', 'make_record', 'read_record', 'resolve_checkpoint', 'write_record',
]
