"""sincos_2d / sincos_1d: parity with NumPy float64 references and with open_clip / timm as oracles.

Tolerances: float64 <= 1e-12 abs; float32 <= 1e-6 abs and within one float32 ulp of the rounded
reference; float16 / bfloat16 equal to the float64 reference cast to that dtype.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import posext
from posext import _backend
from tests import reference as ref
from tests.conftest import DEVICES, assert_error_names

FLOAT_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]




def assert_matches_reference(out: torch.Tensor, expected: np.ndarray):
    """The module docstring's tolerance rules."""
    expected64 = torch.from_numpy(expected)
    assert out.shape == expected64.shape
    got = out.cpu()
    assert not got.isnan().any(), "unwritten (NaN-poisoned) or NaN elements"
    if out.dtype == torch.float64:
        torch.testing.assert_close(got, expected64, rtol=0, atol=1e-12)
    elif out.dtype == torch.float32:
        torch.testing.assert_close(got.double(), expected64, rtol=0, atol=1e-6)
        rounded = expected64.float()
        neighbours = (got == rounded) | (torch.nextafter(rounded, got) == got)
        assert neighbours.all(), "float32 table is not the rounded float64 table"
    else:
        assert torch.equal(got, expected64.to(out.dtype)), f"{out.dtype} differs from the rounded reference"


