"""RoPE over 1, 2 or 3 position axes in one fused op: M-RoPE's (t, h, w) positions of the Qwen-VL language
models, 1-D positions, and the 2-D case of ``apply_rope_2d``.

Conventions (as ``posext.rope``): pair p of a token turns by ``angle = sum_a t_a * freqs[a, h, p]`` (axes in
order), ``freqs`` ``[A, 1 or heads, head_dim/2]``; pair layouts interleaved (2p, 2p+1) or half (p, p + D/2).
M-RoPE gives each pair one axis: ``sections=(s_0, ..., s_{A-1})`` pairs per axis (summing to head_dim/2) and
per-pair inverse frequencies ``inv_freq`` ``[D/2]`` (or ``[1 or heads, D/2]``) build those frequencies, the
other axes' rows zero (adding t * 0 leaves the angle exact):

* ``section_layout="contiguous"`` (Qwen2-VL, Qwen2.5-VL): pairs [0, s_0) follow axis 0, the next s_1
  axis 1, ...
* ``section_layout="interleaved"`` (Qwen3-VL, three axes t, h, w): pair p follows h when p % 3 == 1 and
  p < 3 s_1, w when p % 3 == 2 and p < 3 s_2, else t.
"""
from typing import Optional, Sequence, Tuple

import torch

from . import _checks
from .rope import rotate

SECTION_LAYOUTS = ("contiguous", "interleaved")


def _pair_axes(sections: Sequence[int], pairs: int, section_layout: str) -> torch.Tensor:
    """The axis of every rotated pair, int64 [pairs]."""
    if section_layout not in SECTION_LAYOUTS:
        raise ValueError(f"section_layout must be one of {list(SECTION_LAYOUTS)}, got {section_layout!r}")
    try:
        sections = [_checks.nonnegative_int(f"sections[{i}]", s) for i, s in enumerate(sections)]
    except TypeError:
        raise TypeError(f"sections must be a sequence of ints (pairs per axis), got {sections!r}") from None
    if not 1 <= len(sections) <= 3 or sum(sections) != pairs:
        raise ValueError(f"sections must give 1 to 3 axes whose pair counts sum to head_dim/2 = {pairs}, got "
                         f"{tuple(sections)}")
    if section_layout == "contiguous":
        return torch.tensor([a for a, count in enumerate(sections) for _ in range(count)], dtype=torch.long)
    if len(sections) != 3:
        raise ValueError(f"section_layout='interleaved' takes three axes (t, h, w), got sections "
                         f"{tuple(sections)}")
    p = torch.arange(pairs)
    axes = torch.zeros(pairs, dtype=torch.long)
    axes[(p % 3 == 1) & (p < 3 * sections[1])] = 1
    axes[(p % 3 == 2) & (p < 3 * sections[2])] = 2
    if [int((axes == a).sum()) for a in range(3)] != sections:
        raise ValueError(f"interleaved sections {tuple(sections)} do not fit head_dim/2 = {pairs} pairs "
                         "(3 * s_h and 3 * s_w must reach the pairs they claim)")
    return axes


def rope_section_freqs(inv_freq: torch.Tensor, sections: Sequence[int], *,
                       section_layout: str = "contiguous") -> torch.Tensor:
    """M-RoPE frequencies ``[A, Hf, D/2]`` from per-pair inverse frequencies ``inv_freq`` ``[D/2]`` or
    ``[Hf, D/2]``: row a holds ``inv_freq`` on the pairs of axis a and zeros elsewhere (differentiable in
    ``inv_freq``)."""
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() not in (1, 2):
        raise ValueError(f"inv_freq must be a [head_dim/2] or [heads, head_dim/2] tensor, got "
                         f"{getattr(inv_freq, 'shape', type(inv_freq).__name__)}")
    _checks.float_dtype("inv_freq.dtype", inv_freq.dtype)
    per_head = inv_freq if inv_freq.dim() == 2 else inv_freq[None]
    axis = _pair_axes(sections, per_head.shape[-1], section_layout).to(inv_freq.device)
    mask = (axis[None, :] == torch.arange(len(sections), device=inv_freq.device)[:, None]).to(inv_freq.dtype)
    return mask[:, None, :] * per_head[None]


