"""posext.apply_rope_2d / Rope2d: a float64 reference written here from the RoPE-ViT formulas (complex
multiply), timm 1.0.31 as an independent oracle, gradients (incl. the mixed-mode frequencies), in-place,
torch.compile.

Tolerances (unit-scale N(0,1) data): float64 <= 1e-12, float32 <= 1e-5 max abs against the float64 reference;
float16 / bfloat16: within one ulp of the float64 result (angles and rotation in float32, rounded once).
Outputs are poisoned: torch's deterministic mode fills fresh tensors with NaN, so unwritten elements fail.
"""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import posext
from posext import _backend
from tests.conftest import DEVICES, assert_error_names

pytestmark = pytest.mark.usefixtures("poison_outputs")

timm_layers = pytest.importorskip("timm.layers")


needs_extension = pytest.mark.skipif(_backend.backend() != "extension", reason="extension not built")


# ------------------------------------------------------------------------------ float64 reference (RoPE-ViT)

def axial_angles_ref(dim, h, w, theta=100.0):
    """RoPE-ViT compute_axial_cis: freqs = 1/theta^(arange(0, dim, 4)[:dim//4] / dim); t_x = i % W,
    t_y = i // W; angles = cat([outer(t_x, freqs), outer(t_y, freqs)], -1) -> [N, dim/2] (float64)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, dtype=torch.float64)[: dim // 4] / dim))
    t = torch.arange(h * w, dtype=torch.float64)
    t_x, t_y = t % w, torch.div(t, w, rounding_mode="floor")
    return torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)


def mixed_angles_ref(freqs, t_x, t_y):
    """RoPE-ViT compute_mixed_cis: per head, t_x * fx + t_y * fy -> [heads, N, dim/2]. freqs
    [2, heads, dim/2]."""
    f = freqs.double()
    return t_x.double()[None, :, None] * f[0][:, None, :] + t_y.double()[None, :, None] * f[1][:, None, :]


def rotate_ref(x, angles, prefix, layout="bhnd", pair_layout="interleaved"):
    """x_complex * polar(1, angle) on grid tokens in float64; prefix tokens unchanged.
    angles [Hf or 1, N-P, D/2] (or [N-P, D/2])."""
    xv = (x.transpose(1, 2) if layout == "bnhd" else x).double()
    d = xv.shape[-1]
    g = xv[:, :, prefix:]
    if pair_layout == "interleaved":
        z = torch.view_as_complex(g.reshape(*g.shape[:-1], d // 2, 2).clone(
            memory_format=torch.contiguous_format))
    else:
        z = torch.complex(g[..., : d // 2], g[..., d // 2:])
    z = z * torch.polar(torch.ones_like(angles), angles)
    if pair_layout == "interleaved":
        rot = torch.view_as_real(z).reshape(g.shape)
    else:
        rot = torch.cat([z.real, z.imag], dim=-1)
    out = torch.cat([xv[:, :, :prefix], rot], dim=2)
    return out.transpose(1, 2) if layout == "bnhd" else out


def make_qk(b, heads, n, d, layout="bhnd", dtype=torch.float64, strided=False, seed=0, device="cpu"):
    """q, k as a model makes them: slices of one fused qkv projection (strided=True), plain contiguous
    tensors, or (strided="channels") views with channel stride 2."""
    gen = torch.Generator().manual_seed(seed)
    if strided == "channels":  # every other channel of a wider tensor: channel stride 2
        wide = make_qk(b, heads, n, 2 * d, layout, dtype, False, seed, device)
        return wide[0][..., ::2], wide[1][..., 1::2]
    if strided:
        qkv = torch.randn(b, n, 3, heads, d, generator=gen, dtype=torch.float64).to(dtype).to(device)
        q, k = qkv[:, :, 0], qkv[:, :, 1]  # [B, N, H, D], non-contiguous
        if layout == "bhnd":
            q, k = q.transpose(1, 2), k.transpose(1, 2)
        return q, k
    shape = (b, heads, n, d) if layout == "bhnd" else (b, n, heads, d)
    q = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(device)
    k = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(device)
    return q, k


def grid_xy(h, w):
    t = torch.arange(h * w, dtype=torch.float64)
    return t % w, torch.div(t, w, rounding_mode="floor")


# ------------------------------------------------------------------------------ forward parity

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("pair_layout", ["interleaved", "half"])
@pytest.mark.parametrize("mode", ["axial", "mixed"])
def test_matches_ropevit_reference(device, backend, dtype, tol, layout, pair_layout, mode):
    heads, d, (h, w), prefix = 3, 16, (5, 7), 1
    q, k = make_qk(2, heads, prefix + h * w, d, layout, dtype, device=device)
    rope = posext.Rope2d(d, heads, mode=mode, pair_layout=pair_layout, layout=layout,
                         num_prefix_tokens=prefix, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64).to(device)
    oq, ok = rope(q, k, (h, w))
    assert oq.shape == q.shape and oq.dtype == dtype and oq.device.type == device
    if mode == "axial":
        angles = axial_angles_ref(d, h, w)[None]
    else:
        angles = mixed_angles_ref(rope.freqs.detach().cpu(), *grid_xy(h, w))
    for out, x in ((oq, q), (ok, k)):
        assert not out.isnan().any(), "unwritten (NaN-poisoned) elements"
        expected = rotate_ref(x.cpu(), angles, prefix, layout, pair_layout)
        torch.testing.assert_close(out.cpu().double(), expected, rtol=0, atol=tol)
        assert torch.equal(out[:, :prefix] if layout == "bnhd" else out[:, :, :prefix],
                           x[:, :prefix] if layout == "bnhd" else x[:, :, :prefix]), \
            "prefix tokens bit for bit"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("pair_layout", ["interleaved", "half"])
def test_half_precision_within_one_ulp(device, backend, dtype, pair_layout):
    heads, d, (h, w) = 4, 64, (14, 14)
    q, k = make_qk(2, heads, 1 + h * w, d, "bhnd", dtype, seed=5)
    freqs = posext.rope_mixed_freqs(d, heads, generator=torch.Generator().manual_seed(0))
    oq, ok = posext.apply_rope_2d(q.to(device), k.to(device), (h, w), freqs.to(device),
                                  pair_layout=pair_layout)
    oq, ok = oq.cpu(), ok.cpu()
    ulp = 2.0 ** -10 if dtype == torch.float16 else 2.0 ** -7
    angles = mixed_angles_ref(freqs, *grid_xy(h, w))
    for out, x in ((oq, q), (ok, k)):
        assert out.dtype == dtype
        exact = rotate_ref(x, angles, 1, "bhnd", pair_layout)
        err = (out.double() - exact).abs()
        assert (err <= ulp * exact.abs() + 1e-6).all(), err.max()


@st.composite
def rope_cases(draw):
    return dict(batch=draw(st.integers(0, 3)), heads=draw(st.integers(1, 4)), h=draw(st.integers(1, 6)),
                w=draw(st.integers(1, 6)), prefix=draw(st.integers(0, 3)),
                d=draw(st.sampled_from([2, 4, 8, 12, 16])),
                layout=draw(st.sampled_from(["bhnd", "bnhd"])),
                pair_layout=draw(st.sampled_from(["interleaved", "half"])),
                per_head=draw(st.booleans()), fractional=draw(st.booleans()),
                strided=draw(st.sampled_from([False, True, "channels"])),
                dtype=draw(st.sampled_from([torch.float64, torch.float32])), seed=draw(st.integers(0, 2**16)))


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=150, deadline=None)
@given(case=rope_cases())
def test_random_shapes(device, backend, case):
    b, heads, h, w, p, d = (case[key] for key in ("batch", "heads", "h", "w", "prefix", "d"))
    n = p + h * w
    q, k = make_qk(b, heads, n, d, case["layout"], case["dtype"], case["strided"], case["seed"], device)
    gen = torch.Generator().manual_seed(case["seed"])
    freqs = torch.randn(2, heads if case["per_head"] else 1, d // 2, generator=gen, dtype=torch.float64)
    if case["fractional"]:
        positions = torch.rand(h * w, 2, generator=gen, dtype=torch.float64) * 10 - 3
    else:
        positions = posext.rope_positions_2d((h, w), dtype=torch.float64)
    oq, ok = posext.apply_rope_2d(q, k, positions.to(device) if case["fractional"] else (h, w),
                                  freqs.to(device), num_prefix_tokens=p, layout=case["layout"],
                                  pair_layout=case["pair_layout"])
    angles = mixed_angles_ref(freqs, positions[:, 0], positions[:, 1])
    tol = 1e-12 if case["dtype"] == torch.float64 else 1e-5
    for out, x in ((oq, q), (ok, k)):
        assert out.shape == x.shape and out.dtype == x.dtype
        assert not out.isnan().any(), "unwritten (NaN-poisoned) elements"
        expected = rotate_ref(x.cpu(), angles, p, case["layout"], case["pair_layout"])
        torch.testing.assert_close(out.cpu().double(), expected, rtol=0, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_single_token_grid_is_identity_at_origin(device, backend):
    q, k = make_qk(2, 3, 2, 8, device=device)
    oq, ok = posext.apply_rope_2d(q, k, (1, 1), posext.rope_axial_freqs(8, device=device))
    assert torch.equal(oq, q) and torch.equal(ok, k)  # position (0, 0): angle 0


# ------------------------------------------------------------------------------ timm oracle

def timm_apply(x, emb, half=False):
    return timm_layers.apply_rot_embed_cat(x, emb, half=half)


@pytest.mark.parametrize("pair_layout", ["interleaved", "half"])
@pytest.mark.parametrize("hw", [(14, 14), (16, 9), (1, 5)])
def test_axial_matches_timm_rotary_embedding_cat(backend, pair_layout, hw):
    """conventions.md §3: RotaryEmbeddingCat(d, in_pixels=False, temperature=100, grid_indexing='xy') is axial
    RoPE-ViT; timm's apply_rot_embed_cat (rot / rope_rotate_half) is the rotation."""
    d, heads = 32, 4
    half = pair_layout == "half"
    timm_rope = timm_layers.RotaryEmbeddingCat(d, in_pixels=False, temperature=100, grid_indexing="xy",
                                               rotate_half=half)
    emb = timm_rope.get_embed(hw)  # [N, 2d] = cat(sin, cos), float32
    q, k = make_qk(2, heads, 1 + hw[0] * hw[1], d, dtype=torch.float32, seed=1)
    oq, ok = posext.apply_rope_2d(q, k, hw, posext.rope_axial_freqs(d), pair_layout=pair_layout)
    for out, x in ((oq, q), (ok, k)):
        expected = torch.cat([x[:, :, :1], timm_apply(x[:, :, 1:], emb, half)], dim=2)
        torch.testing.assert_close(out, expected, rtol=0, atol=2e-5)
    # angles: timm's sin table against the float64 RoPE-ViT angles (3e-8 in conventions.md, float32 sin)
    sin_t = emb[:, :d]
    sin_ref = axial_angles_ref(d, *hw).sin()
    sin_ref = torch.cat([sin_ref, sin_ref], -1) if half else sin_ref.repeat_interleave(2, -1)
    assert (sin_t.double() - sin_ref).abs().max() < 1e-6