def poisoned(shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


@st.composite
def table_cases(draw):
    convention = draw(st.sampled_from(sorted(posext.CONVENTIONS)))
    embed_dim = 4 * draw(st.integers(2 if convention == "big_vision" else 1, 512))
    height = draw(st.integers(1, 128))
    max_w = max(1, min(128, 2_000_000 // (embed_dim * height)))
    width = draw(st.integers(1, max_w))
    prefix = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    temperature = draw(st.sampled_from([10000.0, 100.0, 10.0, 12345.6]))
    return convention, embed_dim, height, width, prefix, dtype, temperature


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=60, deadline=None)
@given(case=table_cases(), use_out=st.booleans())
def test_sincos_2d_matches_numpy_reference(device, backend, case, use_out):
    convention, embed_dim, height, width, prefix, dtype, temperature = case
    expected = ref.sincos_2d(convention, embed_dim, height, width, temperature, prefix)
    kwargs = dict(convention=convention, temperature=temperature, num_prefix_tokens=prefix)
    if use_out:
        out = poisoned(expected.shape, dtype, device)
        result = posext.sincos_2d(embed_dim, (height, width), out=out, **kwargs)
        assert result is out
    else:
        out = posext.sincos_2d(embed_dim, (height, width), dtype=dtype, device=device, **kwargs)
        assert out.dtype == dtype and out.device.type == device
    assert_matches_reference(out, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("convention", sorted(posext.CONVENTIONS))
@pytest.mark.parametrize("embed_dim,grid", [(4, (1, 1)), (8, (1, 1)), (2048, (64, 64)), (64, (128, 128)),
                                            (1024, (37, 37)), (768, (14, 14)), (16, (1, 128)), (36, (128, 3)),
                                            (8, (1, 70000))])
def test_sincos_2d_sizes(device, backend, convention, embed_dim, grid):
    if convention == "big_vision" and embed_dim < 8:
        pytest.skip("big_vision needs embed_dim >= 8")
    expected = ref.sincos_2d(convention, embed_dim, *grid, num_prefix_tokens=1)
    out = posext.sincos_2d(embed_dim, grid, convention=convention, num_prefix_tokens=1, device=device,
                           out=poisoned(expected.shape, torch.float32, device))
    assert_matches_reference(out, expected)


def test_square_grid_int_equals_pair(backend):
    assert torch.equal(posext.sincos_2d(64, 7), posext.sincos_2d(64, (7, 7)))


def test_extension_and_fallback_agree_bitwise_on_cpu():
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    from posext.sincos import CONVENTIONS, _sincos_2d_torch
    for name, conv in CONVENTIONS.items():
        for dtype in FLOAT_DTYPES:
            ext = posext.sincos_2d(96, (5, 9), convention=name, num_prefix_tokens=2, dtype=dtype)
            py = _sincos_2d_torch(96, 5, 9, 2, 10000.0, conv.band_codes, conv.freq_denominator_offset, dtype,
                                  torch.device("cpu"))
            torch.testing.assert_close(ext, py, rtol=0, atol=0 if dtype != torch.float64 else 1e-15)


# ------------------------------------------------------------------------------ independent oracles

def test_mae_matches_open_clip_numpy(backend):
    pos_embed = pytest.importorskip("open_clip.pos_embed")
    for embed_dim, grid, cls_token in [(768, 14, True), (1024, 16, False), (64, 1, True), (1536, 37, True)]:
        expected = pos_embed.get_2d_sincos_pos_embed(embed_dim, grid, cls_token=cls_token)
        got = posext.sincos_2d(embed_dim, grid, num_prefix_tokens=int(cls_token), dtype=torch.float64)
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_compat_mae_matches_open_clip(backend):
    pos_embed = pytest.importorskip("open_clip.pos_embed")
    from posext.compat import mae
    for cls_token in (False, True):
        a, b = (mae.get_2d_sincos_pos_embed(256, 14, cls_token),
                pos_embed.get_2d_sincos_pos_embed(256, 14, cls_token))
        assert a.dtype == np.float64 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    rng = np.random.default_rng(0)
    grid = rng.uniform(-50, 50, size=(2, 1, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(mae.get_2d_sincos_pos_embed_from_grid(128, grid),
                               pos_embed.get_2d_sincos_pos_embed_from_grid(128, grid), rtol=0, atol=1e-12)
    pos = rng.uniform(0, 300, size=(3, 11))
    got = mae.get_1d_sincos_pos_embed_from_grid(64, pos)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, pos_embed.get_1d_sincos_pos_embed_from_grid(64, pos), rtol=0, atol=1e-12)


@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("grid", [(14, 14), (4, 7), (9, 2), (1, 1), (64, 64)])
def test_timm_build_sincos2d_pos_embed(backend, interleave, grid):
    pos_sincos = pytest.importorskip("timm.layers.pos_embed_sincos")
    expected = pos_sincos.build_sincos2d_pos_embed(list(grid), dim=256, interleave_sin_cos=interleave)
    got = posext.sincos_2d(256, grid, convention="timm_interleaved" if interleave else "timm")
    # timm computes angles in float32: its error grows with the position (~ 1.2e-7 * max position).
    tol = 1e-6 + 2e-7 * max(grid)
    torch.testing.assert_close(got, expected, rtol=0, atol=tol)
    ours_err = (got.double()
                - torch.from_numpy(ref.sincos_2d_timm(256, *grid, interleave=interleave))).abs().max()
    assert ours_err <= 6e-8  # ours is the rounded float64 table, timm's is not


def test_mocov3_equals_timm_interleaved_on_square_grids():
    assert torch.equal(posext.sincos_2d(192, 12, convention="mocov3"),
                       posext.sincos_2d(192, 12, convention="timm_interleaved"))


def test_big_vision_lowest_frequency_is_one_over_temperature():
    table = posext.sincos_2d(64, (1, 3), convention="big_vision", temperature=100.0, dtype=torch.float64)
    # channel F-1 of band "sin x" at x = 2: sin(2 / T)
    assert table[2, 15].item() == pytest.approx(math.sin(2 / 100.0), abs=1e-15)


# ------------------------------------------------------------------------------ 1D tables

@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40, deadline=None)
@given(embed_dim=st.integers(1, 1024).map(lambda k: 2 * k), m=st.integers(0, 300),
       dtype=st.sampled_from(FLOAT_DTYPES),
       pos_dtype=st.sampled_from([torch.float64, torch.float32, torch.int64]),
       stride=st.integers(1, 3), temperature=st.sampled_from([10000.0, 100.0]), seed=st.integers(0, 2**16))
def test_sincos_1d_matches_numpy_reference(device, backend, embed_dim, m, dtype, pos_dtype, stride,
                                           temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(m * stride, generator=gen, dtype=torch.float64) * 200 - 50
    positions = base.to(pos_dtype)[::stride].to(device)  # strided (non-contiguous) when stride > 1
    expected = ref.sincos_1d(embed_dim, positions.cpu().double().numpy(), temperature)
    out = posext.sincos_1d(embed_dim, positions, temperature=temperature,
                           out=poisoned((m, embed_dim), dtype, device))
    assert_matches_reference(out, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_sincos_1d_defaults(device, backend):
    assert posext.sincos_1d(8, torch.arange(3, device=device)).dtype == torch.float32
    assert posext.sincos_1d(8, torch.arange(3.0, dtype=torch.float64, device=device)).dtype == torch.float64
    assert posext.sincos_1d(8, [0.5, 1.5]).dtype == torch.float64  # a sequence becomes float64 positions
    assert posext.sincos_1d(8, torch.zeros(0, device=device)).shape == (0, 8)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("call,exc,words", [
    (lambda: posext.sincos_2d(6, 4), ValueError, ["embed_dim", "divisible by 4", "6"]),
    (lambda: posext.sincos_2d(0, 4), ValueError, ["embed_dim", "> 0"]),
    (lambda: posext.sincos_2d(8.0, 4), TypeError, ["embed_dim", "int"]),
    (lambda: posext.sincos_2d(8, 0), ValueError, ["grid_size", "> 0"]),
    (lambda: posext.sincos_2d(8, (3, -1)), ValueError, ["grid_size[1]", "-1"]),
    (lambda: posext.sincos_2d(8, (3, 4, 5)), TypeError, ["grid_size", "(H, W)"]),
    (lambda: posext.sincos_2d(8, True), TypeError, ["grid_size"]),
    (lambda: posext.sincos_2d(8, 4, dtype=torch.int32), TypeError, ["dtype", "float"]),
    (lambda: posext.sincos_2d(8, 4, num_prefix_tokens=-1), ValueError, ["num_prefix_tokens", ">= 0"]),
    (lambda: posext.sincos_2d(8, 4, convention="vit"), ValueError, ["convention", "mae"]),
    (lambda: posext.sincos_2d(4, 4, convention="big_vision"), ValueError, ["embed_dim", ">= 8"]),
    (lambda: posext.sincos_2d(8, 4, temperature=0), ValueError, ["temperature", "> 0"]),
    (lambda: posext.sincos_2d(8, 2, out=torch.empty(5, 8)), ValueError, ["out", "(4, 8)", "(5, 8)"]),
    (lambda: posext.sincos_2d(8, 2, out=torch.empty(8, 4).t()), ValueError, ["out", "contiguous"]),
    (lambda: posext.sincos_2d(8, 2, out=torch.empty(4, 8, dtype=torch.int64)), TypeError, ["out.dtype"]),
    (lambda: posext.sincos_1d(5, [1.0]), ValueError, ["embed_dim", "divisible by 2", "5"]),
    (lambda: posext.sincos_1d(8, torch.zeros(2, 3)), ValueError, ["positions", "1-D", "(2, 3)"]),
    (lambda: posext.sincos_1d(8, torch.zeros(2, dtype=torch.bool)), TypeError, ["positions"]),
    (lambda: posext.sincos_1d(8, [1.0], dtype=torch.int64), TypeError, ["dtype"]),
])
def test_bad_input_names_argument_and_rule(backend, call, exc, words):
    assert_error_names(call, exc, words)


@pytest.mark.parametrize("device", DEVICES)
def test_raw_ops_reject_bad_arguments_without_crashing(device):
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    ops, dev = torch.ops.posext, torch.device(device)
    with pytest.raises(RuntimeError, match="multiple of 4"):
        ops.sincos_2d(6, 2, 2, 0, 1e4, [0, 1, 2, 3], 0, torch.float32, dev)
    with pytest.raises(RuntimeError, match="grid must be positive"):
        ops.sincos_2d(8, 0, 2, 0, 1e4, [0, 1, 2, 3], 0, torch.float32, dev)
    with pytest.raises(RuntimeError, match="band code"):
        ops.sincos_2d(8, 2, 2, 0, 1e4, [0, 1, 2, 7], 0, torch.float32, dev)
    with pytest.raises(RuntimeError, match="dtype must be"):
        ops.sincos_2d(8, 2, 2, 0, 1e4, [0, 1, 2, 3], 0, torch.int32, dev)
    with pytest.raises(RuntimeError, match="out must have shape"):
        ops.sincos_2d_out(8, 2, 2, 0, 1e4, [0, 1, 2, 3], 0, out=torch.empty(3, 8, device=device))
    with pytest.raises(RuntimeError, match="too small"):
        ops.sincos_2d(4, 2, 2, 0, 1e4, [0, 1, 2, 3], 1, torch.float32, dev)
    with pytest.raises(RuntimeError, match="1-D"):
        ops.sincos_1d(torch.zeros(2, 2, device=device), 8, 1e4, torch.float32)


# ------------------------------------------------------------------------------ torch.compile

@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph_has_no_graph_break(dynamic):
    torch._dynamo.reset()

    def add_pos(x, h, w):
        return x + posext.sincos_2d(x.shape[-1], (h, w), num_prefix_tokens=1, dtype=x.dtype, device=x.device)

    compiled = torch.compile(add_pos, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for h, w in [(3, 4), (5, 5), (2, 7)]:
        x = torch.randn(2, 1 + h * w, 32)
        torch.testing.assert_close(compiled(x, h, w), add_pos(x, h, w), rtol=0, atol=0)
