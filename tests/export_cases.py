"""Small modules that call one posext op each, with the grid (h, w) taken from an input's shape, for the
export tests (torch.export and ONNX): ``make(h, w)`` builds the inputs, ``dynamic_shapes`` marks h and w
dynamic."""
from typing import Callable, NamedTuple

import torch

import posext

Dim = torch.export.Dim
C = 16
SIZES = [(6, 6), (4, 9), (12, 3), (1, 1), (7, 5)]  # native, non-square, extreme, one cell, the traced one


def _dims():
    return Dim("h", min=1, max=40), Dim("w", min=1, max=40)


def _feat(h, w):
    """[2, h, w, C] patch features (their shape carries the grid)."""
    return torch.randn(2, h, w, C, generator=torch.Generator().manual_seed(h * 100 + w))


def _feat_shapes():
    h, w = _dims()
    return {"feat": {1: h, 2: w}}


class Case(NamedTuple):
    module: torch.nn.Module
    make: Callable
    dynamic_shapes: dict
    op: str
    sizes: list = SIZES


def _param(*shape, seed=0):
    return torch.nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


class Resample(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.pos_embed, self.kwargs = _param(1, 1 + 36, C), kwargs  # a class token and a 6 x 6 grid

    def forward(self, feat):
        b, h, w, c = feat.shape
        return feat.reshape(b, h * w, c) + posext.resample(self.pos_embed, (h, w), **self.kwargs)[:, 1:]


class AddPosEmbed(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.pos_embed, self.kwargs = _param(1, 1 + 30, C), kwargs  # a class token and a 6 x 5 grid

    def forward(self, feat):
        b, h, w, c = feat.shape
        x = torch.cat([feat[:, :1, 0], feat.reshape(b, h * w, c)], 1)
        return posext.add_pos_embed(x, self.pos_embed, (h, w), old_size=(6, 5), **self.kwargs)


class SinCos2d(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, feat):
        b, h, w, c = feat.shape
        return posext.sincos_2d(c, (h, w), **self.kwargs)


class SinCos1d(torch.nn.Module):
    def forward(self, feat):
        b, h, w, c = feat.shape
        return posext.sincos_1d(c, torch.arange(h * w, dtype=torch.float32) * 0.5)


class SinCos3d(torch.nn.Module):
    """A video table over (2 frames, h, w): the frames are the batch dim of ``feat``."""

    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, feat):
        b, h, w, c = feat.shape
        return posext.sincos_3d(c, (b, h, w), **self.kwargs)


class Rope(torch.nn.Module):
    def __init__(self, freqs, **kwargs):
        super().__init__()
        self.register_buffer("freqs", freqs)
        self.kwargs = kwargs

    def forward(self, q, k, feat):
        b, h, w, c = feat.shape
        return posext.apply_rope_2d(q, k, (h, w), self.freqs, num_prefix_tokens=1, **self.kwargs)


def _qk(layout):
    def make(h, w):
        shape = (2, 3, 1 + h * w, 16) if layout == "bhnd" else (2, 1 + h * w, 3, 16)
        gen = torch.Generator().manual_seed(h * 10 + w)
        return torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen), _feat(h, w)
    return make


def _qk_shapes(layout):
    n = Dim("n", min=2, max=2000)
    token_axis = 2 if layout == "bhnd" else 1
    return {"q": {token_axis: n}, "k": {token_axis: n}, **_feat_shapes()}


class MRope(torch.nn.Module):
    """M-RoPE: (t, h, w) positions of every token, contiguous sections of 6 of the 8 pairs (partial RoPE: 4
    channels pass), half pairs, k with 1 of q's 2 heads (grouped-query)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(6.0) / 6))

    def forward(self, q, k, positions):
        return posext.apply_rope(q, k, positions, self.inv_freq, sections=(2, 2, 2), pair_layout="half")


def _mrope(h, w):
    gen = torch.Generator().manual_seed(h * 5 + w)
    n = h * w
    return (torch.randn(1, 2, n, 16, generator=gen), torch.randn(1, 1, n, 16, generator=gen),
            torch.randint(0, 30, (n, 3), generator=gen).float())


def _mrope_shapes():
    n = Dim("n", min=2, max=2000)
    return {"q": {2: n}, "k": {2: n}, "positions": {0: n}}


class RopePerEntry(torch.nn.Module):
    """Two axes, positions per batch entry [B, N, 2] (as packed multi-resolution batches use)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("freqs", posext.rope_mixed_freqs(16, 2))

    def forward(self, q, k, positions):
        return posext.apply_rope(q, k, positions, self.freqs)


def _per_entry(h, w):
    gen = torch.Generator().manual_seed(h * 7 + w)
    n = h * w
    return (torch.randn(2, 2, n, 16, generator=gen), torch.randn(2, 2, n, 16, generator=gen),
            torch.rand(2, n, 2, generator=gen) * 20)


def _per_entry_shapes():
    n = Dim("n", min=2, max=2000)
    return {"q": {2: n}, "k": {2: n}, "positions": {1: n}}


class Factorized(torch.nn.Module):
    def __init__(self, two_d=False, **kwargs):
        super().__init__()
        width = C // 2 if kwargs.get("combine") == "concat" else C  # concat: the two halves of C
        self.table_y = _param(*((40, 40, C) if two_d else (40, width)), seed=1)
        self.table_x = None if two_d else _param(40, width, seed=2)
        self.kwargs = kwargs

    def forward(self, feat):
        b, h, w, c = feat.shape
        return posext.factorized_pos_embed(feat.reshape(b, h * w, c), self.table_y, self.table_x,
                                           grid_size=(h, w), **self.kwargs)