def test_ref_grid_size_matches_timm_ref_feat_shape(backend):
    d, hw, ref = 16, (12, 20), (16, 16)
    timm_rope = timm_layers.RotaryEmbeddingCat(d, in_pixels=False, temperature=10000, grid_indexing="xy",
                                               ref_feat_shape=list(ref))
    emb = timm_rope.get_embed(hw)
    q, k = make_qk(1, 2, hw[0] * hw[1], d, dtype=torch.float32, seed=2)
    rope = posext.Rope2d(d, 2, theta=10000, num_prefix_tokens=0, ref_grid_size=ref)
    oq, ok = rope(q, k, hw)
    torch.testing.assert_close(oq, timm_apply(q, emb), rtol=0, atol=2e-5)
    torch.testing.assert_close(ok, timm_apply(k, emb), rtol=0, atol=2e-5)


def test_normalized_positions_match_timm_centered_grid(backend):
    d, hw = 16, (6, 10)
    timm_rope = timm_layers.RotaryEmbeddingCat(d, in_pixels=False, temperature=100, grid_indexing="xy",
                                               grid_type="centered", normalize_coords="separate")
    emb = timm_rope.get_embed(hw)
    pos = posext.rope_positions_2d(hw, mode="normalized", dtype=torch.float64)
    h, w = hw
    assert torch.allclose(pos[:, 0], (2 * (torch.arange(h * w) % w + 0.5) / w - 1).double())
    assert torch.allclose(pos[:, 1], (2 * (torch.arange(h * w) // w + 0.5) / h - 1).double())
    q, k = make_qk(1, 2, h * w, d, dtype=torch.float32, seed=4)
    rope = posext.Rope2d(d, 2, num_prefix_tokens=0, positions="normalized")
    oq, _ = rope(q, k, hw)
    torch.testing.assert_close(oq, timm_apply(q, emb), rtol=0, atol=2e-5)


@pytest.mark.skipif(not hasattr(timm_layers, "RotaryEmbeddingMixed"),
                    reason="timm without RotaryEmbeddingMixed")
def test_mixed_matches_timm_rotary_embedding_mixed(backend):
    heads, d, hw = 4, 32, (7, 9)
    torch.manual_seed(0)
    timm_rope = timm_layers.RotaryEmbeddingMixed(heads * d, depth=1, num_heads=heads, temperature=10)
    emb = timm_rope.get_embed(list(hw))[0]  # [heads, N, 2d]
    freqs = timm_rope.freqs.detach()[:, 0]  # [2, heads, d/2]
    q, k = make_qk(2, heads, 1 + hw[0] * hw[1], d, dtype=torch.float32, seed=6)
    oq, ok = posext.apply_rope_2d(q, k, hw, freqs)
    for out, x in ((oq, q), (ok, k)):
        expected = torch.cat([x[:, :, :1], timm_apply(x[:, :, 1:], emb)], dim=2)
        torch.testing.assert_close(out, expected, rtol=0, atol=2e-5)


def test_mixed_init_follows_ropevit():
    d, heads, theta = 32, 6, 10.0
    f = posext.rope_mixed_freqs(d, heads, theta=theta, generator=torch.Generator().manual_seed(1),
                                dtype=torch.float64)
    assert f.shape == (2, heads, d // 2)
    mag = theta ** (-torch.arange(d // 4, dtype=torch.float64) / (d // 4))
    fx, fy = f[0], f[1]
    a = torch.atan2(fy[:, :1], fx[:, :1])  # the head's random angle
    torch.testing.assert_close(fx, torch.cat([mag * a.cos(), mag * (a + math.pi / 2).cos()], -1), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(fy, torch.cat([mag * a.sin(), mag * (a + math.pi / 2).sin()], -1), rtol=0,
                               atol=1e-12)
    assert len({round(v, 6) for v in a.flatten().tolist()}) == heads  # one random angle per head
    timm_f = timm_layers.pos_embed_sincos.init_random_2d_freqs(d, 1, heads, theta)[:, 0].double()
    torch.testing.assert_close(timm_f.pow(2).sum(0), f.pow(2).sum(0), rtol=1e-6, atol=0)  # same magnitudes


def test_axial_freqs_layout():
    f = posext.rope_axial_freqs(16, theta=100.0, dtype=torch.float64)
    w = 100.0 ** (-torch.arange(4, dtype=torch.float64) / 4)
    assert f.shape == (2, 1, 8)
    assert torch.equal(f[0, 0], torch.cat([w, torch.zeros(4, dtype=torch.float64)]))
    assert torch.equal(f[1, 0], torch.cat([torch.zeros(4, dtype=torch.float64), w]))


# ------------------------------------------------------------------------------ in place, autograd, compile

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("pair_layout", ["interleaved", "half"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inplace_equals_out_of_place(device, backend, layout, pair_layout, dtype):
    q, k = make_qk(2, 3, 1 + 4 * 5, 8, layout, dtype, strided=True, seed=7, device=device)
    freqs = posext.rope_mixed_freqs(8, 3, generator=torch.Generator().manual_seed(2)).to(device)
    eq, ek = posext.apply_rope_2d(q, k, (4, 5), freqs, layout=layout, pair_layout=pair_layout)
    q2 = q.clone()
    rq, rk = posext.apply_rope_2d(q, k, (4, 5), freqs, layout=layout, pair_layout=pair_layout, inplace=True)
    assert rq is q and rk is k
    assert torch.equal(q, eq) and torch.equal(k, ek)
    assert not torch.equal(q, q2)


def _grad_inputs(per_head, seed=0, grid=(2, 3), device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    n = 1 + grid[0] * grid[1]
    q = torch.randn(2, 3, n, 8, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    k = torch.randn(2, 3, n, 8, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    freqs = torch.randn(2, 3 if per_head else 1, 4, generator=gen,
                        dtype=torch.float64).to(device).requires_grad_()
    return q, k, freqs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pair_layout", ["interleaved", "half"])
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_gradcheck_including_frequencies(device, backend, pair_layout, per_head, layout):
    q, k, freqs = _grad_inputs(per_head, device=device)
    if layout == "bnhd":
        q, k = q.detach().transpose(1, 2).requires_grad_(), k.detach().transpose(1, 2).requires_grad_()
    pos = torch.rand(6, 2, dtype=torch.float64, device=device) * 3

    def f(q, k, freqs):
        return posext.apply_rope_2d(q, k, pos, freqs, layout=layout, pair_layout=pair_layout)

    assert torch.autograd.gradcheck(f, (q, k, freqs))


@needs_extension
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("per_head", [False, True])
def test_backward_matches_fallback_and_is_deterministic(monkeypatch, device, per_head):
    # 7 x 9 grid tokens: several of the CPU kernel's 16-token blocks, the last one partial
    q, k, freqs = _grad_inputs(per_head, seed=3, grid=(7, 9), device=device)
    q, k, freqs = (t.detach().float().requires_grad_() for t in (q, k, freqs))
    gq, gk = torch.randn_like(q), torch.randn_like(k)

    def grads(threads=None):
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            oq, ok = posext.apply_rope_2d(q, k, (7, 9), freqs)
            return torch.autograd.grad((oq, ok), (q, k, freqs), (gq, gk))
        finally:
            torch.set_num_threads(before)

    ext = grads()
    assert all(torch.equal(a, b) for a, b in zip(ext, grads(1)))  # bitwise, whatever the thread count
    assert all(torch.equal(a, b) for a, b in zip(ext, grads()))
    monkeypatch.setattr(_backend, "use_extension", lambda device: False)
    for a, b in zip(ext, grads()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_extension
def test_only_one_output_used():
    q, k, freqs = _grad_inputs(True)
    oq, _ = posext.apply_rope_2d(q, k, (2, 3), freqs)
    oq.sum().backward()
    assert k.grad is None or torch.equal(k.grad, torch.zeros_like(k))
    assert q.grad is not None and freqs.grad is not None


@pytest.mark.parametrize("mode", ["axial", "mixed"])
def test_torch_compile_fullgraph(backend, mode):
    torch._dynamo.reset()
    rope = posext.Rope2d(16, 2, mode=mode, generator=torch.Generator().manual_seed(0))
    q, k = make_qk(2, 2, 1 + 3 * 4, 16, dtype=torch.float32)
    q.requires_grad_()

    def step(q, k):
        oq, ok = rope(q, k, (3, 4))
        return (oq * ok).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    loss = compiled(q, k)
    loss.backward()
    grads = (q.grad.clone(),) + ((rope.freqs.grad.clone(),) if mode == "mixed" else ())
    q.grad = None
    if mode == "mixed":
        rope.freqs.grad = None
    eager = step(q, k)
    eager.backward()
    torch.testing.assert_close(loss, eager)
    torch.testing.assert_close(grads[0], q.grad)
    if mode == "mixed":
        torch.testing.assert_close(grads[1], rope.freqs.grad)


@needs_extension
def test_torch_compile_inplace():
    torch._dynamo.reset()
    freqs = posext.rope_axial_freqs(8)
    q, k = make_qk(1, 2, 1 + 2 * 2, 8, dtype=torch.float32)
    expected = posext.apply_rope_2d(q, k, (2, 2), freqs)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(q, k):
        posext.apply_rope_2d(q, k, (2, 2), freqs, inplace=True)
        return q, k

    with torch.no_grad():
        f(q, k)
    assert torch.equal(q, expected[0]) and torch.equal(k, expected[1])


# ------------------------------------------------------------------------------ bad input

def test_bad_input_messages(backend):
    q, k = make_qk(1, 2, 5, 8, dtype=torch.float32)
    f = posext.rope_axial_freqs(8)
    call = posext.apply_rope_2d
    assert_error_names(lambda: call(q[0], k[0], (2, 2), f), ValueError, ["q", "4-D", "(2, 5, 8)"])
    assert_error_names(lambda: call(q, k[..., :4], (2, 2), f), ValueError,
                       ["k", "(1, 2, 5, 8)", "(1, 2, 5, 4)"])
    assert_error_names(lambda: call(q[..., :7], k[..., :7], (2, 3), f), ValueError, ["head_dim", "even", "7"])
    assert_error_names(lambda: call(q, k, (2, 2), f, num_prefix_tokens=6), ValueError,
                       ["num_prefix_tokens=6", "5"])
    assert_error_names(lambda: call(q, k, (2, 3), f), ValueError, ["(2, 3)", "6", "N = 5"])
    assert_error_names(lambda: call(q, k, torch.zeros(3, 2), f, num_prefix_tokens=1), ValueError,
                       ["positions", "[4, 2]", "(3, 2)"])
    # by default the tokens in front of the grid are what the shapes leave: here 5 - 3 = 2
    assert call(q, k, torch.zeros(3, 2), f)[0].shape == q.shape
    assert_error_names(lambda: call(q, k, (2, 2), f.repeat(1, 1, 2)[:, :, :5]), ValueError,
                       ["freqs", "head_dim/2 (4)", "(2, 1, 5)"])
    assert_error_names(lambda: call(q, k, (2, 2), torch.zeros(2, 3, 4)), ValueError, ["freqs", "heads (2)"])
    assert_error_names(lambda: call(q, k, (2, 2), f, layout="nhd"), ValueError, ["layout", "'nhd'"])
    assert_error_names(lambda: call(q, k, (2, 2), f, pair_layout="neox"), ValueError,
                       ["pair_layout", "'neox'"])
    assert_error_names(lambda: call(q.int(), k.int(), (2, 2), f), TypeError, ["q.dtype", "torch.int32"])
    assert_error_names(lambda: call(q, k.double(), (2, 2), f), TypeError, ["k.dtype", "float64"])
    assert_error_names(lambda: call(q, k, (2, 2), f, num_prefix_tokens=1.0), TypeError,
                       ["num_prefix_tokens", "int"])
    assert_error_names(lambda: call(q, k, (2, 2), f.int()), TypeError, ["freqs.dtype"])
    assert_error_names(lambda: call(q.requires_grad_(), k, (2, 2), f, inplace=True), ValueError,
                       ["inplace", "grad"])
    assert_error_names(lambda: posext.rope_axial_freqs(6), ValueError, ["head_dim", "divisible by 4", "6"])
    assert_error_names(lambda: posext.rope_positions_2d((2, 0)), ValueError, ["grid_size[1] (W)", "> 0"])
    assert_error_names(lambda: posext.rope_positions_2d(3, mode="pixel"), ValueError, ["mode", "'pixel'"])
    assert_error_names(lambda: posext.Rope2d(8, mode="cat"), ValueError, ["mode", "'cat'"])
    assert_error_names(lambda: posext.Rope2d(8)(q.detach(), k), ValueError, ["grid_size", "positions"])


@needs_extension
def test_op_checks_in_cpp():
    q, k = make_qk(1, 2, 5, 8, dtype=torch.float32)
    pos, f = posext.rope_positions_2d((2, 2)), posext.rope_axial_freqs(8)
    op = torch.ops.posext.rope_2d
    assert_error_names(lambda: op(q, k, pos.double(), f, 1, 0, 0), RuntimeError,
                       ["positions", "Float", "Double"])
    assert_error_names(lambda: op(q, k, pos, f, 1, 2, 0), RuntimeError, ["layout", "got 2"])
    assert_error_names(lambda: op(q, k, pos, f, 1, 0, 5), RuntimeError, ["pair layout", "got 5"])
    assert_error_names(lambda: op(q, k, pos, f, 9, 0, 0), RuntimeError, ["num_prefix_tokens", "[0, 5]", "9"])
    assert_error_names(lambda: op(q, k, pos[:3], f, 1, 0, 0), RuntimeError, ["positions", "[4, 1 to 3 axes]",
                                                                            "[3, 2]"])
    assert_error_names(lambda: op(q, k, pos, f[:1], 1, 0, 0), RuntimeError, ["freqs", "A (2", "[1, 1, 4]"])
    assert_error_names(lambda: op(q, k, pos.repeat(1, 2), f.repeat(2, 1, 1), 1, 0, 0), RuntimeError,
                       ["positions", "1 to 3 axes", "[4, 4]"])
    assert_error_names(lambda: op(q, k[..., :4], pos, f, 1, 0, 0), RuntimeError, ["k must have q's shape"])
    assert_error_names(lambda: torch.ops.posext.rope_2d_(q, q, pos, f, 1, 0, 0), RuntimeError,
                       ["share memory"])


# ------------------------------------------------------------------------------ CUDA

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_head", [False, True])
def test_cuda_matches_cpu_forward_and_backward(dtype, per_head):
    q, k = make_qk(3, 4, 1 + 6 * 7, 16, "bnhd", dtype, strided=True, seed=9)
    freqs = torch.randn(2, 4 if per_head else 1, 8)
    res = {}
    for device in ("cpu", "cuda"):
        qd, kd = q.to(device).requires_grad_(), k.to(device).requires_grad_()
        fd = freqs.to(device).requires_grad_()
        oq, ok = posext.apply_rope_2d(qd, kd, (6, 7), fd, layout="bnhd")
        (oq.float().sin().sum() + ok.float().cos().sum()).backward()
        res[device] = [t.detach().cpu().float() for t in (oq, ok, qd.grad, kd.grad, fd.grad)]
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    # half: one-ulp rounding flips of large values, hence rtol
    for a, b in zip(res["cpu"][:4], res["cuda"][:4]):
        torch.testing.assert_close(a, b, rtol=0 if dtype == torch.float32 else tol, atol=tol)
    torch.testing.assert_close(res["cpu"][4], res["cuda"][4], rtol=1e-3,
                               atol=1e-2 if dtype != torch.float32 else 1e-4)
