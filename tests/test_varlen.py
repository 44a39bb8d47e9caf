"""posext.resample_varlen / add_pos_embed_varlen: one table resampled to every image's grid, packed or padded.

Oracle: ``oracle`` below, written here from the API's contract and not from posext's code: per image the
stored grid as ``[1, C, H, W]``, ``F.interpolate(size=(h, w), mode, antialias, align_corners)``, rows
row-major, reordered into Qwen-VL (h/m, w/m, m, m) order by an explicit index list, t frames repeated, the
images concatenated (packed) or zero-padded to ``max_length`` and stacked (padded).

Tolerances (unit-scale N(0,1) data): float64 <= 1e-12 max abs against the float64 oracle; float32 <= 1e-5
against the oracle run in float32 (torch's float32 F.interpolate; as in tests/test_resample.py, float32
source positions round to ~1e-6 of a pixel, which moves cubic weights by ~1e-5) and <= 1e-4 against the
float64 oracle; float16 / bfloat16 against the float32 oracle rounded to the half type, within one ulp of
the half type (rtol 2**-10 / 2**-7): the op computes in float32 and rounds once, and a float32 result a hair
from a rounding midpoint may round to either neighbour. Gradients: float64 within 1e-10 of the oracle's
autograd gradient.
Outputs are poisoned: every test runs in torch's deterministic mode, which fills fresh tensors with NaN, so
an element a kernel leaves unwritten fails the comparison.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import posext
from tests import reference_resample as ref
from tests.conftest import assert_error_names

pytestmark = pytest.mark.usefixtures("poison_outputs")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The fused op: registered by the compiled extension once it has a varlen kernel.
FUSED_OP = posext.backend() == "extension" and hasattr(torch.ops.posext, "resample_varlen")

# Every (mode, antialias, align_corners) that F.interpolate accepts; nearest takes neither flag.
COMBOS = [("bicubic", False, False), ("bicubic", True, False), ("bicubic", False, True),
          ("bicubic", True, True), ("bilinear", False, False), ("bilinear", True, False),
          ("bilinear", False, True), ("bilinear", True, True), ("nearest", False, False)]


# ------------------------------------------------------------------------------ the oracle

def interpolate(grid, size, mode, antialias, align_corners):
    """F.interpolate of ``[1, C, H, W]`` to ``size``. torch (2.14 CPU) antialias with an output width of 1
    and a changed height repeats output row 0; the same resampling with the axes swapped is unaffected
    (checked against the NumPy reference in test_oracle_output_width_one_with_antialias)."""
    kwargs = dict(mode=mode, antialias=antialias)
    if mode != "nearest":
        kwargs["align_corners"] = align_corners
    if antialias and size[1] == 1 and size[0] != grid.shape[2]:
        return F.interpolate(grid.transpose(2, 3), size=(size[1], size[0]), **kwargs).transpose(2, 3)
    return F.interpolate(grid, size=tuple(size), **kwargs)


def merge_index(h, w, m):
    """Row-major grid token of each output row in Qwen-VL order: block row, block column, row, column."""
    return torch.tensor([(by * m + i) * w + bx * m + j
                         for by in range(h // m) for bx in range(w // m)
                         for i in range(m) for j in range(m)], dtype=torch.int64)


def oracle(tokens, old_hw, prefix, sizes, mode="bicubic", antialias=False, align_corners=False,
           merge_size=1, max_length=None):
    """tokens ``[P + H*W, C]`` (computed in its dtype), sizes ``[(t, h, w), ...]`` -> packed
    ``[sum t*h*w, C]`` or, with max_length, padded ``[B, max_length, C]``."""
    c = tokens.shape[1]
    grid = tokens[prefix:].reshape(old_hw[0], old_hw[1], c).permute(2, 0, 1).unsqueeze(0)
    pieces = []
    for t, h, w in sizes:
        rows = interpolate(grid, (h, w), mode, antialias, align_corners)[0].permute(1, 2, 0).reshape(h * w, c)
        rows = torch.cat([rows[merge_index(h, w, merge_size)]] * t)
        if max_length is not None:
            rows = torch.cat([rows, rows.new_zeros(max_length - t * h * w, c)])
        pieces.append(rows)
    if max_length is None:
        return torch.cat(pieces) if pieces else tokens.new_zeros(0, c)
    return torch.stack(pieces) if pieces else tokens.new_zeros(0, max_length, c)


def as_sizes(grid_sizes):
    """grid_sizes (list or tensor, [B, 2] or [B, 3]) -> [(t, h, w), ...]."""
    rows = grid_sizes.tolist() if isinstance(grid_sizes, torch.Tensor) else [list(r) for r in grid_sizes]
    return [tuple(r) if len(r) == 3 else (1, *r) for r in rows]


# ------------------------------------------------------------------------------ random cases

@st.composite
def varlen_cases(draw):
    mode, antialias, align_corners = draw(st.sampled_from(COMBOS))
    layout = draw(st.sampled_from(["unbatched", "batched", "nhwc"]))
    old_hw = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    prefix = 0 if layout == "nhwc" else draw(st.integers(0, 3))
    # old_size may be left out for a square grid (and always for NHWC, whose shape carries it)
    pass_old_size = old_hw[0] != old_hw[1] and layout != "nhwc" or draw(st.booleans())
    merge_size = draw(st.sampled_from([1, 2]))
    with_t = draw(st.booleans())
    batch = draw(st.integers(0, 6))
    sizes = []
    for _ in range(batch):
        if sizes and draw(st.integers(0, 3)) == 0:  # a size seen before: one resampled grid, used again
            sizes.append(draw(st.sampled_from(sizes)))
            continue
        t = draw(st.integers(1, 3)) if with_t else 1
        h, w = (merge_size * draw(st.integers(1, 40 // merge_size)) for _ in range(2))
        sizes.append((t, h, w))
    longest = max((t * h * w for t, h, w in sizes), default=0)
    padded = draw(st.booleans())
    max_length = longest + draw(st.sampled_from([0, 0, 1, 7])) if padded else None
    return dict(mode=mode, antialias=antialias, align_corners=align_corners, layout=layout, old_hw=old_hw,
                prefix=prefix, pass_old_size=pass_old_size, merge_size=merge_size, sizes=sizes,
                with_t=with_t, grid_form=draw(st.sampled_from(["list", "int32", "int64", "strided"])),
                max_length=max_length, channels=draw(st.integers(1, 5)),
                strides=draw(st.sampled_from(["contiguous", "channel_slice", "row_slice", "transposed"])),
                dtype=draw(st.sampled_from([torch.float64, torch.float32])), seed=draw(st.integers(0, 2**16)))


def make_table(case, dtype=None):
    """The case's table in its layout and strides, plus the same values as a contiguous [P + N, C]."""
    gen = torch.Generator().manual_seed(case["seed"])
    dtype = dtype or case["dtype"]
    n, c = case["prefix"] + case["old_hw"][0] * case["old_hw"][1], case["channels"]
    values = torch.randn(n, c, generator=gen, dtype=torch.float64).to(dtype)
    if case["strides"] == "channel_slice":  # channel stride 2
        nan = torch.full_like(values, float("nan"))
        tokens = torch.stack([values, nan], dim=-1).reshape(n, 2 * c)[:, ::2]
    elif case["strides"] == "row_slice":  # every other row of a longer table, at a storage offset
        nan = torch.full_like(values, float("nan"))
        tokens = torch.stack([nan, values], dim=1).reshape(2 * n, c)[1::2]
    elif case["strides"] == "transposed":  # column-major: a transposed-then-transposed view
        tokens = values.t().contiguous().t()
    else:
        tokens = values
    assert torch.equal(tokens, values)
    if case["layout"] == "nhwc":
        return tokens.reshape(1, case["old_hw"][0], case["old_hw"][1], c), values
    return (tokens if case["layout"] == "unbatched" else tokens.unsqueeze(0)), values


