"""Checks the NumPy float64 resampling reference against torch.nn.functional.interpolate (CPU float64)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests import reference_resample as ref

TOL = 1e-12

# (mode, antialias, align_corners) combinations torch accepts for 4-D input.
COMBOS = [("nearest", False, None)] + [
    (mode, aa, ac) for mode in ("bilinear", "bicubic") for aa in (False, True) for ac in (False, True)
]
COMBO_IDS = [f"{m}-aa{int(aa)}-ac{ac}" for m, aa, ac in COMBOS]


def _kwargs(mode, antialias, align_corners):
    if mode == "nearest":
        return {"mode": mode}
    return {"mode": mode, "antialias": antialias, "align_corners": align_corners}


def _torch_cpu_aa_width1_bug(combo, in_h, out_h, out_w):
    """torch 2.14.1 CPU antialias with W_out == 1: every output row is computed with row 0's vertical weights.

    (Visible only when the vertical pass runs, i.e. H_out != H_in, and H_in > 1.) The reference keeps the
    correct math; for these cases the tests check torch against the same matrices with Wy[0] for every row.
    """
    return combo[1] and out_w == 1 and out_h != in_h and in_h > 1


def _check(x, combo, **size_or_scale):
    kw = _kwargs(*combo)
    want = F.interpolate(torch.from_numpy(x), **size_or_scale, **kw).numpy()
    got = ref.interpolate(x, **size_or_scale, **kw)
    assert got.dtype == np.float64
    assert got.shape == want.shape, (got.shape, want.shape)
    in_h, out_h, out_w = x.shape[2], got.shape[2], got.shape[3]
    if _torch_cpu_aa_width1_bug(combo, in_h, out_h, out_w):
        scale = size_or_scale.get("scale_factor")
        sy, sx = (None, None) if scale is None else ((scale, scale) if np.isscalar(scale) else scale)
        wy = ref.axis_matrix(in_h, out_h, *combo, scale=sy)
        wx = ref.axis_matrix(x.shape[3], out_w, *combo, scale=sx)
        got = np.einsum("oh,nchw,pw->ncop", np.repeat(wy[:1], out_h, axis=0), x, wx)
    err = float(np.abs(got - want).max()) if got.size else 0.0
    assert err <= TOL, f"max abs err {err:.3e} for {combo} {size_or_scale} in {x.shape}"


def _data(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- random shapes

sizes = st.integers(1, 40)
combos = st.sampled_from(COMBOS)


@settings(max_examples=300, deadline=None)
@given(combo=combos, n=st.integers(1, 2), c=st.integers(1, 3), in_h=sizes, in_w=sizes, out_h=sizes,
       out_w=sizes, seed=st.integers(0, 2**32 - 1))
def test_random_size(combo, n, c, in_h, in_w, out_h, out_w, seed):
    _check(_data(seed, (n, c, in_h, in_w)), combo, size=(out_h, out_w))


@st.composite
def _scale_for(draw, in_size):
    """A scale factor whose floor(in * sf) lies in [1, 40]."""
    sf = draw(st.floats(min_value=1.0 / in_size, max_value=40.0 / in_size, allow_nan=False,
                        allow_infinity=False))
    return sf if 1 <= math.floor(in_size * sf) <= 40 else 1.0


@settings(max_examples=300, deadline=None)
@given(combo=combos, in_h=sizes, in_w=sizes, data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_random_scale_factor(combo, in_h, in_w, data, seed):
    sy, sx = data.draw(_scale_for(in_h)), data.draw(_scale_for(in_w))
    _check(_data(seed, (1, 2, in_h, in_w)), combo, scale_factor=(sy, sx))


@settings(max_examples=100, deadline=None)
@given(combo=combos, in_size=sizes, data=st.data())
def test_axis_matrix_matches_torch_on_basis(combo, in_size, data):
    """Row i of torch's output for the j-th basis vector is W[i, j]."""
    mode, aa, ac = combo
    # Basis images along H in column 0; width 2 is kept (width 1 would hit the torch AA W_out == 1 bug).
    basis = torch.zeros(in_size, 1, in_size, 2, dtype=torch.float64)
    basis[:, 0, :, 0] = torch.eye(in_size, dtype=torch.float64)
    if data.draw(st.booleans()):
        out_size = data.draw(sizes)
        got = ref.axis_matrix(in_size, out_size, mode, aa, ac)
        want = F.interpolate(basis, size=(out_size, 2), **_kwargs(mode, aa, ac))
    else:
        sf = data.draw(_scale_for(in_size))
        got = ref.axis_matrix(in_size, math.floor(in_size * sf), mode, aa, ac, scale=sf)
        want = F.interpolate(basis, scale_factor=(sf, 1.0), **_kwargs(mode, aa, ac))
    want = want[:, 0, :, 0].numpy().T
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)  # every mode preserves constants