def apply_rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, freqs: torch.Tensor, *,
               sections: Optional[Sequence[int]] = None, section_layout: str = "contiguous",
               pair_layout: str = "interleaved", num_prefix_tokens: Optional[int] = None,
               layout: str = "bhnd", cu_seqlens: Optional[torch.Tensor] = None,
               inplace: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k by RoPE over the A = 1, 2 or 3 columns of ``positions`` in one fused kernel.

    Args:
        q, k: as ``apply_rope_2d``: ``[B, heads, N, head_dim]`` ("bhnd") or ``[B, N, heads, head_dim]``
            ("bnhd"), one shape, dtype and device, any strides; k may have fewer heads (grouped-query).
            With ``cu_seqlens``: packed ``[T, heads, head_dim]`` (flash-attn's varlen layout; ``layout`` is
            not used).
        positions: ``[N - P, A]`` per grid token (integer or fractional), one column per axis (M-RoPE:
            t, h, w), or ``[B, N - P, A]`` per batch entry. With ``cu_seqlens``: ``[T - S * P, A]``, the grid
            tokens of the S sequences in order. Not differentiated.
        freqs: ``[A, 1 or heads, R/2]``, one frequency per axis and rotated pair (R <= head_dim: partial
            RoPE passes the other channels unchanged); with ``sections``, the per-pair inverse frequencies
            ``[R/2]`` (or ``[1 or heads, R/2]``) instead.
        sections, section_layout: M-RoPE: pairs per axis and their order (see the module docstring).
        num_prefix_tokens: P leading tokens of every sequence passed unrotated; default N minus the grid
            tokens of ``positions`` (with ``cu_seqlens``: 0).
        cu_seqlens: int ``[S + 1]`` offsets of S packed sequences in T (0, then cumulative lengths), as
            flash-attn's varlen attention and the Qwen-VL vision towers use; the whole ragged batch is one
            kernel launch.
        pair_layout, layout, inplace: as ``apply_rope_2d``.
    """
    if (not isinstance(positions, torch.Tensor) or positions.dim() not in (2, 3)
            or not 1 <= positions.shape[-1] <= 3):
        raise ValueError(f"positions must be a [N - num_prefix_tokens, A] (or per batch entry [B, N - "
                         f"num_prefix_tokens, A]) tensor with A = 1, 2 or 3 axes, "
                         f"got {getattr(positions, 'shape', type(positions).__name__)}")
    if sections is not None:
        freqs = rope_section_freqs(freqs, sections, section_layout=section_layout)
    axes = positions.shape[-1]
    if cu_seqlens is None:
        return rotate(q, k, positions, freqs, num_prefix_tokens, layout, pair_layout, inplace, axes=axes)
    q4, k4 = _packed("q", q), _packed("k", k)
    prefix = (0 if num_prefix_tokens is None
              else _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens))
    token_positions = _packed_positions(positions, cu_seqlens, q4.shape[1], prefix)
    rq, rk = rotate(q4, k4, token_positions, freqs, 0, "bnhd", pair_layout, inplace, axes=axes)
    return (q, k) if inplace else (rq.view(q.shape), rk.view(k.shape))


def rope_vjepa2_freqs(head_dim: int, *, theta: float = 10000.0, exact_compat: bool = True,
                      dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """V-JEPA 2's 3-D RoPE over (t, h, w) as frequencies for ``apply_rope`` (interleaved pairs).

    V-JEPA 2 splits ``head_dim = D`` into three blocks of ``d = 2 * ((D // 3) // 2)`` channels, t (frame)
    first, then h (row), then w (column); the last ``D - 3d`` channels pass unrotated, which ``apply_rope``
    does for freqs of ``R/2 = 3d/2`` pairs (partial RoPE). Within a block of ``m = d/2`` pairs the pair
    ``(2p, 2p+1)`` has ``w_p = theta^(-p/m)``. Positions are ``[N, 3]`` (t, h, w) per token, frame-major then
    row-major: ``t = i // (H W)``, ``h = (i // W) % H``, ``w = i % W`` (the spatial part is
    ``rope_positions([(T, H, W)])`` with its columns swapped: that gives (x, y) = (w, h)). The original
    code also rescales h and w by ``grid_size / H`` and ``grid_size / W`` (as ``ref_grid_size``); HF's port
    uses the grid of its config as is.

    ``exact_compat=False``: ``[3, 1, 3m]`` -- a true rotation of each pair by ``t_a * w_p``, the corrected
    form of the model (facebookresearch/vjepa2 pull request 15); use it for models trained that way.

    ``exact_compat=True`` (the released checkpoints, HF ``VJEPA2RopeAttention``): the model spreads each
    block's m frequencies over its 2m channels as ``[w_0 .. w_{m-1}, w_0 .. w_{m-1}]`` but pairs adjacent
    channels, so channel c of a block turns by ``w_{c mod m}``: the two channels of one pair see *different*
    frequencies (and pairs p and p + m/2 repeat each other). That map is not a rotation, so no single
    frequency tensor reproduces it; this returns ``[2, 3, 1, 3m]``: ``[0]`` the frequencies of every pair's
    even channel, ``[1]`` of its odd channel. Rotate with each and keep the matching channels::

        even, odd = rope_vjepa2_freqs(D)
        q_even, k_even = apply_rope(q, k, positions, even)
        q_odd, k_odd = apply_rope(q, k, positions, odd)
        q_even[..., 1::2], k_even[..., 1::2] = q_odd[..., 1::2], k_odd[..., 1::2]  # the model's q and k

    Frequencies are computed in float64 and rounded once to ``dtype``.
    """
    head_dim = _checks.positive_int("head_dim", head_dim)
    block = 2 * ((head_dim // 3) // 2)
    if block == 0:
        raise ValueError(f"head_dim must be >= 6 (three axis blocks of 2 * ((head_dim // 3) // 2) >= 2 "
                         f"channels), got {head_dim}")
    theta = _checks.positive_float("theta", theta)
    exact_compat = _checks.flag("exact_compat", exact_compat)
    _checks.float_dtype("dtype", dtype)
    m = block // 2
    w = theta ** (-torch.arange(m, dtype=torch.float64) / m)
    local = torch.arange(m)  # pair index within its axis block
    per_pair = [w[(2 * local) % m], w[(2 * local + 1) % m]] if exact_compat else [w]
    out = torch.zeros(len(per_pair), 3, 1, 3 * m, dtype=torch.float64)
    for i, f in enumerate(per_pair):
        for axis in range(3):
            out[i, axis, 0, axis * m:(axis + 1) * m] = f
    out = out if exact_compat else out[0]
    return out.to(dtype=dtype, device=device)


def _describe(x):
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def _packed(name, x):
    """A packed [T, heads, head_dim] tensor as [1, T, heads, head_dim]."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"with cu_seqlens, {name} must be packed [T, heads, head_dim], got "
                         f"{_describe(x)}")
    return x.unsqueeze(0)