def make_grid_sizes(case):
    rows = [list(s) if case["with_t"] else list(s[1:]) for s in case["sizes"]]
    width = 3 if case["with_t"] else 2
    if case["grid_form"] == "list":
        return rows
    if case["grid_form"] == "strided":  # columns of a wider int64 tensor
        wide = torch.zeros(len(rows), 2 * width, dtype=torch.int64)
        wide[:, ::2] = torch.tensor(rows, dtype=torch.int64).reshape(len(rows), width)
        return wide[:, ::2]
    dtype = torch.int32 if case["grid_form"] == "int32" else torch.int64
    return torch.tensor(rows, dtype=dtype).reshape(len(rows), width)


def table_kwargs(case):
    kwargs = dict(mode=case["mode"], antialias=case["antialias"], align_corners=case["align_corners"],
                  merge_size=case["merge_size"])
    if case["prefix"] or case["layout"] != "nhwc" and case["pass_old_size"]:
        kwargs["num_prefix_tokens"] = case["prefix"]
    if case["pass_old_size"]:
        kwargs["old_size"] = case["old_hw"]
    return kwargs


def case_oracle(values, case, dtype):
    return oracle(values.to(dtype), case["old_hw"], case["prefix"], case["sizes"], case["mode"],
                  case["antialias"], case["align_corners"], case["merge_size"], case["max_length"])


def expected_shape(case):
    c = case["channels"]
    if case["max_length"] is None:
        return (sum(t * h * w for t, h, w in case["sizes"]), c)
    return (len(case["sizes"]), case["max_length"], c)


@settings(max_examples=120, deadline=None)
@given(case=varlen_cases())
def test_matches_per_image_interpolate(backend, case):
    table, values = make_table(case)
    before = table.clone()
    grid_sizes = make_grid_sizes(case)
    out = posext.resample_varlen(table, grid_sizes, max_length=case["max_length"], **table_kwargs(case))
    assert tuple(out.shape) == expected_shape(case) and out.dtype == case["dtype"]
    assert out.device == table.device
    assert not out.isnan().any(), "unwritten (NaN-poisoned) elements"
    assert torch.equal(table, before), "the table must not be written"
    exact = case_oracle(values, case, torch.float64)
    if case["dtype"] == torch.float64:
        torch.testing.assert_close(out, exact, rtol=0, atol=1e-12)
    else:
        torch.testing.assert_close(out, case_oracle(values, case, torch.float32), rtol=0, atol=1e-5)
        torch.testing.assert_close(out.double(), exact, rtol=0, atol=1e-4)
    if case["max_length"] is not None:
        for i, (t, h, w) in enumerate(case["sizes"]):
            assert torch.equal(out[i, t * h * w:], torch.zeros_like(out[i, t * h * w:])), \
                "padding rows must be exactly zero"


