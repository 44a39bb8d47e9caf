"""posext: fused position-embedding ops for Vision Transformers (CPU + CUDA, pure-PyTorch fallback)."""
from ._backend import backend, info
from .cache import CacheStats, PosEmbedCache
from .factorized import factorized_pos_embed
from .resample import add_pos_embed, resample
from .rope import Rope2d, apply_rope_2d, rope_axial_freqs, rope_mixed_freqs, rope_positions, rope_positions_2d
from .rope_axes import apply_rope, rope_section_freqs, rope_vjepa2_freqs
from .rope_windows import rope_window_order
from .sincos import CONVENTIONS, sincos_1d, sincos_2d
from .sincos3d import CONVENTIONS_3D, sincos_3d
from .varlen import add_pos_embed_varlen, resample_varlen

__version__ = "0.1.0"
__all__ = ["backend", "info", "PosEmbedCache", "CacheStats", "factorized_pos_embed", "resample",
           "resample_varlen", "add_pos_embed_varlen", "sincos_3d", "CONVENTIONS_3D",
           "add_pos_embed", "sincos_1d", "sincos_2d", "CONVENTIONS", "apply_rope_2d", "Rope2d",
           "rope_axial_freqs", "rope_mixed_freqs", "rope_positions", "rope_positions_2d", "apply_rope",
           "rope_section_freqs", "rope_vjepa2_freqs", "rope_window_order"]