# ----------------------------------------------------------------------------- explicit cases

EXPLICIT = [
    ((1, 3, 14, 11), {"size": (23, 18)}),  # upsample, non-square
    ((1, 3, 14, 11), {"scale_factor": 1.7}),  # s = 1/1.7 != 14/23, 11/18
    ((1, 3, 14, 11), {"scale_factor": (1.05, 1.7)}),  # y keeps its size (14) but s = 1/1.05
    ((1, 3, 14, 11), {"scale_factor": 1.05}),  # same shape from a scale factor
    ((1, 3, 14, 11), {"size": (14, 11)}),  # same shape from size
    ((2, 2, 37, 37), {"scale_factor": 16.1 / 37}),  # DINOv2: (w0 + 0.1) / sqrt(N), 37 -> 16
    ((2, 2, 16, 16), {"scale_factor": (37.1 / 16, 23.1 / 16)}),  # DINOv2-style upsample 16 -> 37 x 23
    ((1, 2, 37, 37), {"size": (16, 16)}),  # downsample
    ((1, 2, 40, 33), {"size": (7, 5)}),  # strong non-square downsample
    ((1, 2, 1, 1), {"size": (5, 3)}),  # 1x1 grid
    ((1, 2, 2, 2), {"size": (7, 2)}),  # 2x2 grid
    ((1, 2, 2, 2), {"scale_factor": 3.5}),
    ((1, 2, 9, 7), {"size": (1, 1)}),  # to a single pixel (align_corners: s = 0)
    ((1, 2, 9, 7), {"size": (18, 14)}),  # nearest: exact 2x shortcut
    ((1, 2, 14, 14), {"scale_factor": 0.5}),
]


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("shape,kw", EXPLICIT, ids=[f"{s}-{k}" for s, k in EXPLICIT])
def test_explicit(combo, shape, kw):
    _check(_data(0, shape), combo, **kw)


def test_scale_factor_path_differs_from_size_path():
    """With a scale factor the kernel uses s = 1/sf, not in/out (doc section 1: up to 2.28 on 14x11,
    sf 1.7)."""
    x = _data(1, (1, 1, 14, 11))
    a = ref.interpolate(x, scale_factor=1.7, mode="bicubic", align_corners=False)
    b = ref.interpolate(x, size=(23, 18), mode="bicubic", align_corners=False)
    assert a.shape == b.shape == (1, 1, 23, 18)
    assert np.abs(a - b).max() > 0.1


def test_same_shape_scale_factor_bicubic_is_not_a_copy():
    """Doc discrepancy pinned: non-AA bicubic resamples a same-size axis with s = 1/sf; other modes keep
    it."""
    x = _data(2, (1, 1, 14, 11))
    t = torch.from_numpy(x)
    cubic = F.interpolate(t, scale_factor=1.05, mode="bicubic", align_corners=False).numpy()
    assert cubic.shape == x.shape and np.abs(cubic - x).max() > 0.1
    for kw in ({"mode": "bilinear", "align_corners": False},
               {"mode": "bicubic", "align_corners": False, "antialias": True},
               {"mode": "nearest"}):
        assert np.array_equal(F.interpolate(t, scale_factor=1.05, **kw).numpy(), x)
        assert np.array_equal(ref.interpolate(x, scale_factor=1.05, **kw), x)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_torch_cpu_aa_width1_bug(mode, align_corners):
    """Pins the torch CPU quirk worked around in _check: AA with W_out == 1 repeats output row 0.

    If this starts failing, torch has fixed it: drop _torch_cpu_aa_width1_bug from the tests.
    """
    x = _data(5, (2, 3, 9, 4))
    kw = {"mode": mode, "antialias": True, "align_corners": align_corners}
    out = F.interpolate(torch.from_numpy(x), size=(5, 1), **kw).numpy()
    assert np.array_equal(out, np.repeat(out[:, :, :1], 5, axis=2))
    assert np.abs(out - ref.interpolate(x, size=(5, 1), **kw)).max() > 0.1
    # W_out == 2 (or H_out == 1 with W_out == 1) is fine.
    for size in ((5, 2), (1, 1)):
        want = F.interpolate(torch.from_numpy(x), size=size, **kw).numpy()
        assert np.abs(want - ref.interpolate(x, size=size, **kw)).max() <= TOL


