"""posext.factorized_pos_embed: NaViT / Pix2struct factorized absolute positions, against a float64 reference
written here from the definition (per-token tap lists built with plain loops, turned into dense weight
matrices).

Positions: grid_size (row-major y = i // W, x = i % W), grid_sizes (packed NaViT sequence, image after image,
each with its own prefix tokens), coords (fractional (y, x) in [0, 1], p = c * (L - 1), linear / bilinear
interpolation between rows floor(p) and min(floor(p) + 1, L - 1)). Tables: sum (x + ty[y] + tx[x]), concat
(x + cat(ty[y], tx[x])), 2-D Pix2struct (x + t[y, x]).

Tolerances (unit-scale N(0,1) data): float64 <= 1e-12 max abs; float32 <= 1e-6 on integer positions and
<= 1e-5 with fractional coords (a float32 kernel rounds p = c * (L - 1), which moves the weights by
~1e-7 * L);
float16 / bfloat16 within one ulp of the float64 result rounded once (the op computes in float32).
Prefix tokens must come back bit for bit. Outputs are poisoned: every test runs with torch's deterministic
mode, which fills fresh tensors with NaN, so an element a kernel leaves unwritten fails the comparison.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import posext
from tests.conftest import DEVICES, assert_error_names

pytestmark = pytest.mark.usefixtures("poison_outputs")


# ------------------------------------------------------------------------------ float64 reference

def interp_taps(c: float, length: int):
    """[(row, weight)] for the fractional coordinate c in [0, 1] on a table of `length` rows."""
    p = float(c) * (length - 1)
    i0 = int(math.floor(p))
    f = p - i0
    i1 = min(i0 + 1, length - 1)
    return [(i0, 1.0 - f), (i1, f)]


def grid_taps(h, w, prefix):
    """Per token: None for a prefix token, else ([(y, 1)], [(x, 1)]), grid tokens row-major."""
    return [None] * prefix + [([(i // w, 1.0)], [(i % w, 1.0)]) for i in range(h * w)]


def packed_taps(sizes, prefix):
    taps = []
    for h, w in sizes:
        taps += grid_taps(h, w, prefix)
    return taps


def coord_taps(coords, ly, lx, prefix):
    """coords: (x, y) pairs in [0, 1]."""
    return [None] * prefix + [(interp_taps(cy, ly), interp_taps(cx, lx)) for cx, cy in coords]


def weight_matrices(taps, ly, lx):
    """Dense [T, Ly], [T, Lx] (factorized) and [T, Ly*Lx] (2-D, bilinear = outer product of the taps)."""
    n = len(taps)
    wy, wx, w2 = np.zeros((n, ly)), np.zeros((n, lx)), np.zeros((n, ly * lx))
    for t, tap in enumerate(taps):
        if tap is None:
            continue
        ytaps, xtaps = tap
        for iy, a in ytaps:
            wy[t, iy] += a
            for ix, b in xtaps:
                w2[t, iy * lx + ix] += a * b
        for ix, b in xtaps:
            wx[t, ix] += b
    return tuple(torch.from_numpy(m) for m in (wy, wx, w2))


def reference(x, table_y, table_x, taps, combine="sum"):
    """float64 x + embedding; x [..., T, C]; differentiable in x and the tables (autograd gives the reference
    gradients). Prefix rows get a zero embedding."""
    x, table_y = x.double(), table_y.double()
    if table_x is None:  # Pix2struct 2-D table [Ly, Lx, C]
        ly, lx, c = table_y.shape
        _, _, w2 = weight_matrices(taps, ly, lx)
        emb = w2 @ table_y.reshape(ly * lx, c)
    else:
        table_x = table_x.double()
        wy, wx, _ = weight_matrices(taps, table_y.shape[0], table_x.shape[0])
        ey, ex = wy @ table_y, wx @ table_x
        emb = ey + ex if combine == "sum" else torch.cat([ey, ex], dim=-1)
    return x + emb


# ------------------------------------------------------------------------------ inputs

def randn(shape, gen, dtype, device, layout="contiguous"):
    """N(0,1) data made in float64, cast once. layout: contiguous, channel_step (every other channel of a
    wider tensor) or token_major (a [T, B, C] tensor transposed to [B, T, C])."""
    shape = tuple(shape)
    if layout == "channel_step" and len(shape) >= 1:
        base = torch.randn(*shape[:-1], 2 * shape[-1], generator=gen, dtype=torch.float64)
        return base.to(dtype).to(device)[..., ::2]
    if layout == "token_major" and len(shape) == 3:
        base = torch.randn(shape[1], shape[0], shape[2], generator=gen, dtype=torch.float64)
        return base.to(dtype).to(device).transpose(0, 1)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(device)


def make_tables(tables, ly, lx, channels, cy, gen, dtype, device, strided=False):
    layout = "channel_step" if strided else "contiguous"
    if tables == "2d":
        return randn((ly, lx, channels), gen, dtype, device, layout), None
    cx = channels if tables == "sum" else channels - cy
    cy = channels if tables == "sum" else cy
    return randn((ly, cy), gen, dtype, device, layout), randn((lx, cx), gen, dtype, device, layout)


def call(x, table_y, table_x, tables, kind, value, prefix):
    kwargs = {kind: value, "num_prefix_tokens": prefix}
    if tables != "2d":
        kwargs["combine"] = tables
    return posext.factorized_pos_embed(x, table_y, table_x, **kwargs)


@st.composite
def coord_lists(draw, n, ly, lx):
    def one(length):
        grid_point = st.integers(0, length - 1).map(lambda k: k / (length - 1) if length > 1 else 0.0)
        return draw(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0]), grid_point))

    return [(one(lx), one(ly)) for _ in range(n)]  # (x, y)


@st.composite
def cases(draw):
    tables = draw(st.sampled_from(["sum", "concat", "2d"]))
    kind = draw(st.sampled_from(["grid_size", "grid_sizes", "coords"]))
    prefix = draw(st.integers(0, 2))
    channels = draw(st.integers(2 if tables == "concat" else 1, 9))
    cy = draw(st.integers(1, channels - 1)) if tables == "concat" else channels
    if kind == "grid_size":
        h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
        value = h if h == w and draw(st.booleans()) else (h, w)
        ly, lx = h + draw(st.integers(0, 3)), w + draw(st.integers(0, 3))
        taps = grid_taps(h, w, prefix)
    elif kind == "grid_sizes":
        value = draw(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8)), min_size=1, max_size=4))
        ly = max(h for h, _ in value) + draw(st.integers(0, 3))
        lx = max(w for _, w in value) + draw(st.integers(0, 3))
        taps = packed_taps(value, prefix)
    else:
        ly, lx = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        value = draw(coord_lists(draw(st.integers(1, 12)), ly, lx))
        taps = coord_taps(value, ly, lx, prefix)
    if kind == "grid_sizes":
        layout = draw(st.sampled_from(["packed", "packed_batch1"]))
        batch = 1
    else:
        layout = draw(st.sampled_from(["batched", "unbatched"]))
        batch = draw(st.integers(0, 3)) if layout == "batched" else 1
    return dict(tables=tables, kind=kind, value=value, prefix=prefix, channels=channels, cy=cy, ly=ly, lx=lx,
                taps=taps, layout=layout, batch=batch,
                x_layout=draw(st.sampled_from(["contiguous", "channel_step", "token_major"])),
                strided_tables=draw(st.booleans()),
                dtype=draw(st.sampled_from([torch.float64, torch.float32])),
                seed=draw(st.integers(0, 2**16)))


def make_case(case, device="cpu", dtype=None):
    """(x in the case's layout, x as [B, T, C], table_y, table_x, the call's position argument)."""
    dtype = dtype or case["dtype"]
    gen = torch.Generator().manual_seed(case["seed"])
    n_tokens = len(case["taps"])
    x3 = randn((case["batch"], n_tokens, case["channels"]), gen, dtype, device, case["x_layout"])
    x = x3[0] if case["layout"] in ("unbatched", "packed") else x3
    ty, tx = make_tables(case["tables"], case["ly"], case["lx"], case["channels"], case["cy"], gen, dtype,
                         device, case["strided_tables"])
    value = case["value"]
    if case["kind"] == "coords":
        cdtype = torch.float64 if dtype == torch.float64 else torch.float32
        value = torch.tensor(value, dtype=cdtype, device=device).reshape(-1, 2)
    return x, x3, ty, tx, value


# ------------------------------------------------------------------------------ forward parity

@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=120, deadline=None)
@given(case=cases())
def test_random_cases_match_reference(device, backend, case):
    x, x3, ty, tx, value = make_case(case, device)
    x_before = x.clone()
    p = case["prefix"]
    out = call(x, ty, tx, case["tables"], case["kind"], value, p)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(x, x_before), "x must not be modified"
    if out.numel():
        assert out.data_ptr() != x.data_ptr(), "a new tensor"
    out3 = (out.unsqueeze(0) if case["layout"] in ("unbatched", "packed") else out).cpu()
    assert not out3.isnan().any(), "unwritten (NaN-poisoned) elements"
    for t, tap in enumerate(case["taps"]):  # every prefix token of every image, bit for bit
        if tap is None:
            assert torch.equal(out3[:, t], x3[:, t].cpu()), f"prefix token {t} changed"
    tx_cpu = tx.cpu() if tx is not None else None
    expected = reference(x3.cpu(), ty.cpu(), tx_cpu, case["taps"], case["tables"])
    if case["dtype"] == torch.float64:
        tol = 1e-12
    else:
        tol = 1e-5 if case["kind"] == "coords" else 1e-6
    torch.testing.assert_close(out3.double(), expected, rtol=0, atol=tol)

    # gradients to x (identity) and the tables (sum over batch and tokens), against autograd on the reference
    xg, tyg = x.detach().requires_grad_(), ty.detach().requires_grad_()
    txg = tx.detach().requires_grad_() if tx is not None else None
    out = call(xg, tyg, txg, case["tables"], case["kind"], value, p)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(case["seed"] + 1),
                       dtype=torch.float64).to(out.dtype).to(device)
    inputs = [xg, tyg] + ([txg] if txg is not None else [])
    ours = torch.autograd.grad(out, inputs, grad)
    x_ref = x.detach().cpu().double().requires_grad_()
    ty_ref = ty.detach().cpu().double().requires_grad_()
    tx_ref = tx.detach().cpu().double().requires_grad_() if tx is not None else None
    x_ref3 = x_ref.unsqueeze(0) if case["layout"] in ("unbatched", "packed") else x_ref
    ref_out = reference(x_ref3, ty_ref, tx_ref, case["taps"], case["tables"])
    ref_out = ref_out[0] if case["layout"] in ("unbatched", "packed") else ref_out
    theirs = torch.autograd.grad(ref_out, [x_ref, ty_ref] + ([tx_ref] if tx_ref is not None else []),
                                 grad.cpu().double())
    gtol = 1e-12 if case["dtype"] == torch.float64 else 2e-5
    for name, a, b in zip(["x", "table_y", "table_x"], ours, theirs):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a.cpu().double(), b, rtol=0, atol=gtol, msg=lambda m: f"grad {name}: {m}")
    assert torch.equal(ours[0].cpu(), grad.cpu()), "the gradient to x is the identity"


@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
@pytest.mark.parametrize("hw,table_hw", [((14, 14), (14, 14)), ((1, 1), (1, 1)), ((1, 1), (4, 3)),
                                         ((3, 7), (5, 9)), ((7, 3), (7, 3)), ((16, 9), (24, 24))])
@pytest.mark.parametrize("prefix", [0, 1, 5])
@pytest.mark.parametrize("device", DEVICES)
def test_explicit_grids(device, backend, tables, hw, table_hw, prefix):
    gen = torch.Generator().manual_seed(3)
    c = 16
    x = randn((2, prefix + hw[0] * hw[1], c), gen, torch.float32, "cpu")
    ty, tx = make_tables(tables, *table_hw, c, 6, gen, torch.float32, "cpu")
    out = call(*on(device, x, ty, tx), tables, "grid_size", hw, prefix).cpu()
    expected = reference(x, ty, tx, grid_taps(*hw, prefix), tables)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-6)
    assert torch.equal(out[:, :prefix], x[:, :prefix])


def test_navit_formula_by_hand(backend):
    """Three tokens written out: sum, concat and the 2-D table, with one prefix token."""
    x = torch.arange(2 * 7 * 4, dtype=torch.float64).reshape(2, 7, 4)
    ty = torch.arange(3 * 4, dtype=torch.float64).reshape(3, 4) * 100
    tx = torch.arange(4 * 4, dtype=torch.float64).reshape(4, 4) * 1000
    out = posext.factorized_pos_embed(x, ty, tx, grid_size=(2, 3), num_prefix_tokens=1)
    assert torch.equal(out[:, 0], x[:, 0])
    assert torch.equal(out[:, 1 + 1 * 3 + 2], x[:, 1 + 1 * 3 + 2] + ty[1] + tx[2])  # y = 1, x = 2
    tyc, txc = ty[:, :1], tx[:, :3]
    out = posext.factorized_pos_embed(x, tyc, txc, grid_size=(2, 3), num_prefix_tokens=1, combine="concat")
    assert torch.equal(out[:, 1 + 3 + 1], x[:, 1 + 3 + 1] + torch.cat([tyc[1], txc[1]]))  # y = 1, x = 1
    t2 = torch.arange(3 * 4 * 4, dtype=torch.float64).reshape(3, 4, 4)
    out = posext.factorized_pos_embed(x, t2, grid_size=(2, 3), num_prefix_tokens=1)
    assert torch.equal(out[:, 1 + 2], x[:, 1 + 2] + t2[0, 2])  # y = 0, x = 2


@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
def test_coords_on_grid_points_equal_integer_positions(backend, tables):
    """coords (y / (Ly - 1), x / (Lx - 1)) over the whole table hit the rows exactly: same as
    grid_size=(Ly, Lx)."""
    gen = torch.Generator().manual_seed(5)
    ly, lx, c = 6, 9, 10
    ty, tx = make_tables(tables, ly, lx, c, 4, gen, torch.float64, "cpu")
    x = randn((3, 2 + ly * lx, c), gen, torch.float64, "cpu")
    yy, xx = torch.meshgrid(torch.arange(ly, dtype=torch.float64), torch.arange(lx, dtype=torch.float64),
                            indexing="ij")
    coords = torch.stack([xx.flatten() / (lx - 1), yy.flatten() / (ly - 1)], dim=-1)  # (x, y)
    by_coords = call(x, ty, tx, tables, "coords", coords, 2)
    by_grid = call(x, ty, tx, tables, "grid_size", (ly, lx), 2)
    torch.testing.assert_close(by_coords, by_grid, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
def test_coords_interpolate_between_rows(backend, tables):
    """A midpoint between rows 1 and 2 (and columns 2 and 3) is the mean of the neighbours; c = 1 is the last
    row."""
    gen = torch.Generator().manual_seed(6)
    ly, lx, c = 5, 7, 6
    ty, tx = make_tables(tables, ly, lx, c, 2, gen, torch.float64, "cpu")
    x = torch.zeros(2, c, dtype=torch.float64)
    coords = torch.tensor([[2.5 / (lx - 1), 1.5 / (ly - 1)], [1.0, 1.0]], dtype=torch.float64)  # (x, y)
    out = call(x, ty, tx, tables, "coords", coords, 0)
    if tables == "2d":
        mid = (ty[1, 2] + ty[1, 3] + ty[2, 2] + ty[2, 3]) / 4
        last = ty[-1, -1]
    else:
        ey, ex = (ty[1] + ty[2]) / 2, (tx[2] + tx[3]) / 2
        mid = ey + ex if tables == "sum" else torch.cat([ey, ex])
        last = ty[-1] + tx[-1] if tables == "sum" else torch.cat([ty[-1], tx[-1]])
    torch.testing.assert_close(out[0], mid, rtol=0, atol=1e-12)
    torch.testing.assert_close(out[1], last, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_images", [1, 2, 3, 4])
@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
@pytest.mark.parametrize("prefix", [0, 1, 2])
@pytest.mark.parametrize("device", DEVICES)
def test_packed_sequences(device, backend, n_images, tables, prefix):
    """A packed NaViT sequence equals each image run on its own and concatenated."""
    sizes = [(3, 5), (1, 1), (8, 2), (4, 4)][:n_images]
    gen = torch.Generator().manual_seed(n_images)
    c = 12
    ty, tx = make_tables(tables, 9, 6, c, 5, gen, torch.float32, "cpu")
    total = sum(prefix + h * w for h, w in sizes)
    x = randn((total, c), gen, torch.float32, "cpu")
    expected = reference(x, ty, tx, packed_taps(sizes, prefix), tables)
    x, ty, tx = on(device, x, ty, tx)
    out = call(x, ty, tx, tables, "grid_sizes", sizes, prefix)
    torch.testing.assert_close(out.cpu().double(), expected, rtol=0, atol=1e-6)
    pieces, start = [], 0
    for h, w in sizes:
        n = prefix + h * w
        pieces.append(call(x[start:start + n], ty, tx, tables, "grid_size", (h, w), prefix))
        start += n
    assert torch.equal(out, torch.cat(pieces))
    out_b = call(x[None], ty, tx, tables, "grid_sizes", sizes, prefix)  # [1, T, C]
    assert out_b.shape == (1, total, c) and torch.equal(out_b[0], out)


def on(device, *tensors):
    """The tensors (None kept) moved to `device`, strides and all."""
    return tuple(None if t is None else t.to(device) for t in tensors)


def one_ulp(values, dtype):
    """Spacing of `dtype` at |values| (float64 tensor), subnormals included."""
    mant, emin = {torch.float16: (10, -14), torch.bfloat16: (7, -126)}[dtype]
    e = torch.floor(torch.log2(values.abs().clamp_min(2.0 ** emin))).clamp_min(emin)
    return torch.exp2(e - mant)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
@pytest.mark.parametrize("kind", ["grid_size", "grid_sizes", "coords"])
@pytest.mark.parametrize("device", DEVICES)
def test_half_precision_within_one_ulp(device, backend, dtype, tables, kind):
    gen = torch.Generator().manual_seed(11)
    c, prefix = 40, 1
    if kind == "grid_size":
        value, taps, x_shape = (9, 13), grid_taps(9, 13, prefix), (3, prefix + 9 * 13, c)
    elif kind == "grid_sizes":
        value = [(9, 13), (2, 5), (14, 1)]
        taps = packed_taps(value, prefix)
        x_shape = (len(taps), c)
    else:
        value = torch.rand(50, 2, generator=gen, dtype=torch.float32)
        value[:4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.25]])
        taps, x_shape = coord_taps(value.double().tolist(), 14, 16, prefix), (3, prefix + 50, c)
    x = randn(x_shape, gen, dtype, "cpu")
    ty, tx = make_tables(tables, 14, 16, c, 17, gen, dtype, "cpu")
    v = value.to(device) if isinstance(value, torch.Tensor) else value
    out = call(*on(device, x, ty, tx), tables, kind, v, prefix).cpu()
    assert out.dtype == dtype
    exact = reference(x, ty, tx, taps, tables)
    rounded = exact.to(dtype).double()
    err = (out.double() - rounded).abs()
    # + 1e-6 absolute: float32 arithmetic on O(1) operands, seen where the sum cancels to near 0
    assert (err <= one_ulp(rounded, dtype) + 1e-6).all(), f"max {err.max().item()} off the rounded float64"
    close = (out.double() - exact).abs() <= 0.5 * one_ulp(exact, dtype) + 1e-6
    assert close.float().mean() > 0.99, "should be the correctly rounded value almost everywhere"
    x3 = x if x.dim() == 3 else x[None]
    out3 = out if out.dim() == 3 else out[None]
    for t, tap in enumerate(taps):
        if tap is None:
            assert torch.equal(out3[:, t], x3[:, t])


# ------------------------------------------------------------------------------ backward

GRAD_CASES = [("grid_size", (3, 2)), ("grid_size", (1, 1)), ("grid_sizes", [(2, 3), (1, 2), (3, 1)]),
              ("coords", [[0.0, 0.3], [0.71, 1.0], [0.5, 0.5], [1.0, 0.0], [0.2, 0.9]])]


@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
@pytest.mark.parametrize("kind,value", GRAD_CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_x_and_tables(device, backend, tables, kind, value):
    gen = torch.Generator().manual_seed(2)
    prefix, c = 1, 5
    if kind == "grid_size":
        x_shape = (2, prefix + value[0] * value[1], c)
    elif kind == "grid_sizes":
        x_shape = (sum(prefix + h * w for h, w in value), c)
    else:
        value = torch.tensor(value, dtype=torch.float64, device=device)
        x_shape = (2, prefix + len(value), c)
    x = randn(x_shape, gen, torch.float64, device).requires_grad_()
    ty, tx = make_tables(tables, 4, 3, c, 2, gen, torch.float64, device)
    ty.requires_grad_()
    inputs = (x, ty) + ((tx.requires_grad_(),) if tx is not None else ())

    def f(*args):
        return call(args[0], args[1], args[2] if len(args) > 2 else None, tables, kind, value, prefix)

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
@pytest.mark.parametrize("kind", ["grid_size", "grid_sizes", "coords"])
def test_table_gradient_is_bitwise_repeatable(device, backend, dtype, tables, kind):
    """Many tokens hit each table row (batch 32 x 16x16 grid): an atomics-based backward would vary run to
    run."""
    gen = torch.Generator().manual_seed(4)
    c, prefix = 96, 1
    if kind == "grid_size":
        value, x_shape = (16, 16), (32, prefix + 256, c)
    elif kind == "grid_sizes":
        value = [(16, 16), (9, 14), (16, 3)] * 4
        x_shape = (sum(prefix + h * w for h, w in value), c)
    else:
        value = torch.rand(300, 2, generator=gen).to(device)
        x_shape = (32, prefix + 300, c)
    x = randn(x_shape, gen, dtype, device).requires_grad_()
    ty, tx = make_tables(tables, 16, 16, c, 40, gen, dtype, device)
    inputs = [ty.requires_grad_()] + ([tx.requires_grad_()] if tx is not None else [])
    grad = randn(x_shape, gen, dtype, device)
    runs = [torch.autograd.grad(call(x, ty, tx, tables, kind, value, prefix), inputs, grad) for _ in range(3)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)


def test_no_grad_needed_for_tables(backend):
    """Frozen tables (requires_grad=False) with a trainable x, and the other way round."""
    x = torch.randn(2, 1 + 6, 4, dtype=torch.float64, requires_grad=True)
    ty, tx = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    out = posext.factorized_pos_embed(x, ty, tx, grid_size=(2, 3), num_prefix_tokens=1)
    g, = torch.autograd.grad(out.sum(), x)
    assert torch.equal(g, torch.ones_like(x))
    ty.requires_grad_()
    g, = torch.autograd.grad(posext.factorized_pos_embed(x.detach(), ty, tx, grid_size=(2, 3),
                                                         num_prefix_tokens=1).sum(), ty)
    assert torch.equal(g, torch.tensor([[6.0] * 4, [6.0] * 4, [0.0] * 4], dtype=torch.float64))


# ------------------------------------------------------------------------------ torch.compile

@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
def test_compile_fullgraph_two_grid_sizes(backend, tables):
    torch._dynamo.reset()

    def fwd(x, ty, tx, h, w):
        if tx is None:
            return posext.factorized_pos_embed(x, ty, grid_size=(h, w), num_prefix_tokens=1) * 2
        out = posext.factorized_pos_embed(x, ty, tx, grid_size=(h, w), num_prefix_tokens=1, combine=tables)
        return out * 2

    compiled = torch.compile(fwd, fullgraph=True, backend="aot_eager")
    gen = torch.Generator().manual_seed(8)
    ty, tx = make_tables(tables, 12, 12, 8, 3, gen, torch.float32, "cpu")
    params = [ty.requires_grad_()] + ([tx.requires_grad_()] if tx is not None else [])
    for h, w in [(6, 6), (10, 4)]:
        x = torch.randn(2, 1 + h * w, 8, generator=gen).requires_grad_()
        out = compiled(x, ty, tx, h, w)
        eager = fwd(x, ty, tx, h, w)
        torch.testing.assert_close(out, eager, rtol=0, atol=0)
        grads_c = torch.autograd.grad(out.sum(), [x] + params)
        grads_e = torch.autograd.grad(eager.sum(), [x] + params)
        for a, b in zip(grads_c, grads_e):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------------------ bad input

def _t(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


def fpe(*args, **kwargs):
    return posext.factorized_pos_embed(*args, **kwargs)


BAD = [
    # tables too short for the grid
    ("H > Ly", lambda: fpe(_t(2, 1 + 7 * 3, 8), _t(6, 8), _t(5, 8), grid_size=(7, 3), num_prefix_tokens=1),
     ValueError, ["grid_size", "(7, 3)", "6 rows along y"]),
    ("W > Lx", lambda: fpe(_t(2, 3 * 9, 8), _t(6, 8), _t(8, 8), grid_size=(3, 9)), ValueError,
     ["grid_size", "(3, 9)", "8 along x"]),
    ("2-D table too narrow", lambda: fpe(_t(3 * 6, 8), _t(4, 5, 8), grid_size=(3, 6)), ValueError,
     ["grid_size", "(3, 6)", "5 along x"]),
    ("packed image taller than table",
     lambda: fpe(_t(2 * 2 + 9 * 2, 8), _t(8, 8), _t(8, 8), grid_sizes=[(2, 2), (9, 2)]), ValueError,
     ["grid_sizes[1]", "(9, 2)", "8 rows along y"]),
    # coords
    ("coords > 1", lambda: fpe(_t(2, 3, 8), _t(4, 8), _t(4, 8), coords=torch.tensor([[0.0, 0.5], [1.5, 0.0],
                                                                                    [0.2, 0.2]])),
     ValueError, ["coords", "[0, 1]", "1.5"]),
    ("coords < 0", lambda: fpe(_t(2, 1, 8), _t(4, 8), _t(4, 8), coords=torch.tensor([[0.5, -0.25]])),
     ValueError,
     ["coords", "[0, 1]", "-0.25"]),
    ("coords NaN", lambda: fpe(_t(2, 1, 8), _t(4, 8), _t(4, 8), coords=torch.tensor([[0.5, float("nan")]])),
     ValueError, ["coords"]),
    ("coords [N, 3]", lambda: fpe(_t(2, 4, 8), _t(4, 8), _t(4, 8), coords=_t(4, 3)), ValueError,
     ["coords", "[N, 2]", "[4, 3]"]),
    ("coords 1-D", lambda: fpe(_t(2, 4, 8), _t(4, 8), _t(4, 8), coords=_t(8)), ValueError,
     ["coords", "[N, 2]", "[8]"]),
    ("coords int", lambda: fpe(_t(2, 1, 8), _t(4, 8), _t(4, 8), coords=torch.zeros(1, 2, dtype=torch.int64)),
     TypeError, ["coords", "int64"]),
    # channels
    ("sum: Cx != C", lambda: fpe(_t(2, 4, 8), _t(2, 8), _t(2, 6), grid_size=2), ValueError,
     ["sum", "C=8", "8 and 6"]),
    ("sum: Cy != C", lambda: fpe(_t(2, 4, 8), _t(2, 5), _t(2, 8), grid_size=2), ValueError,
     ["sum", "C=8", "5 and 8"]),
    ("concat: Cy + Cx != C", lambda: fpe(_t(2, 4, 8), _t(2, 3), _t(2, 4), grid_size=2, combine="concat"),
     ValueError,
     ["concat", "3", "4", "8"]),
    ("2-D: C mismatch", lambda: fpe(_t(2, 4, 8), _t(2, 2, 6), grid_size=2), ValueError,
     ["table_y", "6", "8"]),
    ("combine unknown", lambda: fpe(_t(2, 4, 8), _t(2, 8), _t(2, 8), grid_size=2, combine="mean"), ValueError,
     ["combine", "mean"]),
    # token counts
    ("grid token count", lambda: fpe(_t(2, 16, 8), _t(4, 8), _t(4, 8), grid_size=(4, 4), num_prefix_tokens=1),
     ValueError, ["16 tokens", "17"]),
    ("unbatched token count",
     lambda: fpe(_t(13, 8), _t(4, 8), _t(4, 8), grid_size=(3, 4), num_prefix_tokens=2),
     ValueError, ["13 tokens", "14"]),
    ("packed total",
     lambda: fpe(_t(11, 8), _t(4, 8), _t(4, 8), grid_sizes=[(2, 3), (1, 4)], num_prefix_tokens=1),
     ValueError, ["11 tokens", "12"]),
    ("packed batch of 2", lambda: fpe(_t(2, 12, 8), _t(4, 8), _t(4, 8), grid_sizes=[(2, 3), (1, 4)],
                                      num_prefix_tokens=1), ValueError, ["grid_sizes"]),
    ("coords token count", lambda: fpe(_t(2, 7, 8), _t(4, 8), _t(4, 8), coords=_t(5, 2), num_prefix_tokens=1),
     ValueError, ["7 tokens", "6"]),
    # exactly one position argument
    ("no positions", lambda: fpe(_t(2, 4, 8), _t(2, 8), _t(2, 8)), ValueError, ["exactly one"]),
    ("grid_size and coords", lambda: fpe(_t(2, 4, 8), _t(2, 8), _t(2, 8), grid_size=2, coords=_t(4, 2)),
     ValueError,
     ["exactly one"]),
    ("grid_size and grid_sizes", lambda: fpe(_t(4, 8), _t(2, 8), _t(2, 8), grid_size=2, grid_sizes=[(2, 2)]),
     ValueError, ["exactly one"]),
    # dtypes and devices
    ("x int", lambda: fpe(_t(2, 4, 8, dtype=torch.int64), _t(2, 8), _t(2, 8), grid_size=2), TypeError,
     ["dtype", "int64"]),
    ("tables int", lambda: fpe(_t(2, 4, 8, dtype=torch.int32), _t(2, 8, dtype=torch.int32),
                               _t(2, 8, dtype=torch.int32), grid_size=2), TypeError, ["dtype", "int32"]),
    ("table_y dtype != x", lambda: fpe(_t(2, 4, 8), _t(2, 8, dtype=torch.float64), _t(2, 8), grid_size=2),
     (TypeError, ValueError), ["table_y", "float64", "float32"]),
    ("table_x dtype != x", lambda: fpe(_t(2, 4, 8), _t(2, 8), _t(2, 8, dtype=torch.bfloat16), grid_size=2),
     (TypeError, ValueError), ["table_x", "bfloat16", "float32"]),
    ("table_y device != x", lambda: fpe(_t(2, 4, 8), _t(2, 8, device="meta"), _t(2, 8), grid_size=2),
     (TypeError, ValueError), ["table_y", "meta", "cpu"]),
    # table shapes (implied by the spec: 2-D tables pair with table_x, a 3-D table stands alone)
    ("factorized table_y without table_x", lambda: fpe(_t(2, 4, 8), _t(2, 8), grid_size=2), ValueError,
     ["table_x"]),
    ("3-D table_y with table_x", lambda: fpe(_t(2, 4, 8), _t(2, 2, 8), _t(2, 8), grid_size=2), ValueError,
     ["table_x"]),
]


@pytest.mark.parametrize("call,exc,words", [pytest.param(c, e, w, id=i) for i, c, e, w in BAD])
def test_bad_input_is_a_clear_error(backend, call, exc, words):
    assert_error_names(call, exc, words)


# ------------------------------------------------------------------------------ CUDA vs CPU

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("tables", ["sum", "concat", "2d"])
@pytest.mark.parametrize("kind", ["grid_size", "grid_sizes", "coords"])
def test_cuda_matches_cpu_forward_and_backward(backend, dtype, tables, kind):
    gen = torch.Generator().manual_seed(9)
    c, prefix = 70, 1
    if kind == "grid_size":
        value, x_shape = (14, 11), (3, prefix + 14 * 11, c)
    elif kind == "grid_sizes":
        value = [(14, 11), (3, 16), (1, 1), (7, 7)]
        x_shape = (sum(prefix + h * w for h, w in value), c)
    else:
        cdtype = torch.float64 if dtype == torch.float64 else torch.float32
        value = torch.rand(200, 2, generator=gen, dtype=cdtype)
        x_shape = (3, prefix + 200, c)
    x = randn(x_shape, gen, dtype, "cpu")
    ty, tx = make_tables(tables, 16, 16, c, 33, gen, dtype, "cpu")
    grad = randn(x_shape, gen, dtype, "cpu")
    results = []
    for device in ("cpu", "cuda"):
        xd, tyd = x.to(device).requires_grad_(), ty.to(device).requires_grad_()
        txd = tx.to(device).requires_grad_() if tx is not None else None
        v = value.to(device) if isinstance(value, torch.Tensor) else value
        out = call(xd, tyd, txd, tables, kind, v, prefix)
        grads = torch.autograd.grad(out, [xd, tyd] + ([txd] if txd is not None else []), grad.to(device))
        results.append([out.cpu()] + [g.cpu() for g in grads])
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}[dtype]
    for a, b in zip(*results):
        # half-precision table gradients sum ~100 terms: compare relative to their scale
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)
