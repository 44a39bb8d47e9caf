"""posext for Hugging Face vision embeddings: ``accelerate(model)`` / ``unpatch(model)``.

Patches ``interpolate_pos_encoding`` (used by ``forward(..., interpolate_pos_encoding=True)``) of the
embeddings modules of ViT (``ViTEmbeddings``), CLIP (``CLIPVisionEmbeddings``), SigLIP
(``SiglipVisionEmbeddings``), DINOv2 (``Dinov2Embeddings``) and DINOv2 with registers
(``Dinov2WithRegistersEmbeddings``). Each keeps its model's own numerics (transformers 5.23): bicubic,
``align_corners=False``, size ``(height // patch, width // patch)`` from a square stored grid; one class token
copied (none for SigLIP); DINOv2 interpolates in float32 and casts back; DINOv2-with-registers adds
``antialias=True``. Where HF returns the stored table unchanged (same patch count and a square image) the
original method runs. The resized table comes from a per-module ``PosEmbedCache`` where no gradient flows,
else from posext's differentiable resample op (HF adds it in ``forward``, so there is no fused add here).

Variable-resolution towers (SigLIP2 NaFlex's ``Siglip2VisionEmbeddings``, Qwen3-VL's ``Qwen3VLVisionModel``)
get all their images' position rows from one ``posext.resample_varlen`` call; see
:mod:`posext.integrations.varlen_hf`. The vision RoPE of the Qwen2-VL, Qwen2.5-VL and Qwen3-VL towers and of
DINOv3 ViT runs as one fused ``posext.apply_rope`` per block; see :mod:`posext.integrations.rope_hf`.
"""
from typing import Optional

import torch
from torch import nn

from ..cache import PosEmbedCache
from ..compat._common import pair
from ..compat.hf import interpolate_pos_encoding
from . import rope_hf, varlen_hf
from ._patching import cache_of, patch_all, unpatch_modules

# class name -> (attribute path of the table, prefix tokens, antialias, upcast)
_SPECS = {
    "ViTEmbeddings": ("position_embeddings", 1, False, False),
    "CLIPVisionEmbeddings": ("position_embedding.weight", 1, False, False),
    "SiglipVisionEmbeddings": ("position_embedding.weight", 0, False, False),
    "Dinov2Embeddings": ("position_embeddings", 1, False, True),
    "Dinov2WithRegistersEmbeddings": ("position_embeddings", 1, True, True),
}


def _classes():
    """The embeddings classes of the installed transformers, by name (a model family may be missing)."""
    import importlib

    found = {}
    for name, module in (("ViTEmbeddings", "vit"), ("CLIPVisionEmbeddings", "clip"),
                         ("SiglipVisionEmbeddings", "siglip"), ("Dinov2Embeddings", "dinov2"),
                         ("Dinov2WithRegistersEmbeddings", "dinov2_with_registers")):
        try:
            mod = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
        except ImportError:
            continue
        found[name] = getattr(mod, name)
    return found


def _table(module: nn.Module, path: str) -> torch.Tensor:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _patch_size(module: nn.Module):
    patch = getattr(module, "patch_size", None)
    if patch is None:
        patch = module.patch_embeddings.patch_size
    return pair(patch)


def _interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    name = next(base.__name__ for base in type(self).__mro__ if base.__name__ in _SPECS)
    path, prefix, antialias, upcast = _SPECS[name]
    table = _table(self, path)
    rows = table.shape[-2] - prefix  # [1, P + N, C] or [P + N, C]
    # HF's early return (the stored table, same patch count and a square image) would guard a traced graph on
    # the traced size; traced, the table is resampled instead, which at its own grid returns it exactly.
    if (not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and embeddings.shape[1] - prefix == rows and height == width):
        return type(self).interpolate_pos_encoding(self, embeddings, height, width)
    patch = _patch_size(self)

    def compute(t):
        return interpolate_pos_encoding(t if t.dim() == 3 else t.unsqueeze(0), height, width, patch,
                                        antialias=antialias, upcast=upcast, always_interpolate=True,
                                        num_prefix_tokens=prefix)

    return cache_of(self).get(table, ("hf", height // patch[0], width // patch[1]), compute)


def accelerate(model: nn.Module, *, cache: Optional[PosEmbedCache] = None, max_entries: int = 8) -> nn.Module:
    """Patches every supported HF vision embeddings module and variable-resolution tower in ``model`` in
    place (TypeError if there is none). Patching twice is a no-op."""
    classes = tuple(_classes().values())
    targets = [(m, "interpolate_pos_encoding", _interpolate_pos_encoding) for m in model.modules()
               if isinstance(m, classes)
               and any(type(m).interpolate_pos_encoding is c.interpolate_pos_encoding for c in classes)]
    targets += varlen_hf.targets(model)
    targets += rope_hf.targets(model)
    return patch_all(model, targets, cache, max_entries,
                     "HF ViT / CLIP / SigLIP / Dinov2 vision embeddings, SigLIP2 / Qwen-VL vision tower or "
                     "DINOv3 RoPE")


def unpatch(model: nn.Module) -> nn.Module:
    """Removes the patches (and caches) of ``accelerate``."""
    unpatch_modules(model)
    return model


__all__ = ["accelerate", "unpatch"]
