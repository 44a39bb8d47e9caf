"""2D rotary position embeddings (RoPE-ViT axial and mixed) applied to q and k in one fused op.

Conventions.
  * Axes: x is the column index, y the row index. Grid tokens are row-major: grid token i of an (H, W) grid
    sits at t_x = i % W, t_y = i // W. ``positions`` tensors are ``[N - P, 2]`` with column 0 = x, 1 = y.
  * A head vector of ``head_dim = D`` channels holds D/2 rotated pairs (a, b). Pair p turns by the angle
    ``t_x * freqs[0, h, p] + t_y * freqs[1, h, p]`` as the complex multiply (a + ib) * e^(i angle).
    ``freqs`` is ``[2, Hf, D/2]`` (row 0: x frequencies, row 1: y frequencies; Hf = 1 shared by all heads,
    or one row per head), as RoPE-ViT stores its mixed frequencies per layer.
  * ``pair_layout="interleaved"``: pair p = channels (2p, 2p+1) (RoPE-ViT, timm ``rot`` /
    ``apply_rot_embed_cat``); ``"half"``: pair p = channels (p, p + D/2) (GPT-NeoX / timm
    ``rope_rotate_half``).
  * Axial RoPE (``rope_axial_freqs``): pairs 0..D/4-1 are driven by x, pairs D/4..D/2-1 by y, both with
    w_k = theta^(-k/(D/4)), theta = 100 as in the released RoPE-ViT models (= timm
    ``RotaryEmbeddingCat(D, in_pixels=False, temperature=100, grid_indexing='xy')``); ``first_axis="y"``
    swaps the halves (DINOv3 and the Qwen-VL vision towers put the row axis first).
  * Mixed RoPE (``rope_mixed_freqs``): learnable per-head (fx, fy) pairs, initialised as RoPE-ViT
    (theta = 10).
  * The first ``num_prefix_tokens`` tokens (class token, registers) pass unrotated.

The op computes each angle on the fly in float32 (float64 for float64 inputs) from positions and frequencies,
never materialising a cos/sin table; float16/bfloat16 q/k are rotated in float32 and rounded once. Its
backward rotates the gradients by the negative angle and, for learnable frequencies, sums dL/dfreqs per
frequency in a fixed order (deterministic, no atomics).
"""
import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from . import _backend, _checks
from .varlen import _check_merge, _grid_sizes  # the grid_sizes vocabulary of resample_varlen

PAIR_LAYOUTS = {"interleaved": 0, "half": 1}
LAYOUTS = {"bhnd": 0, "bnhd": 1}
POSITION_MODES = ("index", "normalized")
NORMALIZE_COORDS = ("separate", "min", "max")
Size = Union[int, Tuple[int, int]]


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _head_dim_4(head_dim) -> int:
    return _checks.multiple_of("head_dim", head_dim, 4, "D/4 frequencies per axis, two channels per pair")


