"""posext.add_pos_embed: x + resample(pos_embed) fused. Oracles: the unfused x + posext.resample (bitwise: the
fused op rounds the table exactly as the unfused add sees it), the NumPy float64 reference of
tests/reference_resample.py, and autograd through the unfused path."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import posext
from posext import _backend
from tests import reference_resample as ref
from tests.conftest import DEVICES, assert_error_names

pytestmark = pytest.mark.usefixtures("poison_outputs")

COMBOS = [("bicubic", False, False), ("bicubic", True, False), ("bicubic", False, True),
          ("bilinear", False, False), ("bilinear", True, False), ("bilinear", False, True),
          ("nearest", False, False)]
needs_extension = pytest.mark.skipif(_backend.backend() != "extension", reason="extension not built")


@st.composite
def add_cases(draw):
    mode, antialias, align_corners = draw(st.sampled_from(COMBOS))
    return dict(mode=mode, antialias=antialias, align_corners=align_corners,
                old_hw=(draw(st.integers(1, 7)), draw(st.integers(1, 7))),
                new_hw=(draw(st.integers(1, 9)), draw(st.integers(1, 9))),
                prefix=draw(st.integers(0, 3)), batch=draw(st.integers(0, 3)),
                channels=draw(st.integers(1, 9)),
                shared=draw(st.booleans()), strided=draw(st.sampled_from([None, "tokens", "channels"])),
                dtype=draw(st.sampled_from([torch.float64, torch.float32])), seed=draw(st.integers(0, 2**16)))


def make_x(batch, tokens, channels, dtype, strided, gen, device):
    if strided == "tokens":  # every other token of a longer sequence
        return torch.randn(batch, 2 * tokens, channels, generator=gen,
                           dtype=torch.float64).to(dtype).to(device)[:, ::2]
    if strided == "channels":
        return torch.randn(batch, tokens, 2 * channels, generator=gen,
                           dtype=torch.float64).to(dtype).to(device)[..., ::2]
    return torch.randn(batch, tokens, channels, generator=gen, dtype=torch.float64).to(dtype).to(device)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=150, deadline=None)
@given(case=add_cases())
def test_random_shapes_match_unfused_and_reference(device, backend, case):
    gen = torch.Generator().manual_seed(case["seed"])
    p, (h, w), (nh, nw), c = case["prefix"], case["old_hw"], case["new_hw"], case["channels"]
    table_batch = 1 if case["shared"] else case["batch"]
    pe = torch.randn(table_batch, p + h * w, c, generator=gen,
                     dtype=torch.float64).to(case["dtype"]).to(device)
    x = make_x(case["batch"], p + nh * nw, c, case["dtype"], case["strided"], gen, device)
    kw = dict(old_size=(h, w), num_prefix_tokens=p, mode=case["mode"], antialias=case["antialias"],
              align_corners=case["align_corners"])
    out = posext.add_pos_embed(x, pe, (nh, nw), **kw)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device.type == device
    assert not out.isnan().any(), "unwritten (NaN-poisoned) elements"
    unfused = x + posext.resample(pe, (nh, nw), **kw)
    assert torch.equal(out, unfused)
    table = ref.resample_tokens(pe.cpu().double().numpy(), (nh, nw), (h, w), p, mode=case["mode"],
                                antialias=case["antialias"], align_corners=case["align_corners"])
    expected = x.cpu().double().numpy() + table
    tol = 1e-12 if case["dtype"] == torch.float64 else 1e-4
    np.testing.assert_allclose(out.cpu().double().numpy(), expected, rtol=0, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_equals_unfused(device, backend, dtype):
    gen = torch.Generator().manual_seed(0)
    pe = torch.randn(1, 1 + 14 * 14, 48, generator=gen).to(dtype).to(device)
    x = torch.randn(4, 1 + 20 * 17, 48, generator=gen).to(dtype).to(device)
    out = posext.add_pos_embed(x, pe, (20, 17), antialias=True)
    assert out.dtype == dtype and torch.equal(out, x + posext.resample(pe, (20, 17), antialias=True))


@pytest.mark.parametrize("device", DEVICES)
def test_nhwc_layout_and_size_from_x(device, backend):
    gen = torch.Generator().manual_seed(1)
    pe = torch.randn(1, 6, 5, 8, generator=gen).to(device)
    x = torch.randn(3, 9, 4, 8, generator=gen).to(device)
    out = posext.add_pos_embed(x, pe)
    assert out.shape == x.shape and torch.equal(out, x + posext.resample(pe, (9, 4)))
    unbatched = torch.randn(1 + 30, 8, generator=gen).to(device)  # [P + N, C] table, timm/open_clip style
    xt = torch.randn(2, 1 + 9 * 4, 8, generator=gen).to(device)
    assert torch.equal(posext.add_pos_embed(xt, unbatched, (9, 4), old_size=(6, 5)),
                       xt + posext.resample(unbatched, (9, 4), old_size=(6, 5)))


@pytest.mark.parametrize("device", DEVICES)
def test_scale_factor_and_dtype_mismatch_fallback(device, backend):
    gen = torch.Generator().manual_seed(2)
    pe = torch.randn(1, 1 + 8 * 8, 4, generator=gen).to(device)
    x = torch.randn(2, 1 + 12 * 12, 4, generator=gen).to(device)
    out = posext.add_pos_embed(x, pe, scale_factor=1.5)
    assert torch.equal(out, x + posext.resample(pe, scale_factor=1.5))
    xh = x.to(torch.bfloat16)  # eager type promotion: bf16 + fp32 -> fp32
    out = posext.add_pos_embed(xh, pe, (12, 12))
    assert out.dtype == torch.float32 and torch.equal(out, xh + posext.resample(pe, (12, 12)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
@pytest.mark.parametrize("shared", [True, False])
def test_gradcheck(device, backend, mode, antialias, align_corners, shared):
    gen = torch.Generator().manual_seed(3)
    pe = torch.randn(1 if shared else 2, 2 + 3 * 4, 3, generator=gen,
                     dtype=torch.float64).to(device).requires_grad_()
    x = torch.randn(2, 2 + 5 * 2, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_()

    def f(x, pe):
        return posext.add_pos_embed(x, pe, (5, 2), old_size=(3, 4), num_prefix_tokens=2, mode=mode,
                                    antialias=antialias, align_corners=align_corners)

    assert torch.autograd.gradcheck(f, (x, pe))
    assert torch.autograd.gradgradcheck(f, (x, pe))


@pytest.mark.parametrize("device", DEVICES)
def test_backward_matches_unfused_and_is_deterministic(device, backend):
    gen = torch.Generator().manual_seed(4)
    pe = torch.randn(1, 1 + 14 * 14, 64, generator=gen).to(device).requires_grad_()
    x = torch.randn(5, 1 + 23 * 19, 64, generator=gen).to(device).requires_grad_()
    g = torch.randn(x.shape, generator=gen).to(device)

    def grads(fused):
        y = posext.add_pos_embed(x, pe, (23, 19), antialias=True) if fused else \
            x + posext.resample(pe, (23, 19), antialias=True)
        return torch.autograd.grad(y, (x, pe), g)

    fused, again, unfused = grads(True), grads(True), grads(False)
    assert all(torch.equal(a, b) for a, b in zip(fused, again))
    assert torch.equal(fused[0], g)
    torch.testing.assert_close(fused[1], unfused[1], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device, backend):
    pe = torch.randn(1, 1 + 4, 3, device=device, requires_grad=True)
    x = torch.randn(0, 1 + 9, 3, device=device, requires_grad=True)
    out = posext.add_pos_embed(x, pe, (3, 3))
    assert out.shape == (0, 10, 3)
    (gpe,) = torch.autograd.grad(out.sum(), pe)
    assert torch.equal(gpe, torch.zeros_like(pe))


def test_bad_input_names_the_argument(backend):
    pe = torch.randn(1, 1 + 16, 4)
    assert_error_names(lambda: posext.add_pos_embed(torch.randn(2, 1 + 20, 4), pe, (5, 5)), ValueError,
                       ["x must be", "new_size (5, 5)", "(2, 21, 4)", "26"])
    assert_error_names(lambda: posext.add_pos_embed(torch.randn(2, 1 + 25, 4), pe.expand(3, -1, -1), (5, 5)),
                       ValueError, ["pos_embed batch", "1 or x's batch 2", "3"])
    assert_error_names(lambda: posext.add_pos_embed(torch.randn(2, 26, 4), pe), ValueError, ["new_size"])
    assert_error_names(lambda: posext.add_pos_embed(torch.randn(26, 4), pe, (5, 5)), ValueError,
                       ["x must be [B, P + H*W, C]", "(26, 4)"])
    assert_error_names(lambda: posext.add_pos_embed(torch.randn(2, 26, 4).long(), pe, (5, 5)), TypeError,
                       ["x.dtype"])
    assert_error_names(lambda: posext.add_pos_embed(torch.randn(2, 26, 4), pe, (5, 5), mode="area"),
                       ValueError, ["mode"])


@needs_extension
@pytest.mark.parametrize("device", DEVICES)
def test_raw_op_errors_are_runtime_errors(device):
    pe = torch.randn(1, 1 + 16, 4, device=device)
    x = lambda *shape: torch.randn(*shape, device=device)  # noqa: E731
    with pytest.raises(RuntimeError, match="x must be"):
        torch.ops.posext.resample_add(x(2, 20, 4), pe, 4, 4, 5, 5, 1, 2, False, False, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="pos_embed batch"):
        torch.ops.posext.resample_add(x(2, 26, 4), pe.expand(3, -1, -1), 4, 4, 5, 5, 1, 2, False, False, 0.0,
                                      0.0)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.posext.resample_add(x(2, 26, 4).double(), pe, 4, 4, 5, 5, 1, 2, False, False, 0.0, 0.0)


@needs_extension
def test_torch_compile_fullgraph_dynamic():
    pe = torch.randn(1, 1 + 14 * 14, 16, requires_grad=True)

    def f(x, h, w):
        return posext.add_pos_embed(x, pe, (h, w), antialias=True)

    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    for h, w in ((10, 12), (20, 9), (31, 31)):
        x = torch.randn(2, 1 + h * w, 16, requires_grad=True)
        out = compiled(x, h, w)
        torch.testing.assert_close(out, f(x, h, w), rtol=0, atol=0)
        (g,) = torch.autograd.grad(out.sum(), pe)
        (e,) = torch.autograd.grad(f(x, h, w).sum(), pe)
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode,antialias,align_corners", COMBOS)
def test_cuda_matches_cpu(mode, antialias, align_corners, dtype):
    gen = torch.Generator().manual_seed(5)
    pe = torch.randn(1, 1 + 14 * 14, 96, generator=gen).to(dtype)
    x = torch.randn(3, 1 + 17 * 23, 96, generator=gen).to(dtype)
    g = torch.randn(x.shape, generator=gen).to(dtype)
    results = []
    for device in ("cpu", "cuda"):
        pd, xd = pe.to(device).requires_grad_(), x.to(device).requires_grad_()
        out = posext.add_pos_embed(xd, pd, (17, 23), mode=mode, antialias=antialias,
                                   align_corners=align_corners)
        results.append((out,) + torch.autograd.grad(out, (xd, pd), g.to(device)))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    for a, b in zip(*results):
        torch.testing.assert_close(b.cpu(), a, **tol)
