"""posext.resample: parity with the permute -> F.interpolate -> cat path and with the NumPy float64 reference.

Tolerances (unit-scale N(0,1) data): float64 <= 1e-12 max abs, float32 <= 1e-5 against torch's float32 path
(and <= 1e-4 against the float64 NumPy reference: float32 source positions s*i round to ~1e-6 of a pixel,
which moves cubic weights by ~1e-5, in torch as in posext); float16 / bfloat16 no worse
against the float64 reference than torch's own half result (plus half an ulp of slack for ties).
Outputs are poisoned: every test runs with torch's deterministic mode, which fills fresh tensors with NaN,
so an element a kernel leaves unwritten fails the comparison.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import posext
from posext import _backend
from tests import reference_resample as ref
from tests.conftest import DEVICES, assert_error_names

pytestmark = pytest.mark.usefixtures("poison_outputs")

COMBOS = [("bicubic", False, False), ("bicubic", True, False), ("bicubic", False, True),
          ("bicubic", True, True), ("bilinear", False, False), ("bilinear", True, False),
          ("bilinear", False, True), ("bilinear", True, True), ("nearest", False, False)]


def torch_path(tokens, old_hw, new_hw, prefix, mode, antialias, align_corners, scale_factor=None):
    """What users hand-roll today: split, permute to NCHW, F.interpolate (float64/float32), permute, cat."""
    b, _, c = tokens.shape
    grid = tokens[:, prefix:].reshape(b, *old_hw, c).permute(0, 3, 1, 2)
    kw = dict(mode=mode, antialias=antialias)
    if mode != "nearest":
        kw["align_corners"] = align_corners
    grid = (F.interpolate(grid, scale_factor=scale_factor, **kw) if scale_factor
            else F.interpolate(grid, new_hw, **kw))
    return torch.cat([tokens[:, :prefix], grid.permute(0, 2, 3, 1).reshape(b, -1, c)], dim=1)


def torch_aa_width1_bug(mode, antialias, old_hw, new_hw):
    """torch 2.14 CPU antialias with output width 1 and a changed height repeats output row 0."""
    return antialias and new_hw[1] == 1 and new_hw[0] != old_hw[0]


@st.composite
def resample_cases(draw):
    mode, antialias, align_corners = draw(st.sampled_from(COMBOS))
    old_hw = (draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    if draw(st.booleans()):
        scale = (draw(st.floats(0.3, 3.0)), draw(st.floats(0.3, 3.0)))
        new_hw = tuple(int(math.floor(n * s)) for n, s in zip(old_hw, scale))
        if min(new_hw) < 1:
            scale, new_hw = None, (max(new_hw[0], 1), max(new_hw[1], 1))
    else:
        scale, new_hw = None, (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    layout = draw(st.sampled_from(["tokens", "unbatched", "nhwc"]))
    prefix = 0 if layout == "nhwc" else draw(st.sampled_from([0, 1, 2, 5]))
    batch = 1 if layout == "unbatched" else draw(st.integers(0, 3))
    channels = draw(st.integers(1, 9))
    strided = draw(st.booleans())
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    return dict(mode=mode, antialias=antialias, align_corners=align_corners, old_hw=old_hw, new_hw=new_hw,
                scale=scale, layout=layout, prefix=prefix, batch=batch, channels=channels, strided=strided,
                dtype=dtype, seed=draw(st.integers(0, 2**16)))


def make_input(case, device="cpu"):
    """The case's pos_embed in its layout, plus the same data as [B, P+N, C]; strided = channel stride 2."""
    gen = torch.Generator().manual_seed(case["seed"])
    b, p, c, (h, w) = case["batch"], case["prefix"], case["channels"], case["old_hw"]
    width = 2 * c if case["strided"] else c
    base = torch.randn(b, p + h * w, width, generator=gen, dtype=torch.float64).to(case["dtype"]).to(device)
    tokens = base[..., ::2] if case["strided"] else base
    if case["layout"] == "nhwc":
        return tokens.reshape(b, h, w, c), tokens
    if case["layout"] == "unbatched":
        return tokens[0], tokens
    return tokens, tokens


def call(pos_embed, case):
    kwargs = dict(mode=case["mode"], antialias=case["antialias"], align_corners=case["align_corners"])
    if case["layout"] != "nhwc":
        kwargs.update(old_size=case["old_hw"], num_prefix_tokens=case["prefix"])
    if case["scale"]:
        return posext.resample(pos_embed, scale_factor=case["scale"], **kwargs)
    return posext.resample(pos_embed, case["new_hw"], **kwargs)


