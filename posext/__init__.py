"""posext: fused position-embedding ops for Vision Transformers (CPU + CUDA, pure-PyTorch fallback)."""
from ._backend import backend, info
from .resample import resample
from .sincos import CONVENTIONS, sincos_1d, sincos_2d

__version__ = "0.1.0"
__all__ = ["backend", "info", "resample", "sincos_1d", "sincos_2d", "CONVENTIONS"]
