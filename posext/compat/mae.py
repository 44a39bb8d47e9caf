"""MAE / open_clip ``util/pos_embed.py`` drop-ins: sin-cos helpers (float64 NumPy returns) and
``interpolate_pos_embed`` (facebookresearch/mae @efb2a80, identical to open_clip 3.3.0's copy).

Note MAE's naming: ``get_2d_sincos_pos_embed_from_grid`` encodes ``grid[0]`` first, and MAE builds
``grid`` with ``np.meshgrid(grid_w, grid_h)``, so ``grid[0]`` is x: channels are [sin x, cos x, sin y, cos y].
"""
import numpy as np
import torch

from ..sincos import sincos_1d, sincos_2d
from ._common import resample_tokens


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


def interpolate_pos_embed(model, checkpoint_model):
    """MAE ``interpolate_pos_embed``: resize ``checkpoint_model['pos_embed']`` in place for ``model``.

    Extra (class, distillation) tokens: ``model.pos_embed.shape[-2] - model.patch_embed.num_patches`` rows,
    copied unchanged. Old and new grids are square (``int(sqrt(.))`` sides); when the sides differ it prints
    ``Position interpolate from AxA to BxB`` and stores the bicubic resize (align_corners=False, no
    antialias, no float32 upcast) of ``[B, extra + A*A, C]``; otherwise the dict is left alone.
    """
    if 'pos_embed' not in checkpoint_model:
        return
    pos_embed_checkpoint = checkpoint_model['pos_embed']
    num_patches = model.patch_embed.num_patches
    num_extra_tokens = model.pos_embed.shape[-2] - num_patches
    orig_size = int((pos_embed_checkpoint.shape[-2] - num_extra_tokens) ** 0.5)
    new_size = int(num_patches ** 0.5)
    if orig_size != new_size:
        print("Position interpolate from %dx%d to %dx%d" % (orig_size, orig_size, new_size, new_size))
        checkpoint_model['pos_embed'] = resample_tokens(
            pos_embed_checkpoint, (new_size, new_size), old_size=(orig_size, orig_size),
            num_prefix_tokens=num_extra_tokens, mode='bicubic', antialias=False, align_corners=False)