def as_tokens(out, case):
    if case["layout"] == "nhwc":
        return out.reshape(out.shape[0], out.shape[1] * out.shape[2], out.shape[-1])
    return out.unsqueeze(0) if case["layout"] == "unbatched" else out


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=250, deadline=None)
@given(case=resample_cases())
def test_matches_interpolate_and_numpy_reference(device, backend, case):
    pos_embed, tokens = make_input(case, device)
    out = call(pos_embed, case)
    b, p, c, (nh, nw) = case["batch"], case["prefix"], case["channels"], case["new_hw"]
    expected_shape = {"nhwc": (b, nh, nw, c), "unbatched": (p + nh * nw, c)}.get(case["layout"],
                                                                                (b, p + nh * nw, c))
    assert tuple(out.shape) == expected_shape and out.dtype == case["dtype"] and out.device.type == device
    out = as_tokens(out, case).cpu()
    assert not out.isnan().any(), "unwritten (NaN-poisoned) elements"
    tol, ref_tol = (1e-12, 1e-12) if case["dtype"] == torch.float64 else (1e-5, 1e-4)
    assert torch.equal(out[:, :p], tokens[:, :p].cpu()), "prefix rows must be copied bit for bit"
    numpy_ref = ref.resample_tokens(tokens.cpu().double().numpy(), None if case["scale"] else case["new_hw"],
                                    case["old_hw"], p, mode=case["mode"], antialias=case["antialias"],
                                    align_corners=(case["align_corners"] if case["mode"] != "nearest"
                                                   else None),
                                    scale_factor=case["scale"])
    np.testing.assert_allclose(out.double().numpy(), numpy_ref, rtol=0, atol=ref_tol)
    if b > 0 and c > 0 and not torch_aa_width1_bug(case["mode"], case["antialias"], case["old_hw"],
                                                   case["new_hw"]):
        expected = torch_path(tokens.cpu(), case["old_hw"], case["new_hw"], p, case["mode"],
                              case["antialias"], case["align_corners"], case["scale"])
        torch.testing.assert_close(out, expected, rtol=0, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
@pytest.mark.parametrize("old_hw,new_hw", [((14, 14), (24, 24)), ((37, 37), (16, 16)), ((1, 1), (3, 5)),
                                           ((2, 2), (1, 1)), ((5, 9), (9, 5)), ((16, 16), (16, 16)),
                                           ((3, 1), (1, 4))])
def test_explicit_grids(device, backend, mode, antialias, align_corners, old_hw, new_hw):
    """Against the NumPy reference and against F.interpolate on the same device (torch's CUDA kernels on
    CUDA)."""
    tokens = torch.randn(2, 1 + old_hw[0] * old_hw[1], 16, device=device)
    out = posext.resample(tokens, new_hw, old_size=old_hw, mode=mode, antialias=antialias,
                          align_corners=align_corners)
    expected = ref.resample_tokens(tokens.cpu().double().numpy(), new_hw, old_hw, 1, mode=mode,
                                   antialias=antialias,
                                   align_corners=align_corners if mode != "nearest" else None)
    np.testing.assert_allclose(out.cpu().double().numpy(), expected, rtol=0, atol=1e-4)
    if not torch_aa_width1_bug(mode, antialias, old_hw, new_hw):
        torch.testing.assert_close(out, torch_path(tokens, old_hw, new_hw, 1, mode, antialias, align_corners),
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_dino_offset_scale_factor(device, backend):
    """DINO: scale_factor = (M + 0.1) / sqrt(N); output floor(in * s), kernel scale 1/s (not in/out)."""
    n_side, m = 37, 40
    pos = torch.randn(1, 1 + n_side * n_side, 32, dtype=torch.float64, device=device)
    s = (m + 0.1) / n_side
    out = posext.resample(pos, scale_factor=s)
    assert out.shape == (1, 1 + m * m, 32)
    torch.testing.assert_close(out, torch_path(pos, (n_side, n_side), (m, m), 1, "bicubic", False, False,
                                               (s, s)), rtol=0, atol=1e-12)
    by_size = posext.resample(pos, (m, m))
    assert (out - by_size).abs().max() > 1e-3  # the offset changes the kernel scale, as in DINO


@pytest.mark.parametrize("device", DEVICES)
def test_torch_antialias_width1_bug_is_not_reproduced(device):
    tokens = torch.randn(1, 2 * 3, 4, dtype=torch.float64, device=device)
    out = posext.resample(tokens, (5, 1), old_size=(2, 3), num_prefix_tokens=0, antialias=True)
    expected = ref.resample_tokens(tokens.cpu().numpy(), (5, 1), (2, 3), 0, mode="bicubic", antialias=True,
                                   align_corners=False)
    np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
def test_half_precision_no_worse_than_torch(device, backend, dtype, mode, antialias, align_corners):
    """Against float64, no worse than torch's own half kernel on the same device (CUDA has one for every
    mode)."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 1 + 14 * 14, 64, generator=gen).to(dtype).to(device)
    out = posext.resample(tokens, (23, 9), old_size=(14, 14), mode=mode, antialias=antialias,
                          align_corners=align_corners)
    assert out.dtype == dtype
    exact = torch_path(tokens.double(), (14, 14), (23, 9), 1, mode, antialias, align_corners)
    try:  # torch's own half kernel; CPU antialias has none, so the float32-upcast path users must write
        theirs = torch_path(tokens, (14, 14), (23, 9), 1, mode, antialias, align_corners)
    except (NotImplementedError, RuntimeError):
        theirs = torch_path(tokens.float(), (14, 14), (23, 9), 1, mode, antialias, align_corners).to(dtype)
    ours_err = (out.double() - exact).abs().max().item()
    torch_err = (theirs.double() - exact).abs().max().item()
    ulp = 2.0 ** -10 if dtype == torch.float16 else 2.0 ** -7
    assert ours_err <= torch_err + 0.5 * ulp * exact.abs().max().item(), (ours_err, torch_err)
    assert torch.equal(out[:, :1], tokens[:, :1])


# ------------------------------------------------------------------------------ backward

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
@pytest.mark.parametrize("old_hw,new_hw", [((4, 5), (7, 3)), ((6, 6), (2, 3)), ((1, 1), (3, 2)),
                                           ((3, 3), (3, 3))])
def test_gradcheck_and_torch_backward(device, mode, antialias, align_corners, old_hw, new_hw):
    """gradcheck / gradgradcheck, and the backward against torch's on the same device (CUDA: its atomics)."""
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    x = torch.randn(2, 2 + old_hw[0] * old_hw[1], 3, dtype=torch.float64, device=device, requires_grad=True)

    def f(t):
        return posext.resample(t, new_hw, old_size=old_hw, num_prefix_tokens=2, mode=mode,
                               antialias=antialias, align_corners=align_corners)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))
    grad = torch.randn(2, 2 + new_hw[0] * new_hw[1], 3, dtype=torch.float64, device=device)
    ours, = torch.autograd.grad(f(x), x, grad)
    with torch.backends.cudnn.flags(enabled=False):
        torch.use_deterministic_algorithms(False)
        x_ref = x.detach().clone().requires_grad_()
        theirs, = torch.autograd.grad(torch_path(x_ref, old_hw, new_hw, 2, mode, antialias, align_corners),
                                      x_ref, grad)
        torch.use_deterministic_algorithms(True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_is_bitwise_repeatable(device, dtype):
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    x = torch.randn(3, 1 + 16 * 16, 96, device=device).to(dtype).requires_grad_()
    grad = torch.randn(3, 1 + 37 * 37, 96, device=device).to(dtype)
    grads = [torch.autograd.grad(posext.resample(x, 37, antialias=True), x, grad)[0] for _ in range(3)]
    assert all(torch.equal(grads[0], g) for g in grads[1:])


@pytest.mark.parametrize("device", DEVICES)
def test_backward_of_strided_and_expanded_grad(device):
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    x = torch.randn(1, 1 + 5 * 5, 4, dtype=torch.float64, device=device, requires_grad=True)
    out = posext.resample(x, (3, 4))
    expanded = torch.ones(1, 1, 1, dtype=torch.float64, device=device).expand_as(out)  # zero strides
    ours, = torch.autograd.grad(out, x, expanded)
    theirs, = torch.autograd.grad(out, x, expanded.contiguous())
    assert torch.equal(ours, theirs)


# ------------------------------------------------------------------------------ torch.compile

def test_compile_fullgraph_dynamic_three_sizes():
    torch._dynamo.reset()

    def fwd(pos, h, w):
        return posext.resample(pos, (h, w), old_size=(8, 8)) * 2

    compiled = torch.compile(fwd, fullgraph=True, dynamic=True, backend="aot_eager")
    pos = torch.randn(1, 1 + 64, 16, requires_grad=True)
    for h, w in [(10, 10), (12, 7), (5, 16)]:
        out = compiled(pos, h, w)
        torch.testing.assert_close(out, fwd(pos, h, w), rtol=0, atol=0)
        out.sum().backward()


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("call,exc,words", [
    (lambda: posext.resample(torch.zeros(5), 4), ValueError, ["pos_embed", "(5,)"]),
    (lambda: posext.resample(torch.zeros(1, 2, 3, 4, 5), 4), ValueError, ["pos_embed", "(1, 2, 3, 4, 5)"]),
    (lambda: posext.resample(torch.zeros(1, 11, 8), 4), ValueError,
     ["11 tokens", "old_size", "num_prefix_tokens"]),
    (lambda: posext.resample(torch.zeros(1, 11, 8), 4, num_prefix_tokens=1), ValueError,
     ["N = 11 - 1 = 10", "old_size"]),
    (lambda: posext.resample(torch.zeros(1, 13, 8), 4, old_size=(3, 5)), ValueError,
     ["15", "13 tokens", "old_size"]),
    (lambda: posext.resample(torch.zeros(1, 13, 8), 4, old_size=(3, 5), num_prefix_tokens=1), ValueError,
     ["15", "N = 13 - 1 = 12", "old_size"]),
    (lambda: posext.resample(torch.zeros(1, 4, 4, 8), 6, old_size=3), ValueError, ["old_size 3", "(4, 4)"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), 4, antialias=float("nan")), TypeError, ["antialias"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), 4, align_corners=1), TypeError, ["align_corners"]),
    (lambda: posext.resample(torch.zeros(1, 1, 8), (2**32, 2**32), old_size=1), ValueError,
     ["new_size=(4294967296, 4294967296)", "overflow"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), 2**20), ValueError,
     ["new_size=1048576", "bytes", "memory"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), 0), ValueError, ["new_size", "> 0"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), (4, -2)), ValueError, ["new_size[1]"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8, dtype=torch.int64), 4), TypeError, ["pos_embed.dtype"]),
    (lambda: posext.resample(torch.zeros(1, 3, 8), 4, num_prefix_tokens=5), ValueError,
     ["num_prefix_tokens=5", "3 tokens"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), 4, mode="area"), ValueError, ["mode", "bicubic"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), 4, mode="nearest", antialias=True), ValueError,
     ["nearest"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), 4, scale_factor=2.0), ValueError, ["exactly one"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8)), ValueError, ["exactly one"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), scale_factor=0.1), ValueError, ["(0, 0)", ">= 1"]),
    (lambda: posext.resample(torch.zeros(1, 17, 8), scale_factor=-1.0), ValueError, ["scale_factor[0]"]),
    (lambda: posext.resample(torch.zeros(1, 4, 4, 8), 2, num_prefix_tokens=1), ValueError,
     ["NHWC", "prefix"]),
    (lambda: posext.resample(torch.zeros(1, 4, 4, 8), 2, old_size=(2, 8)), ValueError, ["old_size", "NHWC"]),
    (lambda: posext.resample([1.0], 2), TypeError, ["pos_embed", "tensor"]),
])
def test_bad_input_is_a_clear_error(backend, call, exc, words):
    assert_error_names(call, exc, words)