def test_oracle_output_width_one_with_antialias():
    """The oracle's way around torch's antialias width-1 quirk gives the NumPy float64 reference's rows."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(1 + 2 * 3, 4, generator=gen, dtype=torch.float64)
    for mode in ("bicubic", "bilinear"):
        for align_corners in (False, True):
            got = oracle(tokens, (2, 3), 1, [(1, 5, 1)], mode, True, align_corners)
            expected = ref.resample_tokens(tokens[None].numpy(), (5, 1), (2, 3), 1, mode=mode, antialias=True,
                                           align_corners=align_corners)[0, 1:]
            np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
            out = posext.resample_varlen(tokens, [[5, 1]], old_size=(2, 3), num_prefix_tokens=1, mode=mode,
                                         antialias=True, align_corners=align_corners)
            np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


def test_merge_size_is_qwen_vl_order_and_frames_repeat():
    """Each token's value is its own grid index (nearest, same size: an identity resample), so the rows
    spell out the order: (t, h/m, w/m, m, m) for m = 2, frame after frame."""
    table = torch.arange(4 * 6, dtype=torch.float64)[:, None].repeat(1, 3)
    out = posext.resample_varlen(table, [[2, 4, 6]], old_size=(4, 6), mode="nearest", merge_size=2)
    one_frame = [0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11, 12, 13, 18, 19, 14, 15, 20, 21, 16, 17, 22, 23]
    assert out[:, 0].tolist() == one_frame * 2
    assert torch.equal(out[:, 1], out[:, 0]) and torch.equal(out[:, 2], out[:, 0])
    plain = posext.resample_varlen(table, [[4, 6]], old_size=(4, 6), mode="nearest")
    assert plain[:, 0].tolist() == list(range(24))


def test_images_in_order_with_prefix_rows_left_out():
    """Packed: image after image in grid_sizes order; the P prefix rows appear nowhere."""
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(2 + 5 * 5, 4, generator=gen, dtype=torch.float64)
    sizes = [(1, 3, 7), (2, 5, 5), (1, 3, 7), (1, 1, 2)]
    out = posext.resample_varlen(table, torch.tensor(sizes), num_prefix_tokens=2)
    start = 0
    for t, h, w in sizes:
        one = posext.resample(table[None], (h, w), num_prefix_tokens=2)[0, 2:]
        torch.testing.assert_close(out[start:start + t * h * w], one.repeat(t, 1), rtol=0, atol=1e-12)
        start += t * h * w
    assert start == out.shape[0]
    same = posext.resample_varlen(table, [[5, 5]], num_prefix_tokens=2)  # (5, 5) is the stored grid
    torch.testing.assert_close(same, table[2:], rtol=0, atol=1e-12)


def test_packed_and_padded_hold_the_same_rows():
    gen = torch.Generator().manual_seed(4)
    table = torch.randn(1, 1 + 6 * 9, 5, generator=gen, dtype=torch.float64)
    sizes = [[2, 4, 6], [1, 8, 2], [3, 2, 2]]
    kwargs = dict(old_size=(6, 9), num_prefix_tokens=1, mode="bilinear", antialias=True, merge_size=2)
    packed = posext.resample_varlen(table, sizes, **kwargs)
    padded = posext.resample_varlen(table, sizes, max_length=50, **kwargs)
    assert packed.shape == (48 + 16 + 12, 5) and padded.shape == (3, 50, 5)
    lengths = [48, 16, 12]
    for i, piece in enumerate(packed.split(lengths)):
        torch.testing.assert_close(padded[i, :lengths[i]], piece, rtol=0, atol=1e-12)
        assert torch.equal(padded[i, lengths[i]:], torch.zeros(50 - lengths[i], 5, dtype=torch.float64))


@pytest.mark.parametrize("max_length", [None, 30])
def test_grid_sizes_forms_agree(max_length):
    """Nested lists or tuples, int32 / int64 tensors (also strided), (h, w) rows or (1, h, w) rows: one
    result."""
    gen = torch.Generator().manual_seed(15)
    table = torch.randn(1 + 5 * 5, 3, generator=gen, dtype=torch.float64)
    hw = [[4, 6], [2, 2], [6, 4]]
    forms = [hw, tuple(tuple(r) for r in hw), [[1, h, w] for h, w in hw], torch.tensor(hw, dtype=torch.int32),
             torch.tensor([[1, h, w] for h, w in hw]), torch.tensor(hw).t().contiguous().t(),
             torch.tensor([[h, 0, w] for h, w in hw])[:, ::2]]
    outs = [posext.resample_varlen(table, g, num_prefix_tokens=1, merge_size=2, max_length=max_length)
            for g in forms]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    torch.testing.assert_close(outs[0], oracle(table, (5, 5), 1, as_sizes(hw), merge_size=2,
                                               max_length=max_length), rtol=0, atol=1e-12)


@pytest.mark.parametrize("max_length", [None, 16])
def test_result_is_new_memory(backend, max_length):
    """Even when the target grid is the stored one (an identity resample), the result is not a view of the
    table: writing it leaves the table alone."""
    table = torch.randn(1, 4 * 4, 3, dtype=torch.float64)
    before = table.clone()
    out = posext.resample_varlen(table, [[4, 4]], mode="nearest", max_length=max_length)
    torch.testing.assert_close(out.reshape(16, 3), table[0], rtol=0, atol=0)
    out.fill_(7.0)
    assert torch.equal(table, before)

def test_align_corners_none_means_false():
    table = torch.randn(4 * 4, 3, dtype=torch.float64)
    for mode in ("bicubic", "bilinear", "nearest"):
        assert torch.equal(posext.resample_varlen(table, [[5, 7]], mode=mode, align_corners=None),
                           posext.resample_varlen(table, [[5, 7]], mode=mode, align_corners=False))

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
@pytest.mark.parametrize("max_length", [None, 200])
def test_half_precision_is_the_float32_oracle_rounded(backend, dtype, mode, antialias, align_corners,
                                                      max_length):
    """float16 / bfloat16 tables: computed in float32 and rounded once, so within one half-type ulp of the
    float32 oracle rounded to the half type."""
    gen = torch.Generator().manual_seed(5)
    table = (torch.randn(1 + 7 * 5, 16, generator=gen) * 3).to(dtype)
    sizes = [(1, 12, 10), (2, 4, 2), (1, 2, 14), (1, 12, 10)]
    out = posext.resample_varlen(table, sizes, old_size=(7, 5), num_prefix_tokens=1, mode=mode,
                                 antialias=antialias, align_corners=align_corners, max_length=max_length,
                                 merge_size=2)
    assert out.dtype == dtype and not out.isnan().any()
    expected = oracle(table.float(), (7, 5), 1, sizes, mode, antialias, align_corners, 2, max_length)
    ulp = 2.0 ** -10 if dtype == torch.float16 else 2.0 ** -7
    torch.testing.assert_close(out.float(), expected.to(dtype).float(), rtol=ulp, atol=1e-7)
    if max_length is not None:
        assert all(not out[i, t * h * w:].any() for i, (t, h, w) in enumerate(sizes))


# ------------------------------------------------------------------------------ add_pos_embed_varlen

@settings(max_examples=60, deadline=None)
@given(case=varlen_cases(), x_strided=st.booleans())
def test_add_matches_x_plus_oracle(backend, case, x_strided):
    table, values = make_table(case)
    gen = torch.Generator().manual_seed(case["seed"] + 1)
    shape = expected_shape(case)
    if x_strided:  # every other token of a longer x
        x = torch.randn(*shape[:-2], 2 * shape[-2], shape[-1], generator=gen,
                        dtype=torch.float64).to(case["dtype"])[..., ::2, :]
    else:
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(case["dtype"])
    x_before = x.clone()
    out = posext.add_pos_embed_varlen(x, table, make_grid_sizes(case), **table_kwargs(case))
    assert out.shape == x.shape and out.dtype == x.dtype and not out.isnan().any()
    assert torch.equal(x, x_before), "x must not be written"
    if case["dtype"] == torch.float64:
        torch.testing.assert_close(out, x + case_oracle(values, case, torch.float64), rtol=0, atol=1e-12)
    else:
        torch.testing.assert_close(out, x + case_oracle(values, case, torch.float32), rtol=0, atol=1e-5)
    if case["max_length"] is not None:
        for i, (t, h, w) in enumerate(case["sizes"]):
            assert torch.equal(out[i, t * h * w:], x[i, t * h * w:]), "padding rows of x come back unchanged"


def test_add_packed_and_padded_explicit():
    gen = torch.Generator().manual_seed(6)
    table = torch.randn(1, 1 + 4 * 4, 8, generator=gen, dtype=torch.float64)
    sizes = [[1, 6, 6], [2, 2, 4], [1, 2, 2]]
    rows = oracle(table[0], (4, 4), 1, as_sizes(sizes), merge_size=2)
    x = torch.randn(36 + 16 + 4, 8, generator=gen, dtype=torch.float64)
    out = posext.add_pos_embed_varlen(x, table, sizes, num_prefix_tokens=1, merge_size=2)
    torch.testing.assert_close(out, x + rows, rtol=0, atol=1e-12)
    xp = torch.randn(3, 40, 8, generator=gen, dtype=torch.float64)
    outp = posext.add_pos_embed_varlen(xp, table, torch.tensor(sizes, dtype=torch.int32), num_prefix_tokens=1,
                                       merge_size=2)
    torch.testing.assert_close(outp, xp + oracle(table[0], (4, 4), 1, as_sizes(sizes), merge_size=2,
                                                 max_length=40), rtol=0, atol=1e-12)
    for i, n in enumerate([36, 16, 4]):
        assert torch.equal(outp[i, n:], xp[i, n:])


@pytest.mark.parametrize("x_dtype,table_dtype", [(torch.float32, torch.float64),
                                                 (torch.float64, torch.float32),
                                                 (torch.bfloat16, torch.float32)])
def test_add_with_other_dtypes_promotes(x_dtype, table_dtype):
    """x and pos_embed of different dtypes: x + resample_varlen(pos_embed) with PyTorch's type promotion."""
    gen = torch.Generator().manual_seed(7)
    table = torch.randn(3 * 3, 4, generator=gen, dtype=torch.float64).to(table_dtype)
    x = torch.randn(2, 30, 4, generator=gen, dtype=torch.float64).to(x_dtype)
    out = posext.add_pos_embed_varlen(x, table, [[5, 6], [2, 2]], mode="bilinear")
    expected = x + posext.resample_varlen(table, [[5, 6], [2, 2]], mode="bilinear", max_length=30)
    assert out.dtype == torch.promote_types(x_dtype, table_dtype) == expected.dtype
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------ gradients

