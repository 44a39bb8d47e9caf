"""MAE / open_clip ``util/pos_embed.py`` sin-cos helpers: same signatures, float64 NumPy returns.

Note MAE's naming: ``get_2d_sincos_pos_embed_from_grid`` encodes ``grid[0]`` first, and MAE builds
``grid`` with ``np.meshgrid(grid_w, grid_h)``, so ``grid[0]`` is x: channels are [sin x, cos x, sin y, cos y].
"""
import numpy as np
import torch

from ..sincos import sincos_1d, sincos_2d


def get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=False):
    """``[grid_size**2 (+1), embed_dim]`` float64 array; a zero first row when ``cls_token``."""
    table = sincos_2d(embed_dim, grid_size, convention="mae", num_prefix_tokens=1 if cls_token else 0,
                      dtype=torch.float64, device="cpu")
    return table.numpy()


def get_2d_sincos_pos_embed_from_grid(embed_dim, grid):
    """``grid``: array of shape [2, ...]; half the channels encode ``grid[0]``, half ``grid[1]``."""
    assert embed_dim % 2 == 0
    grid = np.asarray(grid)
    emb_first = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_second = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_first, emb_second], axis=1)


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    """``pos``: array of M positions (any shape, flattened) -> ``[M, embed_dim]`` float64 [sin | cos]."""
    assert embed_dim % 2 == 0
    positions = torch.from_numpy(np.asarray(pos, dtype=np.float64).reshape(-1).copy())
    return sincos_1d(embed_dim, positions, dtype=torch.float64).numpy()