@pytest.mark.parametrize("device", DEVICES)
def test_raw_op_rejects_bad_arguments_without_crashing(device):
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    op = torch.ops.posext.resample
    z = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
    with pytest.raises(RuntimeError, match="expected 1 \\+ 4\\*4 = 17 tokens, got 10"):
        op(z(1, 10, 3), 4, 4, 2, 2, 1, 2, False, False, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="3-D"):
        op(z(10, 3), 3, 3, 2, 2, 1, 2, False, False, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="grid sizes must be positive"):
        op(z(1, 10, 3), 3, 3, 0, 2, 1, 2, False, False, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="mode must be"):
        op(z(1, 10, 3), 3, 3, 2, 2, 1, 7, False, False, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="dtype"):
        op(z(1, 10, 3, dtype=torch.int32), 3, 3, 2, 2, 1, 2, False, False, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="nearest"):
        op(z(1, 10, 3), 3, 3, 2, 2, 1, 0, True, False, 0.0, 0.0)


# ------------------------------------------------------------------------------ CUDA vs CPU kernels

@pytest.mark.cuda
@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_cuda_matches_cpu_forward_and_backward(mode, antialias, align_corners, dtype):
    x = torch.randn(3, 1 + 14 * 11, 70, dtype=torch.float64).to(dtype)
    grad = torch.randn(3, 1 + 24 * 37, 70, dtype=torch.float64).to(dtype)
    results = []
    for device in ("cpu", "cuda"):
        xd = x.to(device).requires_grad_()
        out = posext.resample(xd, (24, 37), old_size=(14, 11), mode=mode, antialias=antialias,
                              align_corners=align_corners)
        g, = torch.autograd.grad(out, xd, grad.to(device))
        results.append((out.cpu(), g.cpu()))
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    rtol = tol if dtype in (torch.bfloat16, torch.float16) else 0  # a one-ulp rounding flip of a large value
    for a, b in zip(*results):
        torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=tol)
