"""Network parts: the ViT encoder, MAE and CAE decoders, CAE regressor, heads, tokenizer, patch helpers."""
from mimbench.models.cae_decoder import CAEDecoder
from mimbench.models.cae_regressor import CAERegressor, CrossAttention, CrossAttentionBlock
from mimbench.models.heads import LinearHead
from mimbench.models.mae_decoder import MAEDecoder
from mimbench.models.patches import patchify, sincos_pos_embed_2d, unpatchify
from mimbench.models.tokenizer import VQTokenizer, codebook_usage
from mimbench.models.vit import ARCHS, ViT

__all__ = ['ARCHS', 'CAEDecoder', 'CAERegressor', 'CrossAttention', 'CrossAttentionBlock', 'LinearHead',
           'MAEDecoder', 'VQTokenizer', 'ViT', 'codebook_usage', 'patchify', 'sincos_pos_embed_2d', 'unpatchify']
