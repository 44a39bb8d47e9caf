"""NumPy float64 references of the sin-cos tables, written from the published formulas (the conventions table
of posext/sincos.py; grid and token order as docs/conventions.md says).

Tokens are row-major (y slow, x fast); each reference returns [H*W, D] float64.
"""
import numpy as np


def sincos_1d(embed_dim, pos, temperature=10000.0):
    """MAE get_1d_sincos_pos_embed_from_grid: [sin(p w) | cos(p w)], w_k = T^(-k/(D/2))."""
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / temperature ** omega
    out = np.einsum("m,d->md", np.asarray(pos, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _grid(height, width):
    y, x = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    return y.reshape(-1), x.reshape(-1)


def sincos_2d_mae(embed_dim, height, width, temperature=10000.0):
    """MAE get_2d_sincos_pos_embed generalised to H x W: meshgrid(w, h) ('xy'), so grid[0] = x goes first."""
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)),
                    axis=0)
    emb_x = sincos_1d(embed_dim // 2, grid[0], temperature)
    emb_y = sincos_1d(embed_dim // 2, grid[1], temperature)
    return np.concatenate([emb_x, emb_y], axis=1)


def _bands(embed_dim, height, width, temperature, denominator_offset):
    pos_dim = embed_dim // 4
    omega = np.arange(pos_dim, dtype=np.float64) / (pos_dim - denominator_offset)
    omega = 1.0 / temperature ** omega
    y, x = _grid(height, width)
    ay, ax = np.einsum("m,d->md", y, omega), np.einsum("m,d->md", x, omega)
    return {"sin_y": np.sin(ay), "cos_y": np.cos(ay), "sin_x": np.sin(ax), "cos_x": np.cos(ax)}


def sincos_2d_big_vision(embed_dim, height, width, temperature=10000.0):
    """big_vision posemb_sincos_2d: omega = arange(D/4) / (D/4 - 1); [sin x, cos x, sin y, cos y]."""
    b = _bands(embed_dim, height, width, temperature, 1)
    return np.concatenate([b["sin_x"], b["cos_x"], b["sin_y"], b["cos_y"]], axis=1)


def sincos_2d_mocov3(embed_dim, height, width, temperature=10000.0):
    """MoCo v3 build_2d_sincos_position_embedding with row-major tokens: [sin y, cos y, sin x, cos x]."""
    b = _bands(embed_dim, height, width, temperature, 0)
    return np.concatenate([b["sin_y"], b["cos_y"], b["sin_x"], b["cos_x"]], axis=1)


def sincos_2d_timm(embed_dim, height, width, temperature=10000.0, interleave=False):
    """timm build_sincos2d_pos_embed: [sin y, sin x, cos y, cos x], or [sin y, cos y, sin x, cos x]."""
    b = _bands(embed_dim, height, width, temperature, 0)
    order = ["sin_y", "cos_y", "sin_x", "cos_x"] if interleave else ["sin_y", "sin_x", "cos_y", "cos_x"]
    return np.concatenate([b[k] for k in order], axis=1)


SINCOS_2D = {
    "mae": sincos_2d_mae,
    "open_clip": sincos_2d_mae,
    "big_vision": sincos_2d_big_vision,
    "mocov3": sincos_2d_mocov3,
    "timm": sincos_2d_timm,
    "timm_interleaved": lambda d, h, w, t=10000.0: sincos_2d_timm(d, h, w, t, interleave=True),
}


def sincos_2d(convention, embed_dim, height, width, temperature=10000.0, num_prefix_tokens=0):
    grid = SINCOS_2D[convention](embed_dim, height, width, temperature)
    return np.concatenate([np.zeros((num_prefix_tokens, embed_dim)), grid], axis=0)