GRAD_SIZES = {1: [(1, 5, 1), (2, 1, 3), (1, 3, 4), (1, 5, 1)], 2: [(2, 2, 4), (1, 4, 2), (1, 2, 2)]}


@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
@pytest.mark.parametrize("merge_size", [1, 2])
@pytest.mark.parametrize("padded", [False, True])
def test_gradcheck_wrt_table(mode, antialias, align_corners, merge_size, padded):
    table = torch.randn(1 + 3 * 4, 2, dtype=torch.float64, requires_grad=True)
    sizes = GRAD_SIZES[merge_size]
    kwargs = dict(old_size=(3, 4), num_prefix_tokens=1, mode=mode, antialias=antialias,
                  align_corners=align_corners, merge_size=merge_size, max_length=17 if padded else None)
    assert torch.autograd.gradcheck(lambda t: posext.resample_varlen(t, sizes, **kwargs), (table,),
                                    fast_mode=True)


@pytest.mark.parametrize("mode,antialias,align_corners", [("bicubic", False, False), ("bilinear", True, True),
                                                          ("nearest", False, False)])
@pytest.mark.parametrize("padded", [False, True])
def test_gradcheck_add_wrt_x_and_table(mode, antialias, align_corners, padded):
    table = torch.randn(1, 2 + 3 * 3, 3, dtype=torch.float64, requires_grad=True)
    sizes = torch.tensor(GRAD_SIZES[2])
    shape = (3, 17, 3) if padded else (16 + 8 + 4, 3)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

    def f(x, t):
        return posext.add_pos_embed_varlen(x, t, sizes, num_prefix_tokens=2, mode=mode, antialias=antialias,
                                           align_corners=align_corners, merge_size=2)

    assert torch.autograd.gradcheck(f, (x, table), fast_mode=True)


