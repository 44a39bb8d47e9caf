"""Fixed 3-D sin-cos position tables for video ViTs (V-JEPA, CogVideoX / diffusers, VideoMAE), made on the
target device in one kernel.

Grid and tokens. ``grid_size = (T, H, W)`` (frames or tubelets, rows, columns). Grid tokens are row-major
(t, h, w): token n sits at t = n // (H*W), h = (n // W) % H, w = n % W, after ``num_prefix_tokens`` zero
rows. A 1-D sin-cos pair over a coordinate p with F frequencies is ``[sin(p * omega_k) | cos(p * omega_k)]``,
omega_k = temperature^(-k / F), k in [0, F) (temperature = 10000 in every peer).

Conventions (channel order from channel 0):

``"vjepa"``
    V-JEPA / V-JEPA 2 ``get_3d_sincos_pos_embed(D, grid_size, grid_depth, uniform_power=False)``: half of
    the channels for t, a quarter each for h and w: ``[sin t, cos t | sin h, cos h | sin w, cos w]`` with D/4,
    D/8, D/8 frequencies (needs D divisible by 8). Its prefix is ``cls_token`` (one zero row).
``"vjepa_uniform"``
    the same with ``uniform_power=True``: every axis gets F = ceil(D/6) frequencies (2F channels), laid out
    as above, and the channels past D are dropped; the band that is cut short keeps the frequencies of F.
``"cogvideox"`` / ``"diffusers"``
    diffusers ``get_3d_sincos_pos_embed(D, (W, H), T, spatial_interpolation_scale,
    temporal_interpolation_scale)`` flattened to ``[T*H*W, D]``: a quarter of the channels for t, then a
    2-D table over 3D/4 channels whose first half follows the column:
    ``[sin t, cos t | sin w, cos w | sin h, cos h]`` with D/8, 3D/16, 3D/16 frequencies (needs D divisible
    by 16). Positions are t / temporal scale and w, h / spatial scale, rounded to float32 as diffusers'
    float32 grids hold them (which changes nothing at scale 1). Its ``spatial_size`` is (W, H); its
    ``[T, H*W, D]`` result is this table's ``.view(T, H*W, D)``, and CogVideoX's text rows in front are
    ``num_prefix_tokens``.
``"videomae"``
    VideoMAE ``get_sinusoid_encoding_table(T*H*W, D)``: a 1-D table over the flat token index n, interleaved
    per channel: channel c holds sin (even c) or cos (odd c) of n / temperature^(2*(c//2) / D), unlike the
    [sin | cos] halves of the 2-D MAE tables; any D >= 1.

All values are computed in float64 and rounded once to ``dtype``.
"""
import math
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from . import _checks
from .sincos import run_table_op

_T, _H, _W = 0, 1, 2
_SIN, _COS = 0, 1


class Layout(NamedTuple):
    """The op's description of a convention: ``bands`` (axis * 2 + is_cos, width, frequency count) triples,
    empty for the interleaved layout; ``float32_positions``: scaled positions rounded to float32."""
    bands: Tuple[Tuple[int, int, int], ...]
    float32_positions: bool = False

    @property
    def band_ints(self):
        return [v for band in self.bands for v in band]


def _pairs(axes_freqs, embed_dim):
    """sin / cos bands of each (axis, F), in order, cut at embed_dim channels."""
    bands, left = [], embed_dim
    for axis, freqs in axes_freqs:
        for func in (_SIN, _COS):
            width = min(freqs, left)
            if width:
                bands.append((axis * 2 + func, width, freqs))
            left -= width
    return tuple(bands)