class FactorizedCoords(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.table_y, self.table_x = _param(12, C, seed=1), _param(9, C, seed=2)

    def forward(self, x, coords):
        return posext.factorized_pos_embed(x, self.table_y, self.table_x, coords=coords, num_prefix_tokens=1)


def _coords(h, w):
    gen = torch.Generator().manual_seed(h * 7 + w)
    return torch.randn(2, 1 + h * w, C, generator=gen), torch.rand(h * w, 2, generator=gen)


def _coords_shapes():
    m = Dim("m", min=1, max=1999)
    return {"x": {1: m + 1}, "coords": {0: m}}  # a class token and m positions


class VarlenAdd(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.pos_embed, self.kwargs = _param(36, C, seed=3), kwargs

    def forward(self, x, grid_sizes):
        return posext.add_pos_embed_varlen(x, self.pos_embed, grid_sizes, **self.kwargs)


class Varlen(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.pos_embed, self.kwargs = _param(1 + 36, C, seed=4), kwargs

    def forward(self, x, grid_sizes):
        return posext.resample_varlen(self.pos_embed, grid_sizes, num_prefix_tokens=1, max_length=x.shape[1],
                                      **self.kwargs) + x


def _images(h, w):
    """Three images (h, w), (w, h), (1, h) padded to h * w rows."""
    return torch.randn(3, h * w, C), torch.tensor([[h, w], [w, h], [1, h]])


def _video(h, w):
    """Qwen-style: sizes divisible by the merge size 2, an image of two frames; padded to the longest."""
    sizes = torch.tensor([[1, 2 * h, 2 * w], [2, 2 * w, 2 * h], [1, 2, 2]])
    return torch.randn(3, 8 * h * w, C), sizes


def _rows_shapes():
    return {"x": {1: Dim("rows", min=1, max=8000)}, "grid_sizes": None}


CASES = {
    "resample bicubic antialias": Case(Resample(mode="bicubic", antialias=True), lambda h, w: (_feat(h, w),),
                                       _feat_shapes(), "resample"),
    "resample bilinear align_corners": Case(Resample(mode="bilinear", align_corners=True),
                                            lambda h, w: (_feat(h, w),), _feat_shapes(), "resample"),
    "add_pos_embed bicubic": Case(AddPosEmbed(mode="bicubic"), lambda h, w: (_feat(h, w),), _feat_shapes(),
                                  "resample_add"),
    "add_pos_embed nearest": Case(AddPosEmbed(mode="nearest"), lambda h, w: (_feat(h, w),), _feat_shapes(),
                                  "resample_add"),
    "sincos_2d mae": Case(SinCos2d(), lambda h, w: (_feat(h, w),), _feat_shapes(), "sincos_2d"),
    "sincos_2d timm + class row": Case(SinCos2d(convention="timm", num_prefix_tokens=1),
                                       lambda h, w: (_feat(h, w),), _feat_shapes(), "sincos_2d"),
    "sincos_1d": Case(SinCos1d(), lambda h, w: (_feat(h, w),), _feat_shapes(), "sincos_1d"),
    "sincos_3d vjepa + class row": Case(SinCos3d(num_prefix_tokens=1), lambda h, w: (_feat(h, w),),
                                        _feat_shapes(), "sincos_3d"),
    "sincos_3d cogvideox scaled": Case(SinCos3d(convention="cogvideox", spatial_interpolation_scale=1.875),
                                       lambda h, w: (_feat(h, w),), _feat_shapes(), "sincos_3d"),
    "sincos_3d videomae": Case(SinCos3d(convention="videomae"), lambda h, w: (_feat(h, w),), _feat_shapes(),
                               "sincos_3d"),
    "rope axial bhnd interleaved": Case(Rope(posext.rope_axial_freqs(16)), _qk("bhnd"), _qk_shapes("bhnd"),
                                        "rope_2d"),
    "rope mixed bnhd half": Case(Rope(posext.rope_mixed_freqs(16, 3), layout="bnhd", pair_layout="half"),
                                 _qk("bnhd"), _qk_shapes("bnhd"), "rope_2d"),
    "rope 3 axes, M-RoPE sections": Case(MRope(), _mrope, _mrope_shapes(), "rope_2d",
                                         [(6, 6), (4, 9), (12, 3), (7, 5)]),
    "rope positions per batch entry": Case(RopePerEntry(), _per_entry, _per_entry_shapes(), "rope_2d",
                                           [(6, 6), (4, 9), (12, 3), (7, 5)]),
    "factorized sum": Case(Factorized(), lambda h, w: (_feat(h, w),), _feat_shapes(), "factorized_add"),
    "factorized concat": Case(Factorized(combine="concat"), lambda h, w: (_feat(h, w),), _feat_shapes(),
                              "factorized_add"),
    "factorized 2-D table": Case(Factorized(two_d=True), lambda h, w: (_feat(h, w),), _feat_shapes(),
                                 "factorized_add"),
    "factorized coords": Case(FactorizedCoords(), _coords, _coords_shapes(), "factorized_add"),
    "varlen add bilinear antialias": Case(VarlenAdd(mode="bilinear", antialias=True), _images, _rows_shapes(),
                                          "resample_varlen_add"),
    "varlen bicubic merge 2 frames": Case(Varlen(mode="bicubic", merge_size=2), _video, _rows_shapes(),
                                          "resample_varlen"),
}