@pytest.mark.parametrize("mode,antialias,align_corners,layout",
                         [combo + ("unbatched",) for combo in COMBOS]
                         + [("bicubic", True, False, "batched"), ("bilinear", False, True, "nhwc")])
@pytest.mark.parametrize("padded", [False, True])
def test_gradient_matches_oracle_autograd(backend, mode, antialias, align_corners, layout, padded):
    """The table's gradient (prefix rows: exactly zero) is the oracle's autograd gradient; an upstream
    gradient on the padding rows reaches nothing."""
    gen = torch.Generator().manual_seed(8)
    prefix = 0 if layout == "nhwc" else 2
    old_hw = (5, 7)
    values = torch.randn(prefix + 35, 6, generator=gen, dtype=torch.float64)
    shape = {"unbatched": (prefix + 35, 6), "batched": (1, prefix + 35, 6), "nhwc": (1, 5, 7, 6)}[layout]
    table = values.reshape(shape).clone().requires_grad_()
    sizes = [(1, 9, 4), (3, 2, 2), (1, 1, 8), (1, 9, 4), (2, 3, 10)]
    max_length = 70 if padded else None
    out = posext.resample_varlen(table, sizes, old_size=old_hw, num_prefix_tokens=prefix, mode=mode,
                                 antialias=antialias, align_corners=align_corners, merge_size=1,
                                 max_length=max_length)
    upstream = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    ours, = torch.autograd.grad(out, table, upstream)
    assert ours.shape == table.shape
    ours = ours.reshape(prefix + 35, 6)
    leaf = values.clone().requires_grad_()
    expected = oracle(leaf, old_hw, prefix, sizes, mode, antialias, align_corners, 1, max_length)
    theirs, = torch.autograd.grad(expected, leaf, upstream)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    assert torch.equal(ours[:prefix], torch.zeros(prefix, 6, dtype=torch.float64))


@pytest.mark.parametrize("padded", [False, True])
def test_add_gradient_matches_oracle_autograd(backend, padded):
    gen = torch.Generator().manual_seed(9)
    values = torch.randn(1 + 6 * 6, 4, generator=gen, dtype=torch.float64)
    table = values.clone().requires_grad_()
    sizes = [(2, 4, 4), (1, 8, 2), (1, 4, 4)]
    shape = (3, 40, 4) if padded else (32 + 16 + 16, 4)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    out = posext.add_pos_embed_varlen(x, table, sizes, num_prefix_tokens=1, antialias=True, merge_size=2)
    upstream = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    gx, gt = torch.autograd.grad(out, (x, table), upstream)
    assert torch.equal(gx, upstream), "x's gradient is the upstream gradient, unchanged"
    leaf = values.clone().requires_grad_()
    expected = oracle(leaf, (6, 6), 1, sizes, antialias=True, merge_size=2, max_length=40 if padded else None)
    theirs, = torch.autograd.grad(expected, leaf, upstream)
    torch.testing.assert_close(gt, theirs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("padded", [False, True])
def test_backward_is_bitwise_repeatable(backend, dtype, padded):
    """Many images of one size write the same table rows: the gradient must not depend on the order in which
    they are summed."""
    gen = torch.Generator().manual_seed(10)
    table = torch.randn(1, 1 + 16 * 16, 32, generator=gen).to(dtype).requires_grad_()
    sizes = torch.tensor([[1, 24, 24], [2, 10, 14], [1, 24, 24], [3, 4, 4], [1, 24, 24], [1, 2, 30]])
    max_length = 600 if padded else None
    out = posext.resample_varlen(table, sizes, num_prefix_tokens=1, antialias=True, merge_size=2,
                                 max_length=max_length)
    upstream = torch.randn(out.shape, generator=gen).to(dtype)
    grads = []
    for _ in range(2):
        out = posext.resample_varlen(table, sizes, num_prefix_tokens=1, antialias=True, merge_size=2,
                                     max_length=max_length)
        grads.append(torch.autograd.grad(out, table, upstream)[0])
    assert torch.equal(grads[0], grads[1])
    assert not grads[0].isnan().any()


# One call per setting whose images take every evaluation order of the CPU kernels (docs/resampling.md): from
# an 8 x 24 table, (32, 6) is upsampled in y and downsampled in x (columns first; backward along y), (4, 48)
# the other way round (rows first; along x); (8, 48) keeps y (one y tap: direct), as does non-AA bilinear
# (6, 18) (two taps each way: direct).
ORDER_SIZES = [(1, 32, 6), (2, 4, 48), (1, 8, 48), (2, 32, 6), (1, 6, 18)]


@pytest.mark.parametrize("mode,antialias", [("bilinear", True), ("bilinear", False), ("bicubic", True)])
@pytest.mark.parametrize("merge_size", [1, 2])
@pytest.mark.parametrize("padded", [False, True])
def test_every_evaluation_order_matches_oracle(mode, antialias, merge_size, padded):
    """Rows and the table's gradient against the oracle for images of each evaluation order, with frames and
    merge order; the float32 gradient is bitwise the same on one thread and on several."""
    gen = torch.Generator().manual_seed(12)
    sizes = [s for s in ORDER_SIZES if s[1] % merge_size == 0 and s[2] % merge_size == 0]
    values = torch.randn(1 + 8 * 24, 5, generator=gen, dtype=torch.float64)
    max_length = 400 if padded else None
    kwargs = dict(old_size=(8, 24), num_prefix_tokens=1, mode=mode, antialias=antialias,
                  merge_size=merge_size, max_length=max_length)
    table = values.clone().requires_grad_()
    out = posext.resample_varlen(table, sizes, **kwargs)
    leaf = values.clone().requires_grad_()
    expected = oracle(leaf, (8, 24), 1, sizes, mode, antialias, False, merge_size, max_length)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    upstream = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    ours, = torch.autograd.grad(out, table, upstream)
    theirs, = torch.autograd.grad(expected, leaf, upstream)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    table32 = values.float().requires_grad_()
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            out32 = posext.resample_varlen(table32, sizes, **kwargs)
            grads.append(torch.autograd.grad(out32, table32, upstream.float())[0])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1])