def _vjepa(embed_dim):
    _checks.multiple_of("embed_dim", embed_dim, 8, "convention='vjepa': D/2 channels for t, D/4 for h and w, "
                        "each an even sin/cos pair")
    return Layout(_pairs([(_T, embed_dim // 4), (_H, embed_dim // 8), (_W, embed_dim // 8)], embed_dim))


def _vjepa_uniform(embed_dim):
    _checks.positive_int("embed_dim", embed_dim)
    freqs = -(-embed_dim // 6)
    return Layout(_pairs([(_T, freqs), (_H, freqs), (_W, freqs)], embed_dim))


def _diffusers(embed_dim):
    _checks.multiple_of("embed_dim", embed_dim, 16, "convention='cogvideox': D/4 channels for t and a 2-D "
                        "table of 3D/4 for w and h, each an even sin/cos pair")
    spatial = 3 * embed_dim // 16
    return Layout(_pairs([(_T, embed_dim // 8), (_W, spatial), (_H, spatial)], embed_dim), True)


def _videomae(embed_dim):
    _checks.positive_int("embed_dim", embed_dim)
    return Layout(())


CONVENTIONS_3D = {"vjepa": _vjepa, "vjepa_uniform": _vjepa_uniform, "cogvideox": _diffusers,
                  "diffusers": _diffusers, "videomae": _videomae}


def _layout(convention, embed_dim) -> Layout:
    try:
        make = CONVENTIONS_3D[convention]
    except (KeyError, TypeError):
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS_3D)}, got {convention!r}") from None
    return make(embed_dim)


def sincos_3d(embed_dim: int, grid_size, *, convention: str = "vjepa", temperature: float = 10000.0,
              num_prefix_tokens: int = 0, temporal_interpolation_scale: float = 1.0,
              spatial_interpolation_scale: float = 1.0, dtype: torch.dtype = torch.float32, device=None,
              out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """3-D sin-cos position table ``[num_prefix_tokens + T*H*W, embed_dim]``, made in one kernel on
    ``device``.

    Args:
        embed_dim: D; the convention says what it must divide by (module docstring).
        grid_size: ``n`` for an n x n x n grid or ``(T, H, W)``; tokens in row-major (t, h, w) order.
        convention: ``"vjepa"``, ``"vjepa_uniform"``, ``"cogvideox"`` (= ``"diffusers"``) or ``"videomae"``.
        temperature: the base of omega_k = temperature^(-k/F).
        num_prefix_tokens: zero rows in front (V-JEPA's class token, CogVideoX's text tokens).
        temporal_interpolation_scale, spatial_interpolation_scale: divisors of the t and the h, w positions,
            as diffusers' arguments of those names (``"cogvideox"`` only).
        dtype: float64, float32, float16 or bfloat16; values are float64 rounded once to it.
        device: where the table is made (default: torch's default device).
        out: optional contiguous ``[num_prefix_tokens + T*H*W, embed_dim]`` float tensor to write into;
            ``dtype`` and ``device`` are then taken from it.
    """
    layout = _layout(convention, embed_dim)
    depth, height, width = _checks.grid_triple("grid_size", grid_size)
    _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
    temperature = _checks.positive_float("temperature", temperature)
    scales = []
    for name, value in (("temporal_interpolation_scale", temporal_interpolation_scale),
                        ("spatial_interpolation_scale", spatial_interpolation_scale)):
        value = _checks.positive_float(name, value)
        if value != 1.0 and not layout.float32_positions:
            raise ValueError(f"{name} is an argument of convention='cogvideox' (diffusers), got {value} "
                             f"with convention={convention!r}")
        scales.append(value)
    scales = [scales[0], scales[1], scales[1]]
    shape = (num_prefix_tokens + depth * height * width, embed_dim)
    what = lambda: f"grid_size={grid_size!r}, num_prefix_tokens={num_prefix_tokens}, embed_dim={embed_dim}"  # noqa: E731
    dtype, device = _checks.table_result(what, shape, out, dtype, device)
    args = (embed_dim, depth, height, width, num_prefix_tokens, temperature, layout.band_ints, scales,
            layout.float32_positions)
    return run_table_op("sincos_3d", _sincos_3d_torch, args, (dtype, device), out, device)


# ---------------------------------------------------------------- pure-PyTorch fallback (float64 math)

def _positions(length: int, scale: float, float32_positions: bool, device) -> torch.Tensor:
    """Coordinates 0 .. length-1 divided by `scale`, as csrc/sincos3d.h: with float32_positions rounded to
    float32 (the float64 quotient of two floats rounds as a float32 division would)."""
    q = torch.arange(length, dtype=torch.float64, device=device)
    if float32_positions:
        s = float(np.float32(scale))
        return (q.float().double() / s).float().double()
    return q if scale == 1.0 else q / scale


def _band_omega(width: int, freqs: int, temperature: float, device) -> torch.Tensor:
    """omega_k = 1 / T^(k / F), k in [0, width), through the C library's pow as the kernels compute it (a
    vectorised pow can be an ulp off)."""
    values = [1.0 / math.pow(temperature, k / freqs) for k in range(width)]
    return torch.tensor(values, dtype=torch.float64, device=device)


def _interleaved_divisors(embed_dim: int, temperature: float, device) -> torch.Tensor:
    """T^(2 * (c // 2) / D) per channel c: the interleaved layout divides the flat index by it."""
    values = [math.pow(temperature, (2 * (c // 2)) / embed_dim) for c in range(embed_dim)]
    return torch.tensor(values, dtype=torch.float64, device=device)


def _sincos_3d_torch(embed_dim, depth, height, width, num_prefix_tokens, temperature, bands, scales,
                     float32_positions, dtype, device):
    """The op's contract (same arguments as torch.ops.posext.sincos_3d) in float64 PyTorch."""
    sizes = (depth, height, width)
    if not bands:
        n = torch.arange(depth * height * width, dtype=torch.float64, device=device)
        angle = n[:, None] / _interleaved_divisors(embed_dim, temperature, device)
        odd = torch.arange(embed_dim, device=device) % 2 == 1
        grid = torch.where(odd, torch.cos(angle), torch.sin(angle))
    else:
        parts = []
        for code, band_width, freqs in zip(bands[0::3], bands[1::3], bands[2::3]):
            axis, func = divmod(code, 2)
            pos = _positions(sizes[axis], scales[axis], float32_positions, device)
            angle = pos[:, None] * _band_omega(band_width, freqs, temperature, device)
            value = torch.cos(angle) if func == _COS else torch.sin(angle)
            view = [1, 1, 1, band_width]
            view[axis] = sizes[axis]
            parts.append(value.reshape(view).expand(depth, height, width, band_width))
        grid = torch.cat(parts, dim=-1).reshape(depth * height * width, embed_dim)
    grid = grid.to(dtype)
    return torch.cat([grid.new_zeros(num_prefix_tokens, embed_dim), grid])


__all__: Sequence[str] = ["sincos_3d", "CONVENTIONS_3D"]