def test_nearest_uses_float32_scale():
    """Legacy nearest floors i * float32(scale); check a case where float64 would pick another pixel."""
    found = False
    for in_size in range(2, 60):
        for out_size in range(1, 60):
            if out_size in (in_size, 2 * in_size):
                continue
            s32 = np.float32(in_size) / np.float32(out_size)
            i = np.arange(out_size)
            a = np.minimum(np.floor(np.float32(i) * s32).astype(int), in_size - 1)
            b = np.minimum(np.floor(i * (in_size / out_size)).astype(int), in_size - 1)
            if np.any(a != b):
                x = _data(3, (1, 1, in_size, 1))
                _check(x, ("nearest", False, None), size=(out_size, 1))
                found = True
    assert found, "no size pair where float32 and float64 nearest differ"


# ----------------------------------------------------------------------------- token layout


def _torch_tokens(pos, new_size, old_size, p, **kw):
    t = torch.from_numpy(pos)
    b, _, c = t.shape
    grid = t[:, p:].reshape(b, *old_size, c).permute(0, 3, 1, 2)
    out = F.interpolate(grid, size=new_size, **kw).permute(0, 2, 3, 1).reshape(b, -1, c)
    return torch.cat([t[:, :p], out], dim=1).numpy()


@settings(max_examples=60, deadline=None)
@given(combo=combos, b=st.integers(1, 2), c=st.integers(1, 8), p=st.integers(0, 5),
       old_h=sizes, old_w=sizes, new_h=sizes, new_w=sizes, seed=st.integers(0, 2**32 - 1))
def test_resample_tokens(combo, b, c, p, old_h, old_w, new_h, new_w, seed):
    # covered in test_torch_cpu_aa_width1_bug
    assume(not _torch_cpu_aa_width1_bug(combo, old_h, new_h, new_w))
    pos = _data(seed, (b, p + old_h * old_w, c))
    kw = _kwargs(*combo)
    got = ref.resample_tokens(pos, (new_h, new_w), (old_h, old_w), p, **kw)
    want = _torch_tokens(pos, (new_h, new_w), (old_h, old_w), p, **kw)
    assert got.shape == (b, p + new_h * new_w, c)
    np.testing.assert_array_equal(got[:, :p], pos[:, :p])
    assert np.abs(got - want).max() <= TOL


def test_resample_tokens_row_major_layout():
    """Token p + y*W + x holds grid pixel (y, x): a 2x upsample with nearest repeats along rows and
    columns."""
    h, w = 2, 3
    grid = np.arange(h * w, dtype=np.float64).reshape(h, w)
    pos = np.concatenate([[[-1.0]], grid.reshape(-1, 1)])[None]  # [1, 1 + 6, 1]
    out = ref.resample_tokens(pos, (2 * h, 2 * w), (h, w), 1, mode="nearest")
    assert out[0, 0, 0] == -1.0
    np.testing.assert_array_equal(out[0, 1:, 0].reshape(2 * h, 2 * w), grid.repeat(2, 0).repeat(2, 1))


def test_resample_tokens_scale_factor():
    pos = _data(4, (1, 1 + 37 * 37, 4))
    got = ref.resample_tokens(pos, None, (37, 37), 1, mode="bicubic", scale_factor=16.1 / 37)
    t = torch.from_numpy(pos[:, 1:]).reshape(1, 37, 37, 4).permute(0, 3, 1, 2)
    want = F.interpolate(t, scale_factor=16.1 / 37, mode="bicubic").permute(0, 2, 3, 1).reshape(
        1, -1, 4).numpy()
    assert got.shape == (1, 1 + 16 * 16, 4)
    assert np.abs(got[:, 1:] - want).max() <= TOL


def test_rejects_invalid_arguments():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError):
        ref.interpolate(x, size=(2, 2), scale_factor=2.0, mode="bilinear")
    with pytest.raises(ValueError):
        ref.interpolate(x, size=(2, 2), mode="nearest", antialias=True)
    with pytest.raises(ValueError):
        ref.interpolate(x, size=(2, 2), mode="area")