def _packed_positions(positions, cu_seqlens, total, prefix):
    """Positions [T, A] of every packed token: the grid tokens' rows of `positions`, zeros (angle 0: the
    identity, exactly) on the first `prefix` tokens of each sequence."""
    if (not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2
            or cu_seqlens.dtype not in (torch.int32, torch.int64)):
        raise ValueError(f"cu_seqlens must be an int32/int64 [S + 1] tensor of sequence offsets, got "
                         f"{_describe(cu_seqlens)}")
    if positions.dim() != 2:
        raise ValueError(f"with cu_seqlens, positions must be [T - S * num_prefix_tokens, A] (one row per "
                         f"grid token of the packed batch), got {tuple(positions.shape)}")
    sequences = cu_seqlens.numel() - 1
    grid = total - sequences * prefix
    if positions.shape[0] != grid:
        raise ValueError(f"positions {tuple(positions.shape)} must hold the T - S * num_prefix_tokens = "
                         f"{total} - {sequences} * {prefix} = {grid} grid tokens of the packed batch")
    offsets = cu_seqlens.to(device=positions.device, dtype=torch.long)
    if not torch.compiler.is_compiling():  # data-dependent: checked eagerly
        lengths = offsets.diff()
        if int(offsets[0]) != 0 or int(offsets[-1]) != total or bool((lengths < prefix).any()):
            raise ValueError(f"cu_seqlens must rise from 0 to T = {total} in steps of at least "
                             f"num_prefix_tokens = {prefix}, got {cu_seqlens.tolist()}")
    if prefix == 0:
        return positions
    token = torch.arange(total, device=positions.device)
    sequence = torch.searchsorted(offsets[1:], token, right=True)
    is_grid = (token - offsets[sequence] >= prefix)[:, None].expand(total, positions.shape[1])
    return positions.new_zeros(total, positions.shape[1]).masked_scatter(is_grid, positions)


__all__ = ["apply_rope", "rope_section_freqs", "rope_vjepa2_freqs", "SECTION_LAYOUTS"]