# ------------------------------------------------------------------------------ edge cases

@pytest.mark.parametrize("grid_sizes", [[], torch.zeros(0, 2, dtype=torch.int64),
                                        torch.zeros(0, 3, dtype=torch.int32)], ids=["list", "b2", "b3"])
@pytest.mark.parametrize("max_length", [None, 0, 5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_empty_batch(backend, grid_sizes, max_length, dtype):
    table = torch.randn(1, 1 + 4 * 4, 6).to(dtype)
    out = posext.resample_varlen(table, grid_sizes, num_prefix_tokens=1, max_length=max_length)
    assert out.shape == ((0, 6) if max_length is None else (0, max_length, 6)) and out.dtype == dtype
    x = torch.randn(out.shape).to(dtype)
    added = posext.add_pos_embed_varlen(x, table, grid_sizes, num_prefix_tokens=1)
    assert added.shape == x.shape and added.dtype == dtype


@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
@pytest.mark.parametrize("layout", ["unbatched", "nhwc"])
def test_one_by_one_table_fills_every_row(backend, mode, antialias, align_corners, layout):
    """A 1x1 grid: every resampled row is that one row (all weights of a row sum to 1)."""
    gen = torch.Generator().manual_seed(11)
    values = torch.randn(2, 5, generator=gen, dtype=torch.float64)  # a class token, then the 1x1 grid
    table = values if layout == "unbatched" else values[1:].reshape(1, 1, 1, 5)
    prefix = 1 if layout == "unbatched" else 0
    sizes = [[1, 1], [3, 5], [1, 1], [6, 2]]
    out = posext.resample_varlen(table, sizes, num_prefix_tokens=prefix, mode=mode, antialias=antialias,
                                 align_corners=align_corners)
    assert out.shape == (1 + 15 + 1 + 12, 5)
    torch.testing.assert_close(out, values[1:].expand(29, 5), rtol=0, atol=1e-12)
    padded = posext.resample_varlen(table, sizes, num_prefix_tokens=prefix, mode=mode, antialias=antialias,
                                    align_corners=align_corners, max_length=15, merge_size=1)
    torch.testing.assert_close(padded, oracle(values, (1, 1), 1, as_sizes(sizes), mode, antialias,
                                              align_corners, 1, 15), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
def test_one_by_one_targets(backend, mode, antialias, align_corners):
    gen = torch.Generator().manual_seed(12)
    table = torch.randn(9 * 6, 3, generator=gen, dtype=torch.float64)
    for grid_sizes in ([[1, 1], [1, 1]], [[2, 1, 1], [1, 1, 1]]):
        for max_length in (None, 1 if len(grid_sizes[0]) == 2 else 2):
            out = posext.resample_varlen(table, grid_sizes, old_size=(9, 6), mode=mode, antialias=antialias,
                                         align_corners=align_corners, max_length=max_length)
            expected = oracle(table, (9, 6), 0, as_sizes(grid_sizes), mode, antialias, align_corners, 1,
                              max_length)
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_no_channels(backend):
    table = torch.randn(1 + 3 * 3, 0)
    assert posext.resample_varlen(table, [[2, 5], [1, 1]], num_prefix_tokens=1).shape == (11, 0)
    assert posext.resample_varlen(table, [[2, 5]], num_prefix_tokens=1, max_length=12).shape == (1, 12, 0)



# ------------------------------------------------------------------------------ bad input

TABLE = torch.zeros(1 + 4 * 4, 8)


def rv(grid_sizes, **kwargs):
    return posext.resample_varlen(kwargs.pop("pos_embed", TABLE), grid_sizes,
                                  num_prefix_tokens=kwargs.pop("num_prefix_tokens", 1), **kwargs)


def add(x, grid_sizes, **kwargs):
    return posext.add_pos_embed_varlen(x, kwargs.pop("pos_embed", TABLE), grid_sizes, num_prefix_tokens=1,
                                       **kwargs)


@pytest.mark.parametrize("call,exc,words", [
    # an image longer than max_length
    (lambda: rv([[2, 2], [3, 3]], max_length=8), ValueError, ["max_length=8", "image 1", "9 tokens"]),
    (lambda: rv([[2, 3, 3]], max_length=17), ValueError, ["max_length=17", "image 0", "18 tokens"]),
    (lambda: rv([[1, 1]], max_length=0), ValueError, ["max_length=0", "image 0"]),
    (lambda: rv([[2, 2]], max_length=-1), ValueError, ["max_length", "-1"]),
    (lambda: rv([[2, 2]], max_length=4.0), TypeError, ["max_length", "float"]),
    # merge_size must divide h and w
    (lambda: rv([[4, 4], [3, 4]], merge_size=2), ValueError, ["merge_size=2", "(3, 4)", "image 1"]),
    (lambda: rv(torch.tensor([[1, 4, 6]]), merge_size=4), ValueError, ["merge_size=4", "(4, 6)"]),
    (lambda: rv([[4, 4]], merge_size=0), ValueError, ["merge_size", "> 0"]),
    (lambda: rv([[4, 4]], merge_size=2.0), TypeError, ["merge_size", "float"]),
    # sizes must be >= 1
    (lambda: rv([[2, 2], [0, 3]]), ValueError, ["grid_sizes", ">= 1", "image 1"]),
    (lambda: rv([[2, -1]]), ValueError, ["grid_sizes", ">= 1", "(1, 2, -1)"]),
    (lambda: rv(torch.tensor([[0, 2, 2]])), ValueError, ["grid_sizes", ">= 1", "(0, 2, 2)"]),
    (lambda: rv(torch.tensor([[-3, 2]], dtype=torch.int32)), ValueError, ["grid_sizes", ">= 1"]),
    # grid_sizes shape and type
    (lambda: rv(torch.tensor([3, 4])), ValueError, ["grid_sizes", "(2,)"]),
    (lambda: rv(torch.ones(2, 4, dtype=torch.int64)), ValueError, ["grid_sizes", "(2, 4)"]),
    (lambda: rv(torch.ones(2, 1, dtype=torch.int64)), ValueError, ["grid_sizes", "(2, 1)"]),
    (lambda: rv(torch.ones(2, 2, 1, dtype=torch.int64)), ValueError, ["grid_sizes", "(2, 2, 1)"]),
    (lambda: rv([[1, 2, 3, 4]]), ValueError, ["grid_sizes", "(1, 4)"]),
    (lambda: rv([[2, 3], [1, 2, 3]]), ValueError, ["grid_sizes", "[2, 3]"]),
    (lambda: rv(torch.tensor([[2.0, 3.0]])), TypeError, ["grid_sizes", "float32"]),
    (lambda: rv(torch.tensor([[2, 3]], dtype=torch.float64)), TypeError, ["grid_sizes", "float64"]),
    (lambda: rv(torch.tensor([[True, True]])), TypeError, ["grid_sizes", "bool"]),
    (lambda: rv([[2.0, 3]]), TypeError, ["grid_sizes", "2.0"]),
    (lambda: rv([[True, 3]]), TypeError, ["grid_sizes"]),
    (lambda: rv(5), TypeError, ["grid_sizes", "int"]),
    # the table
    (lambda: rv([[2, 2]], pos_embed=torch.zeros(2, 17, 8)), ValueError, ["pos_embed", "(2, 17, 8)", "batch"]),
    (lambda: rv([[2, 2]], pos_embed=torch.zeros(2, 4, 4, 8), num_prefix_tokens=0), ValueError,
     ["pos_embed", "(2, 4, 4, 8)"]),
    (lambda: rv([[2, 2]], pos_embed=torch.zeros(17, 8, dtype=torch.int64)), TypeError, ["pos_embed.dtype"]),
    (lambda: rv([[2, 2]], pos_embed=torch.zeros(17, 8, dtype=torch.complex64)), TypeError,
     ["pos_embed.dtype"]),
    (lambda: rv([[2, 2]], pos_embed=[[0.0] * 8] * 17), TypeError, ["pos_embed", "tensor"]),
    (lambda: rv([[2, 2]], pos_embed=torch.zeros(17)), ValueError, ["pos_embed", "(17,)"]),
    (lambda: rv([[2, 2]], num_prefix_tokens=0), ValueError, ["17", "old_size"]),
    (lambda: rv([[2, 2]], old_size=(3, 5)), ValueError, ["old_size", "15"]),
    (lambda: rv([[2, 2]], num_prefix_tokens=-1), ValueError, ["num_prefix_tokens", "-1"]),
    (lambda: rv([[2, 2]], pos_embed=torch.zeros(1, 4, 4, 8), num_prefix_tokens=1), ValueError,
     ["NHWC", "num_prefix_tokens"]),
    # mode and flags
    (lambda: rv([[2, 2]], mode="area"), ValueError, ["mode", "'area'"]),
    (lambda: rv([[2, 2]], mode="nearest", antialias=True), ValueError, ["nearest", "antialias"]),
    (lambda: rv([[2, 2]], mode="nearest", align_corners=True), ValueError, ["nearest", "align_corners"]),
    (lambda: rv([[2, 2]], antialias=1), TypeError, ["antialias"]),
    (lambda: rv([[2, 2]], align_corners="yes"), TypeError, ["align_corners"]),
    # x of add_pos_embed_varlen
    (lambda: add([1.0] * 8, [[2, 2]]), TypeError, ["x", "tensor"]),
    (lambda: add(torch.zeros(8), [[2, 2]]), ValueError, ["x", "(8,)"]),
    (lambda: add(torch.zeros(1, 1, 4, 8), [[2, 2]]), ValueError, ["x", "(1, 1, 4, 8)"]),
    (lambda: add(torch.zeros(5, 8), [[2, 2]]), ValueError, ["x", "[4, 8]", "(5, 8)"]),
    (lambda: add(torch.zeros(4, 7), [[2, 2]]), ValueError, ["x", "[4, 8]", "(4, 7)"]),
    (lambda: add(torch.zeros(2, 4, 8), [[2, 2]]), ValueError, ["x", "[1, 4, 8]", "(2, 4, 8)"]),
    (lambda: add(torch.zeros(1, 6, 7), [[2, 2]]), ValueError, ["x", "[1, 6, 8]", "(1, 6, 7)"]),
    (lambda: add(torch.zeros(1, 3, 8), [[2, 2]]), ValueError, ["4 tokens", "x of shape (1, 3, 8)"]),
    (lambda: add(torch.zeros(4, 8, dtype=torch.int64), [[2, 2]]), TypeError, ["x.dtype"]),
    (lambda: add(torch.zeros(4, 8), [[2, 2]], pos_embed=[[0.0] * 8] * 17), TypeError,
     ["pos_embed", "tensor"]),
    # sizes too large: refused by name, never wrapped around or allocated
    (lambda: rv([[2 ** 32, 2 ** 32]], max_length=1), ValueError, ["max_length=1", "18446744073709551616"]),
    (lambda: rv([[2 ** 20, 2 ** 20]]), ValueError, ["grid_sizes", "bytes"]),
    (lambda: rv([[2 ** 70, 1]]), ValueError, ["grid_sizes", "int64"]),
    (lambda: rv([3, 4]), ValueError, ["grid_sizes", "(2,)"]),
])
def test_bad_input_is_a_clear_error(backend, call, exc, words):
    assert_error_names(call, exc, words)


def test_an_empty_batch_stays_in_the_graph(backend):
    table = TABLE.clone().requires_grad_()
    for out in (posext.resample_varlen(table, [], num_prefix_tokens=1),
                posext.resample_varlen(table, [], num_prefix_tokens=1, max_length=3)):
        assert out.numel() == 0 and out.requires_grad


def test_x_on_another_device_is_refused():
    """meta stands in for a second device on a CPU-only machine."""
    assert_error_names(lambda: add(torch.zeros(4, 8, device="meta"), [[2, 2]]), ValueError,
                       ["x", "pos_embed", "device", "meta", "cpu"])


@pytest.mark.cuda
def test_x_on_cuda_table_on_cpu_is_refused():
    assert_error_names(lambda: add(torch.zeros(4, 8, device="cuda"), [[2, 2]]), ValueError,
                       ["x", "pos_embed", "device", "cuda", "cpu"])


# ------------------------------------------------------------------------------ torch.compile and backends

@pytest.mark.xfail(not FUSED_OP, strict=True, raises=torch._dynamo.exc.TorchDynamoException,
                   reason="the image-by-image path reads grid_sizes on the host (a graph break); the fused "
                          "op takes the padded form whole")
def test_compile_fullgraph_padded_with_tensor_grid_sizes():
    torch._dynamo.reset()

    def fwd(x, table, grid_sizes):
        out = posext.add_pos_embed_varlen(x, table, grid_sizes, num_prefix_tokens=1, merge_size=2)
        return out * 2 + posext.resample_varlen(table, grid_sizes, num_prefix_tokens=1, max_length=x.shape[1],
                                                mode="bilinear", antialias=True)

    compiled = torch.compile(fwd, fullgraph=True, backend="aot_eager")
    gen = torch.Generator().manual_seed(13)
    table = torch.randn(1, 1 + 6 * 6, 8, generator=gen, requires_grad=True)
    x = torch.randn(3, 64, 8, generator=gen, requires_grad=True)
    for rows in ([[1, 8, 8], [2, 4, 6], [1, 2, 2]], [[3, 2, 10], [1, 4, 4], [2, 6, 4]]):
        grid_sizes = torch.tensor(rows)
        out = compiled(x, table, grid_sizes)
        expected = fwd(x, table, grid_sizes)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
        upstream = torch.randn(out.shape, generator=gen)
        ours = torch.autograd.grad(out, (x, table), upstream)
        theirs = torch.autograd.grad(expected, (x, table), upstream)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


BACKEND_CASES = """
import torch, posext

def compute():
    gen = torch.Generator().manual_seed(14)
    results = []
    for dtype in (torch.float64, torch.float32):
        table = torch.randn(1, 2 + 7 * 5, 6, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
        for mode, antialias, align_corners in [("bicubic", False, False), ("bicubic", True, True),
                                               ("bilinear", True, False), ("nearest", False, False)]:
            for max_length in (None, 120):
                sizes = torch.tensor([[1, 10, 12], [2, 4, 2], [1, 2, 20], [3, 6, 6]])
                out = posext.resample_varlen(table, sizes, old_size=(7, 5), num_prefix_tokens=2, mode=mode,
                                             antialias=antialias, align_corners=align_corners,
                                             max_length=max_length, merge_size=2)
                upstream = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
                results += [out.detach(), torch.autograd.grad(out, table, upstream)[0]]
    return results
"""


def test_python_backend_agrees_with_default_backend(tmp_path):
    """The same calls under POSEXT_BACKEND=python (a fresh process) and in this process (the extension when
    it is built): forward and table gradient."""
    path = tmp_path / "python_backend.pt"
    code = BACKEND_CASES + f"\nassert posext.backend() == 'python'\ntorch.save(compute(), {str(path)!r})\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": ROOT, "POSEXT_BACKEND": "python"})
    assert result.returncode == 0, result.stderr
    theirs = torch.load(path)
    namespace = {}
    exec(BACKEND_CASES, namespace)
    ours = namespace["compute"]()
    assert len(ours) == len(theirs) == 32
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        tol = 1e-12 if a.dtype == torch.float64 else 1e-5
        torch.testing.assert_close(a, b, rtol=0, atol=tol)


@pytest.mark.parametrize("max_length", [None, 40])
def test_repeated_sizes_with_a_gradient_match_the_oracle(backend, max_length):
    """Repeated grids and frames with a gradient to take: the rows and the table's gradient equal the
    oracle's, and the backward is repeatable bit for bit."""
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(1 + 36, 5, dtype=torch.float64, generator=gen).requires_grad_()
    sizes = [(1, 3, 4), (2, 3, 4), (1, 5, 2), (1, 3, 4), (3, 5, 2)]
    kwargs = dict(num_prefix_tokens=1, mode="bicubic", antialias=True, max_length=max_length)
    out = posext.resample_varlen(table, sizes, **kwargs)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    (got,) = torch.autograd.grad(out, table, grad)
    (again,) = torch.autograd.grad(posext.resample_varlen(table, sizes, **kwargs), table, grad)
    assert torch.equal(got, again)
    ref_table = table.detach().clone().requires_grad_()
    ref = torch.cat if max_length is None else torch.stack
    rows = []
    for t, h, w in sizes:
        grid = ref_table[1:].reshape(1, 6, 6, 5).permute(0, 3, 1, 2)
        r = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        r = r[0].permute(1, 2, 0).reshape(h * w, 5).repeat(t, 1)
        if max_length is not None:
            r = torch.cat([r, r.new_zeros(max_length - t * h * w, 5)])
        rows.append(r)
    want = ref(rows)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    (want_grad,) = torch.autograd.grad(want, ref_table, grad)
    torch.testing.assert_close(got, want_grad, rtol=0, atol=1e-10)
