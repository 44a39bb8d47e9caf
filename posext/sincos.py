"""Fixed sin-cos position tables (MAE / open_clip, big_vision, MoCo v3, timm), made on the target device.

Conventions. Tokens are row-major: token t of an (H, W) grid sits at y = t // W (row), x = t % W (column).
A 2D table of width D is four bands of F = D/4 channels; band = func(pos * omega_k), k in [0, F),
omega_k = T^(-k / F) (big_vision: T^(-k / (F - 1)), so its lowest frequency is exactly 1/T).

=================== ======================================== =====================================
convention          channel order (4 bands of D/4)            notes
=================== ======================================== =====================================
"mae", "open_clip"  [sin x, cos x, sin y, cos y]              MAE's get_2d_sincos_pos_embed (its
                                                              `emb_h` holds x: meshgrid is 'xy')
"big_vision"        [sin x, cos x, sin y, cos y]              denominator F - 1; needs D >= 8
"mocov3"            [sin y, cos y, sin x, cos x]              MoCo v3 on square grids; its code
                                                              mis-orders tokens when H != W, we don't
"timm"              [sin y, sin x, cos y, cos x]              timm build_sincos2d_pos_embed default
"timm_interleaved"  [sin y, cos y, sin x, cos x]              interleave_sin_cos=True (= "mocov3")
=================== ======================================== =====================================

All values are computed in float64 and rounded once to `dtype`.
"""
import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

from . import _backend, _checks

_X, _Y = 0, 1
_SIN, _COS = 0, 1


class Convention(NamedTuple):
    bands: Tuple[Tuple[int, int], ...]  # per band: (axis, func)
    freq_denominator_offset: int = 0

    @property
    def band_codes(self):
        return [axis * 2 + func for axis, func in self.bands]


_MAE = Convention(((_X, _SIN), (_X, _COS), (_Y, _SIN), (_Y, _COS)))
_YX_INTERLEAVED = Convention(((_Y, _SIN), (_Y, _COS), (_X, _SIN), (_X, _COS)))
CONVENTIONS = {
    "mae": _MAE,
    "open_clip": _MAE,
    "big_vision": Convention(_MAE.bands, freq_denominator_offset=1),
    "mocov3": _YX_INTERLEAVED,
    "timm": Convention(((_Y, _SIN), (_X, _SIN), (_Y, _COS), (_X, _COS))),
    "timm_interleaved": _YX_INTERLEAVED,
}


def _convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {name!r}") from None


def sincos_2d(embed_dim: int, grid_size: Union[int, Tuple[int, int]], *, convention: str = "mae",
              temperature: float = 10000.0, num_prefix_tokens: int = 0, dtype: torch.dtype = torch.float32,
              device=None, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """2D sin-cos position table ``[num_prefix_tokens + H*W, embed_dim]``, built in one kernel on ``device``.

    Args:
        embed_dim: D, divisible by 4 (big_vision: and >= 8).
        grid_size: ``n`` for an n x n grid or ``(H, W)`` (rows, columns); tokens in row-major (y, x) order.
        convention: channel layout, see the module docstring.
        temperature: T in omega_k = T^(-k/F).
        num_prefix_tokens: zero rows in front (class / distillation / register tokens).
        dtype: float64, float32, float16 or bfloat16; values are float64 rounded once to it.
        device: where the table is made (default: torch's default device).
        out: optional contiguous ``[num_prefix_tokens + H*W, embed_dim]`` float tensor to write into (e.g. a
            model's ``pos_embed.data[0]``); ``dtype`` and ``device`` are then taken from it.
    """
    conv = _convention(convention)
    _checks.multiple_of("embed_dim", embed_dim, 4, "four sin/cos bands for x and y")
    if conv.freq_denominator_offset and embed_dim < 8:
        raise ValueError(f"embed_dim must be >= 8 for convention={convention!r} (frequency denominator "
                         f"embed_dim/4 - 1 must be > 0), got {embed_dim}")
    _checks.result_size(lambda: f"embed_dim={embed_dim}", (embed_dim,), torch.float64, device)  # frequencies
    height, width = _checks.grid_pair("grid_size", grid_size)
    _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
    temperature = _checks.positive_float("temperature", temperature)
    shape = (num_prefix_tokens + height * width, embed_dim)
    what = lambda: f"grid_size={grid_size!r}, num_prefix_tokens={num_prefix_tokens}, embed_dim={embed_dim}"  # noqa: E731
    dtype, device = _checks.table_result(what, shape, out, dtype, device)
    args = (embed_dim, height, width, num_prefix_tokens, temperature, conv.band_codes,
            conv.freq_denominator_offset)
    return run_table_op("sincos_2d", _sincos_2d_torch, args, (dtype, device), out, device)


def sincos_1d(embed_dim: int, positions, *, temperature: float = 10000.0, dtype: Optional[torch.dtype] = None,
              device=None, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """1D sin-cos table ``[M, embed_dim]`` = ``[sin(p * omega) | cos(p * omega)]``, omega_k = T^(-k/(D/2)).

    This is MAE's ``get_1d_sincos_pos_embed_from_grid`` (sin half, then cos half). ``positions`` is a 1-D
    tensor or sequence of M positions, fractional allowed. ``dtype`` defaults to the positions' dtype when
    it is floating, else float32; the table is made on the positions' device (or ``device`` for a sequence).
    ``out``: optional contiguous ``[M, embed_dim]`` float tensor to write into (its dtype and device win).
    """
    _checks.multiple_of("embed_dim", embed_dim, 2, "a sin half and a cos half")
    _checks.result_size(lambda: f"embed_dim={embed_dim}", (embed_dim,), torch.float64, device)  # frequencies
    temperature = _checks.positive_float("temperature", temperature)
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"out must be a tensor, got {type(out).__name__}")
        device = out.device
    if not isinstance(positions, torch.Tensor):
        if isinstance(positions, (str, bytes)):
            raise TypeError(f"positions must be a 1-D tensor or a sequence of numbers, got {positions!r}")
        try:
            positions = torch.as_tensor(positions, dtype=torch.float64, device=device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"positions must be a 1-D tensor or a sequence of numbers, got {positions!r} "
                            f"({exc})") from None
    elif device is not None and positions.device != torch.device(device):
        raise ValueError(f"positions must be on {'out' if out is not None else 'the given'} device "
                         f"{torch.device(device)}, got {positions.device}")
    if positions.dim() != 1:
        raise ValueError(f"positions must be 1-D [M], got shape {tuple(positions.shape)}")
    if positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"positions must be a real number tensor, got {positions.dtype}")
    what = lambda: f"{positions.shape[0]} positions and embed_dim={embed_dim}"  # noqa: E731
    if out is not None:
        _checks.out_tensor("out", out, (positions.shape[0], embed_dim), lambda: f" for {what()}")
        dtype = out.dtype
    elif dtype is None:
        dtype = positions.dtype if positions.is_floating_point() else torch.float32
    _checks.float_dtype("dtype", dtype)
    _checks.result_size(what, (positions.shape[0], embed_dim), dtype, positions.device)
    return run_table_op("sincos_1d", _sincos_1d_torch, (positions, embed_dim, temperature), (dtype,), out,
                        positions.device)


