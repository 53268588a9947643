"""Network parts: the ViT encoder, the MAE decoder, patch and position-embedding helpers."""
from mimbench.models.mae_decoder import MAEDecoder
from mimbench.models.patches import patchify, sincos_pos_embed_2d, unpatchify
from mimbench.models.vit import ARCHS, ViT

__all__ = ['ARCHS', 'MAEDecoder', 'ViT', 'patchify', 'sincos_pos_embed_2d', 'unpatchify']
