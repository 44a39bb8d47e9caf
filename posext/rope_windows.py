"""Window order of packed vision tokens (Qwen2.5-VL's windowed attention), computed without a Python loop per
image.

Conventions (as ``posext.rope_positions``): images / videos given by ``grid_sizes`` ``[B, 3]`` (t, h, w)
patches, packed image after image, frames repeating their grid, each frame in Qwen-VL's merge-block order
(m x m blocks of ``merge_size=m`` row-major, patches row-major within a block). Windowed attention regroups
each frame's blocks into windows of ``window_size / m`` x ``window_size / m`` blocks (window grid from the
top-left corner; the last row / column of windows may be partial), windows row-major, blocks row-major
within a window, and attends within each window.
"""
from typing import Tuple

import torch

from . import _checks
from .varlen import _check_merge, _grid_sizes


def rope_window_order(grid_sizes, *, merge_size: int, window_size: int,
                      device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(token_index, cu_window_seqlens)``: the windowed order of a packed batch and its window offsets.

    ``token_index`` (int64 ``[T]``): windowed token j is token ``token_index[j]`` of the merge-block order, so
    ``hidden[token_index]`` and ``positions[token_index]`` reorder tokens and their RoPE positions alike
    (``torch.argsort(token_index)`` restores the order). ``cu_window_seqlens`` (int32 ``[windows + 1]``):
    0, then the cumulative token counts of the non-empty windows, the ``cu_seqlens`` of ``apply_rope`` and
    of varlen attention. ``window_size``: window side in patches (Qwen2.5-VL: its config's ``window_size``
    in pixels divided by ``patch_size``); HF's merge-block ``window_index`` is ``token_index[::m*m] //
    (m*m)``.
    """
    sizes = _grid_sizes(grid_sizes)
    m = _checks.positive_int("merge_size", merge_size)
    _check_merge(sizes, m)
    window = _checks.positive_int("window_size", window_size) // m
    if window < 1:
        raise ValueError(f"window_size ({window_size} patches) must span at least one merge block of "
                         f"merge_size = {m}")
    t, h, w = (sizes[:, i] for i in range(3))
    bh, bw = h // m, w // m  # merge blocks per frame
    windows_w = (bw + window - 1) // window
    blocks = t * bh * bw
    total = int(blocks.sum()) if sizes.numel() else 0
    _checks.result_size(lambda: f"grid_sizes ({len(sizes)} images, {total * m * m} tokens)",
                        (total * m * m,), torch.int64, device)
    image = torch.repeat_interleave(torch.arange(len(sizes)), blocks)
    first_block = torch.cumsum(blocks, 0) - blocks
    first_frame = torch.cumsum(t, 0) - t
    local = torch.arange(total) - first_block[image]
    per_frame = (bh * bw)[image]
    frame = first_frame[image] + local // per_frame
    row, col = (local % per_frame) // bw[image], (local % per_frame) % bw[image]
    win = (row // window) * windows_w[image] + col // window
    # sort key (frame, window, row and column within the window), each term below the next one's stride
    most_windows = int((windows_w * ((bh + window - 1) // window)).max()) if total else 1
    frame_window = frame * most_windows + win
    key = frame_window * window * window + (row % window) * window + col % window
    block_index = torch.argsort(key, stable=True)
    unit = m * m
    token_index = (block_index[:, None] * unit + torch.arange(unit)).reshape(-1)
    _, counts = torch.unique_consecutive(frame_window[block_index], return_counts=True)
    cu = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts * unit, 0)])
    return token_index.to(device), cu.to(device=device, dtype=torch.int32)


__all__ = ["rope_window_order"]