def rope_axial_freqs(head_dim: int, *, theta: float = 100.0, scale: float = 1.0, first_axis: str = "x",
                     dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Axial frequencies ``[2, 1, head_dim/2]``: pair k < D/4 turns by ``t_x * w_k``, pair D/4 + k by
    ``t_y * w_k`` (``first_axis="y"``: the other way round), ``w_k = scale * theta^(-k/(D/4))`` (computed in
    float64, rounded once to ``dtype``).

    * RoPE-ViT axial: the defaults (``theta=100``, x first, interleaved pairs); EVA-02 / timm's
      ``RotaryEmbeddingCat``: ``theta=10000``.
    * DINOv3: angle ``2*pi*c / period_k`` with ``period_k = theta^(k/(D/4))`` and the row axis on the first
      slots: ``rope_axial_freqs(D, theta=100, scale=2 * math.pi, first_axis="y")`` with
      ``rope_positions_2d(grid, mode="normalized")`` and ``pair_layout="half"``.
    * Qwen2-VL / Qwen2.5-VL / Qwen3-VL vision towers: ``rope_axial_freqs(D, theta=10000, first_axis="y")``
      with ``rope_positions(grid_thw, merge_size=2)`` and ``pair_layout="half"``.
    """
    quarter = _head_dim_4(head_dim) // 4
    theta = _checks.positive_float("theta", theta)
    scale = _checks.positive_float("scale", scale)
    if first_axis not in ("x", "y"):
        raise ValueError(f"first_axis must be 'x' or 'y', got {first_axis!r}")
    _checks.float_dtype("dtype", dtype)
    w = scale * theta ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    zero = torch.zeros_like(w)
    first, second = torch.cat([w, zero]), torch.cat([zero, w])
    fx, fy = (first, second) if first_axis == "x" else (second, first)
    return torch.stack([fx, fy]).unsqueeze(1).to(dtype=dtype, device=device)


def rope_mixed_freqs(head_dim: int, num_heads: int, *, theta: float = 10.0,
                     generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32,
                     device=None) -> torch.Tensor:
    """RoPE-ViT mixed-mode initial frequencies ``[2, num_heads, head_dim/2]`` (one layer).

    Per head a random angle a ~ U[0, 2 pi): with magnitudes ``mag_k = theta^(-k/(D/4))``, k in [0, D/4),
    ``fx = [mag cos(a), mag cos(a + pi/2)]`` and ``fy = [mag sin(a), mag sin(a + pi/2)]``, as RoPE-ViT's
    ``init_random_2d_freqs`` (and timm's). Learn them as an ``nn.Parameter`` (``Rope2d(mode="mixed")`` does).
    """
    quarter = _head_dim_4(head_dim) // 4
    num_heads = _checks.positive_int("num_heads", num_heads)
    theta = _checks.positive_float("theta", theta)
    _checks.float_dtype("dtype", dtype)
    mag = theta ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    angles = torch.rand(num_heads, 1, generator=generator, dtype=torch.float64) * 2 * math.pi
    fx = torch.cat([mag * torch.cos(angles), mag * torch.cos(angles + math.pi / 2)], dim=-1)
    fy = torch.cat([mag * torch.sin(angles), mag * torch.sin(angles + math.pi / 2)], dim=-1)
    return torch.stack([fx, fy]).to(dtype=dtype, device=device)


def rope_positions_2d(grid_size: Size, *, mode: str = "index", ref_grid_size: Optional[Size] = None,
                      offset: float = 0.0, normalize_coords: str = "separate",
                      dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Token positions ``[H*W, 2]`` (x, y) of a row-major (H, W) grid.

    mode="index": integers t_x = i % W, t_y = i // W (RoPE-ViT); with ``ref_grid_size=(Hr, Wr)`` rescaled to
    the reference grid, t_x * Wr / W and t_y * Hr / H (EVA-02 / timm ``ref_feat_shape``).
    mode="normalized": centred coordinates in (-1, 1), c = 2 (j + 0.5) / S - 1 with S = W for x and H for y
    (DINOv3 ``normalize_coords='separate'``); ``normalize_coords="min"`` / ``"max"`` divide both axes by
    min(H, W) / max(H, W) instead (DINOv3's other modes: with "min" the longer axis reaches past (-1, 1), with
    "max" the shorter one stays inside it).
    offset: added to the index j before any rescaling, t = (j + offset) * Wr / W, or c = 2 (j + 0.5 + offset)
    / S - 1 (timm's ``grid_offset``; the Perception Encoder models use 1).
    """
    h, w = _checks.grid_pair("grid_size", grid_size)
    _checks.result_size(lambda: f"grid_size={grid_size!r}", (h * w, 2), torch.float64, device)
    if not isinstance(mode, str) or mode not in POSITION_MODES:
        raise ValueError(f"mode must be one of {list(POSITION_MODES)}, got {mode!r}")
    _checks.float_dtype("dtype", dtype)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise TypeError(f"offset must be a number, got {type(offset).__name__} ({offset!r})")
    if not math.isfinite(offset):
        raise ValueError(f"offset must be finite, got {offset}")
    if normalize_coords not in NORMALIZE_COORDS:
        raise ValueError(f"normalize_coords must be one of {list(NORMALIZE_COORDS)}, "
                         f"got {normalize_coords!r}")
    if mode != "normalized" and normalize_coords != "separate":
        raise ValueError(f"normalize_coords={normalize_coords!r} applies to mode='normalized' only")
    ys = torch.arange(h, dtype=torch.float64, device=device) + offset
    xs = torch.arange(w, dtype=torch.float64, device=device) + offset
    if mode == "normalized":
        if ref_grid_size is not None:
            raise ValueError("ref_grid_size applies to mode='index' only "
                             "(normalized positions are scale-free)")
        dh, dw = {"separate": (h, w), "min": (min(h, w),) * 2, "max": (max(h, w),) * 2}[normalize_coords]
        ys, xs = 2 * (ys + 0.5) / dh - 1, 2 * (xs + 0.5) / dw - 1
    elif ref_grid_size is not None:
        rh, rw = _checks.grid_pair("ref_grid_size", ref_grid_size)
        ys, xs = ys / h * rh, xs / w * rw
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1).to(dtype)


def rope_positions(grid_sizes, *, merge_size: int = 1, dtype: torch.dtype = torch.float32,
                   device=None) -> torch.Tensor:
    """Integer positions ``[T, 2]`` (x, y) of every token of a packed batch of images / videos, without a
    Python loop per image, in ``dtype`` (a float type, or int64 / int32).

    ``grid_sizes``: ``[B, 2]`` (h, w) or ``[B, 3]`` (t, h, w), a tensor or nested list. Image after image,
    frames repeating their grid (T = sum t * h * w); within a frame, ``merge_size=m`` orders each m x m block
    together, as Qwen-VL's vision towers (and ``posext.resample_varlen``) order tokens: (h/m, w/m, m, m).
    """
    sizes = _grid_sizes(grid_sizes)
    merge_size = _checks.positive_int("merge_size", merge_size)
    _check_merge(sizes, merge_size)
    if dtype not in (torch.int64, torch.int32):
        _checks.float_dtype("dtype", dtype)
    t, h, w = sizes.unbind(1)
    counts = t * h * w
    total = int(counts.sum()) if sizes.numel() else 0
    _checks.result_size(lambda: f"grid_sizes ({len(sizes)} images, {total} tokens)", (total, 2), dtype,
                        device)
    image = torch.repeat_interleave(torch.arange(len(sizes)), counts)
    first = torch.cumsum(counts, 0) - counts
    cell = (torch.arange(total) - first[image]) % (h * w)[image]
    m, width = merge_size, w[image]
    block, inner = cell // (m * m), cell % (m * m)
    y = block // (width // m) * m + inner // m
    x = block % (width // m) * m + inner % m
    return torch.stack([x, y], dim=1).to(dtype=dtype, device=device)


def apply_rope_2d(q: torch.Tensor, k: torch.Tensor, positions: Union[torch.Tensor, Size],
                  freqs: torch.Tensor, *, num_prefix_tokens: Optional[int] = None, layout: str = "bhnd",
                  pair_layout: str = "interleaved",
                  inplace: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k by 2D RoPE in one fused kernel; returns ``(q_rot, k_rot)``.

    Args:
        q, k: ``[B, heads, N, head_dim]`` (layout="bhnd") or ``[B, N, heads, head_dim]`` ("bnhd"), same shape,
            dtype (float64/32/16, bfloat16) and device; any strides (e.g. slices of a fused qkv projection).
        positions: ``[N - P, 2]`` float tensor of (x, y) per grid token (fractional allowed; ``[B, N - P, 2]``
            for positions per batch entry), or a grid size
            ``(H, W)`` / ``n`` meaning integer positions ``rope_positions_2d((H, W))``. Not differentiated.
        freqs: ``[2, 1 or heads, head_dim/2]``: x and y frequency of every rotated pair (``rope_axial_freqs``,
            ``rope_mixed_freqs``); differentiable (mixed RoPE learns them).
        num_prefix_tokens: P leading tokens passed through unrotated (class token, registers). Default: what
            the shapes imply, N minus the tokens of ``positions``.
        layout: "bhnd" or "bnhd", see q, k.
        pair_layout: "interleaved" (channels 2p, 2p+1) or "half" (channels p, p + head_dim/2).
        inplace: rotate q and k in place (inference: no autograd) and return them; q and k must then not share
            memory or be expanded / self-overlapping views.

    Angles are computed in float32 (float64 for float64 q/k); positions and freqs are cast to that dtype.
    """
    return rotate(q, k, positions, freqs, num_prefix_tokens, layout, pair_layout, inplace, axes=2)


def rotate(q, k, positions, freqs, num_prefix_tokens, layout, pair_layout, inplace, axes):
    """The checked call of the RoPE op over ``axes`` position axes (``apply_rope_2d``: 2, ``apply_rope``: the
    columns of its positions)."""
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError(f"q and k must be tensors, got {type(q).__name__} and {type(k).__name__}")
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if not isinstance(pair_layout, str) or pair_layout not in PAIR_LAYOUTS:
        raise ValueError(f"pair_layout must be one of {list(PAIR_LAYOUTS)}, got {pair_layout!r}")
    inplace = _checks.flag("inplace", inplace)
    names = "[B, heads, N, head_dim]" if layout == "bhnd" else "[B, N, heads, head_dim]"
    if q.dim() != 4:
        raise ValueError(f"q must be 4-D {names} (layout={layout!r}), got shape {tuple(q.shape)}")
    head_axis = 1 if layout == "bhnd" else 2
    k_heads = k.shape[head_axis] if k.dim() == 4 else 0
    if (k.dim() != 4 or [s for i, s in enumerate(k.shape) if i != head_axis]
            != [s for i, s in enumerate(q.shape) if i != head_axis] or k_heads == 0
            or q.shape[head_axis] % k_heads):
        raise ValueError(f"k must have q's shape {tuple(q.shape)}, or fewer heads dividing q's "
                         f"(grouped-query attention), got {tuple(k.shape)}")
    _checks.float_dtype("q.dtype", q.dtype)
    if k.dtype != q.dtype:
        raise TypeError(f"k.dtype must equal q.dtype ({q.dtype}), got {k.dtype}")
    if k.device != q.device:
        raise ValueError(f"q and k must be on one device, got {q.device} and {k.device}")
    heads, n = (q.shape[1], q.shape[2]) if layout == "bhnd" else (q.shape[2], q.shape[1])
    head_dim = q.shape[3]
    if head_dim % 2 or head_dim == 0:
        raise ValueError(f"head_dim (q.shape[3]) must be even and > 0 (two channels per rotated pair), got "
                         f"{head_dim}")
    math_dtype = _opmath(q.dtype)
    pos = _positions(positions, math_dtype, q.device, axes)
    grid = pos.shape[-2]
    if pos.dim() == 3 and pos.shape[0] not in (1, q.shape[0]):
        raise ValueError(f"per-entry positions {tuple(pos.shape)} must have q's batch size {q.shape[0]} "
                         "(or 1)")
    prefix = n - grid if num_prefix_tokens is None else _checks.nonnegative_int("num_prefix_tokens",
                                                                                         num_prefix_tokens)
    if prefix < 0 or prefix + grid != n:
        given = f"positions {tuple(positions.shape)}" if isinstance(positions, torch.Tensor) else \
            f"positions {positions!r}"
        need = "" if num_prefix_tokens is None else (
            f"; num_prefix_tokens={prefix} exceeds N" if prefix > n else
            f"; with num_prefix_tokens={prefix} they must hold [{n - prefix}, {axes}]")
        raise ValueError(f"{given} give {grid} grid tokens but q {tuple(q.shape)} has N = {n} "
                         f"tokens, N = num_prefix_tokens + grid tokens{need}")
    if not isinstance(freqs, torch.Tensor):
        raise TypeError(f"freqs must be a tensor [{axes}, 1 or heads, head_dim/2], got "
                        f"{type(freqs).__name__}")
    if (freqs.dim() != 3 or freqs.shape[0] != axes or freqs.shape[1] not in (1, heads)
            or not 1 <= freqs.shape[2] <= head_dim // 2):
        raise ValueError(f"freqs must be [{axes} (axes), 1 or heads ({heads}), rotated pairs: head_dim/2 "
                         f"({head_dim // 2}) or fewer (partial RoPE)], got {tuple(freqs.shape)}")
    if freqs.shape[1] > 1 and k_heads != heads:
        raise ValueError(f"per-head freqs {tuple(freqs.shape)} need k with q's {heads} heads, got {k_heads}")
    _checks.float_dtype("freqs.dtype", freqs.dtype)
    if freqs.device != q.device:
        raise ValueError(f"freqs must be on q's device {q.device}, got {freqs.device}")
    f = freqs.to(dtype=math_dtype)
    lay, pairs = LAYOUTS[layout], PAIR_LAYOUTS[pair_layout]
    if inplace:
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or freqs.requires_grad):
            raise ValueError("inplace=True is for inference: q, k and freqs must not require grad "
                             "(use torch.no_grad() or inplace=False)")
        if _checks.may_overlap_itself(q) or _checks.may_overlap_itself(k):
            raise ValueError(f"inplace=True needs q and k whose elements each have their own memory, got "
                             f"strides {q.stride()} and {k.stride()} (an expanded or overlapping view: clone "
                             "it first)")
        if _checks.may_overlap(q, k):
            raise ValueError("inplace=True needs q and k in separate memory; they overlap")
        if _backend.use_extension(q.device):
            torch.ops.posext.rope_2d_(q, k, pos, f, prefix, lay, pairs)
        else:
            rq, rk = _rope_torch(q, k, pos, f, prefix, lay, pairs)
            q.copy_(rq)
            k.copy_(rk)
        return q, k
    if _backend.use_extension(q.device):
        return tuple(torch.ops.posext.rope_2d(q, k, pos, f, prefix, lay, pairs))
    return _rope_torch(q, k, pos, f, prefix, lay, pairs)


def _positions(positions, dtype, device, axes):
    """positions as a [M, axes] or per-entry [B, M, axes] tensor of `dtype` on `device`: a given tensor, or
    (2 axes) a grid size's integer grid."""
    if isinstance(positions, torch.Tensor):
        if positions.dim() not in (2, 3) or positions.shape[-1] != axes:
            names = " (x, y)" if axes == 2 else ""
            raise ValueError(f"positions must be [N - num_prefix_tokens, {axes}]{names} or per batch entry "
                             f"[B, N - num_prefix_tokens, {axes}], got {tuple(positions.shape)}")
        if not positions.is_floating_point() and positions.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"positions must be a float or integer tensor, got {positions.dtype}")
        if positions.device != device:
            raise ValueError(f"positions must be on q's device {device}, got {positions.device}")
        return positions.detach().to(dtype)
    if axes != 2:
        raise TypeError(f"positions must be a [N - num_prefix_tokens, {axes}] tensor, got "
                        f"{type(positions).__name__}")
    return rope_positions_2d(_checks.grid_pair("positions (grid size)", positions), dtype=dtype,
                             device=device)


def _rope_torch(q, k, pos, freqs, prefix, layout, pairs):
    """The op's contract in plain PyTorch (differentiable in q, k and freqs)."""
    def term(axis):  # [Hf, N-P, R/2], or [B, Hf, N-P, R/2] for per-entry positions
        t = pos[..., axis, None]
        return (t[:, None] if pos.dim() == 3 else t) * freqs[axis][:, None, :]

    angle = term(0)  # then the other axes in order
    for axis in range(1, pos.shape[-1]):
        angle = angle + term(axis)
    cos, sin = angle.cos(), angle.sin()

    half = freqs.shape[-1]  # rotated pairs: the first 2 * half channels turn, the rest pass

    def rotate(x):
        xv = x.transpose(1, 2) if layout == LAYOUTS["bnhd"] else x  # [B, H, N, D]
        g = xv[:, :, prefix:, :2 * half].to(cos.dtype)
        interleaved = pairs == PAIR_LAYOUTS["interleaved"]
        a, b = (g[..., 0::2], g[..., 1::2]) if interleaved else (g[..., :half], g[..., half:])
        a2, b2 = a * cos - b * sin, a * sin + b * cos
        rot = torch.stack([a2, b2], -1).flatten(-2) if interleaved else torch.cat([a2, b2], -1)
        rot = torch.cat([rot.to(x.dtype), xv[:, :, prefix:, 2 * half:]], dim=-1)
        out = torch.cat([xv[:, :, :prefix], rot], dim=2)
        return (out.transpose(1, 2) if layout == LAYOUTS["bnhd"] else out).contiguous()

    return rotate(q), rotate(k)


class Rope2d(nn.Module):
    """2D RoPE for one attention layer: owns the frequencies (buffer for axial, parameter for mixed) and
    builds positions per grid size. ``rope(q, k, (H, W))`` -> ``(q_rot, k_rot)``; see ``apply_rope_2d``.

    Args:
        head_dim: channels per head (multiple of 4).
        num_heads: heads (mixed mode: one learnable frequency set per head).
        mode: "axial" (RoPE-ViT axial, fixed) or "mixed" (RoPE-ViT mixed, learnable).
        theta: frequency base; default 100 (axial) / 10 (mixed), as the released RoPE-ViT models.
        pair_layout, layout, num_prefix_tokens: as ``apply_rope_2d``.
        positions: "index" (integer grid, optionally rescaled to ``ref_grid_size``) or "normalized" (DINOv3).
        first_axis: axial mode: the axis on the first D/4 pairs, as ``rope_axial_freqs``.
        generator: RNG for the mixed-mode initial angles.
    """

    def __init__(self, head_dim: int, num_heads: int = 1, *, mode: str = "axial",
                 theta: Optional[float] = None, pair_layout: str = "interleaved", layout: str = "bhnd",
                 num_prefix_tokens: Optional[int] = None, positions: str = "index",
                 ref_grid_size: Optional[Size] = None, first_axis: str = "x",
                 generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32,
                 device=None):
        super().__init__()
        if mode not in ("axial", "mixed"):
            raise ValueError(f"mode must be 'axial' or 'mixed', got {mode!r}")
        if pair_layout not in PAIR_LAYOUTS:
            raise ValueError(f"pair_layout must be one of {list(PAIR_LAYOUTS)}, got {pair_layout!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
        if positions not in POSITION_MODES:
            raise ValueError(f"positions must be one of {list(POSITION_MODES)}, got {positions!r}")
        self.head_dim, self.num_heads = head_dim, _checks.positive_int("num_heads", num_heads)
        self.mode = mode
        self.pair_layout, self.layout, self.position_mode = pair_layout, layout, positions
        self.num_prefix_tokens = (None if num_prefix_tokens is None
                                  else _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens))
        self.ref_grid_size = (None if ref_grid_size is None
                              else _checks.grid_pair("ref_grid_size", ref_grid_size))
        if mode == "axial":
            self.theta = 100.0 if theta is None else theta
            self.register_buffer("freqs", rope_axial_freqs(head_dim, theta=self.theta, first_axis=first_axis,
                                                           dtype=dtype, device=device), persistent=False)
        else:
            self.theta = 10.0 if theta is None else theta
            self.freqs = nn.Parameter(rope_mixed_freqs(head_dim, num_heads, theta=self.theta,
                                                       generator=generator, dtype=dtype, device=device))

    def positions(self, grid_size: Size, device=None) -> torch.Tensor:
        """[H*W, 2] (x, y) positions of this module's mode for an (H, W) grid."""
        return rope_positions_2d(grid_size, mode=self.position_mode, ref_grid_size=self.ref_grid_size,
                                 dtype=torch.float64, device=device)

    def forward(self, q: torch.Tensor, k: torch.Tensor, grid_size: Optional[Size] = None, *,
                positions: Optional[torch.Tensor] = None, inplace: bool = False):
        if (grid_size is None) == (positions is None):
            raise ValueError("pass exactly one of grid_size=(H, W) and positions=[N - P, 2]")
        if positions is None:
            positions = self.positions(grid_size, device=q.device)
        return apply_rope_2d(q, k, positions, self.freqs, num_prefix_tokens=self.num_prefix_tokens,
                             layout=self.layout, pair_layout=self.pair_layout, inplace=inplace)

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, num_heads={self.num_heads}, mode={self.mode!r}, "
                f"theta={self.theta}, pair_layout={self.pair_layout!r}, layout={self.layout!r}, "
                f"num_prefix_tokens={self.num_prefix_tokens}, "
                f"positions={self.position_mode!r}")


__all__ = ["apply_rope_2d", "Rope2d", "rope_axial_freqs", "rope_mixed_freqs", "rope_positions",
           "rope_positions_2d", "PAIR_LAYOUTS", "LAYOUTS"]
