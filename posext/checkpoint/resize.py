"""Resize every position embedding of a flat state dict to a new patch grid."""
from collections import OrderedDict
from dataclasses import replace
from typing import List, Mapping, Tuple

import torch

from .. import _checks
from ..resample import MODES, resample
from ..sincos import sincos_2d
from .detect import Finding, find_position_embeddings

SINCOS_POLICIES = ("auto", "interpolate")


def _new_mapping(state_dict: Mapping):
    """An empty mapping of the input's kind (dict / OrderedDict, keeping torch's ``_metadata``)."""
    out = OrderedDict() if isinstance(state_dict, OrderedDict) else {}
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # load_state_dict reads per-module versions from it
    return out


def _regenerate_sincos(t: torch.Tensor, f: Finding, new_grid) -> torch.Tensor:
    p = f.num_prefix_tokens
    table = sincos_2d(t.shape[-1], new_grid, convention="mae", num_prefix_tokens=p, dtype=t.dtype,
                      device=t.device)
    if p:
        table[:p] = t.detach().reshape(-1, t.shape[-1])[:p]  # the (zero) prefix rows, kept bit for bit
    return table.unsqueeze(0) if f.layout == "tokens" else table


def _regenerate_position_ids(t: torch.Tensor, f: Finding, new_grid) -> torch.Tensor:
    rows = f.num_prefix_tokens + new_grid[0] * new_grid[1]
    ids = torch.arange(rows, dtype=t.dtype, device=t.device)
    return ids.reshape(t.shape[:-1] + (rows,)) if t.dim() > 1 else ids


def resize_state_dict(state_dict: Mapping, new_grid, *, mode: str = "bicubic", antialias: bool = True,
                      old_size=None, num_prefix_tokens=None,
                      sincos: str = "auto") -> Tuple[dict, List[Finding]]:
    """Resize the position embeddings of ``state_dict`` to the patch grid ``new_grid`` = ``(H, W)``
    (or ``n``).

    Returns ``(new_dict, applied)``: a new mapping in the same key order where every key not acted on is the
    very input tensor object, learned grids resampled with ``posext.resample`` (their P and grid from
    :func:`find_position_embeddings`; ``mode``, ``antialias``, ``align_corners=False``; dtype and layout
    kept), MAE sin-cos tables rebuilt exactly with ``sincos_2d`` (``sincos="auto"``; ``"interpolate"``
    resamples them like learned tables), stale HF ``position_ids`` rebuilt as arange, grid-dependent RoPE
    buffers removed; and the findings that were applied. Tables already at ``new_grid`` are left alone.
    ``antialias`` is ignored for ``mode="nearest"``.
    """
    new_grid = _checks.grid_pair("new_grid", new_grid)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if sincos not in SINCOS_POLICIES:
        raise ValueError(f"sincos must be one of {SINCOS_POLICIES}, got {sincos!r}")
    findings = {f.key: f for f in find_position_embeddings(state_dict, old_size=old_size,
                                                           num_prefix_tokens=num_prefix_tokens)}
    out = _new_mapping(state_dict)
    applied: List[Finding] = []
    with torch.no_grad():
        for key, value in state_dict.items():
            f = findings.get(key) if isinstance(key, str) else None
            if f is None or f.action == "skip" or f.old_grid == new_grid:
                out[key] = value
                continue
            if f.action == "drop":
                applied.append(f)
                continue
            if f.action == "regenerate_sincos" and sincos == "interpolate":
                f = replace(f, action="resample",
                            reason=f"{f.reason} (sincos='interpolate': resampled instead)")
            if f.action == "regenerate_sincos":
                out[key] = _regenerate_sincos(value, f, new_grid)
            elif f.action == "regenerate_position_ids":
                out[key] = _regenerate_position_ids(value, f, new_grid)
            else:
                nhwc = f.layout == "nhwc"
                out[key] = resample(value, new_grid, old_size=f.old_grid,
                                    num_prefix_tokens=None if nhwc else f.num_prefix_tokens, mode=mode,
                                    antialias=bool(antialias) and mode != "nearest", align_corners=False)
            applied.append(f)
    return out, applied


__all__ = ["resize_state_dict", "SINCOS_POLICIES"]