def run_table_op(name, fallback, args, result_args, out, device):
    """A table op on ``device``: the extension's ``posext::<name>(*args, *result_args)`` (given ``out``:
    ``<name>_out(*args, out=out)``), else ``fallback(*args, *result_args)``, copied into ``out`` if given."""
    if _backend.use_extension(device):
        if out is None:
            return getattr(torch.ops.posext, name)(*args, *result_args)
        getattr(torch.ops.posext, f"{name}_out")(*args, out=out)
        return out
    table = fallback(*args, *result_args)
    return table if out is None else out.copy_(table)


# ---------------------------------------------------------------- pure-PyTorch fallback (float64 math)

def _omega(band_width: int, denominator: int, temperature: float, device) -> torch.Tensor:
    """omega_k = 1 / T^(k / denominator), each through the C library's pow exactly as csrc/sincos.h computes
    it (a vectorised pow can be an ulp off, which moves the angle of a large position)."""
    omega = [1.0 / math.pow(temperature, k / denominator) for k in range(band_width)]
    return torch.tensor(omega, dtype=torch.float64, device=device)


def _sincos_2d_torch(embed_dim, height, width, num_prefix_tokens, temperature, band_codes,
                     freq_denominator_offset, dtype, device):
    """The op's contract (same arguments as torch.ops.posext.sincos_2d) in float64 PyTorch."""
    band_width = embed_dim // 4
    omega = _omega(band_width, band_width - freq_denominator_offset, temperature, device)
    coords = {_X: torch.arange(width, dtype=torch.float64, device=device),
              _Y: torch.arange(height, dtype=torch.float64, device=device)}
    bands = []
    for code in band_codes:
        axis, func = divmod(code, 2)
        angle = coords[axis][:, None] * omega
        value = torch.cos(angle) if func == _COS else torch.sin(angle)
        value = value[None, :, :] if axis == _X else value[:, None, :]
        bands.append(value.expand(height, width, band_width))
    grid = torch.cat(bands, dim=-1).reshape(height * width, embed_dim).to(dtype)
    return torch.cat([grid.new_zeros(num_prefix_tokens, embed_dim), grid])


def _sincos_1d_torch(positions: torch.Tensor, embed_dim: int, temperature: float, dtype):
    omega = _omega(embed_dim // 2, embed_dim // 2, temperature, positions.device)
    angle = positions.to(torch.float64)[:, None] * omega
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1).to(dtype)


__all__: Sequence[str] = ["sincos_2d", "sincos_1d", "CONVENTIONS"]
