"""posext.apply_rope over 1, 2 and 3 position axes and M-RoPE sections: a float64 complex-number reference
(both backends, every layout), gradients (gradcheck, repeatable frequency gradient), torch.compile, and the
Qwen2-VL (contiguous) and Qwen3-VL (interleaved) M-RoPE of HF transformers within 1e-5."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import posext
from tests.conftest import DEVICES

pytestmark = pytest.mark.usefixtures("poison_outputs")


def reference(q, k, positions, freqs, prefix, layout, pair_layout):
    """e^(i angle) on complex pairs in float64; angle = sum_a t_a f[a, h, p]."""
    def rot(x):
        x = x.double() if layout == "bhnd" else x.double().transpose(1, 2)  # [B, H, N, D]
        half = x.shape[-1] // 2
        interleaved = pair_layout == "interleaved"
        a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., :half], x[..., half:])
        angle = torch.einsum("na,ahp->hnp", positions.double(), freqs.double())
        z = torch.complex(a[:, :, prefix:], b[:, :, prefix:]) * torch.polar(torch.ones_like(angle), angle)
        a2, b2 = torch.cat([a[:, :, :prefix], z.real], 2), torch.cat([b[:, :, :prefix], z.imag], 2)
        out = torch.stack([a2, b2], -1).flatten(-2) if interleaved else torch.cat([a2, b2], -1)
        return out if layout == "bhnd" else out.transpose(1, 2)
    return rot(q), rot(k)


@pytest.mark.parametrize("device", DEVICES)
@given(axes=st.integers(1, 3), heads=st.integers(1, 3), per_head=st.booleans(), tokens=st.integers(0, 9),
       prefix=st.integers(0, 2), half_pairs=st.integers(1, 6), layout=st.sampled_from(["bhnd", "bnhd"]),
       pair_layout=st.sampled_from(["interleaved", "half"]),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_matches_the_complex_reference(backend, device, axes, heads, per_head, tokens, prefix, half_pairs,
                                       layout, pair_layout, dtype):
    gen = torch.Generator().manual_seed(axes * 100 + tokens * 10 + prefix)
    n, d = prefix + tokens, 2 * half_pairs
    shape = (2, heads, n, d) if layout == "bhnd" else (2, n, heads, d)
    q, k = (torch.randn(*shape, generator=gen, dtype=dtype) for _ in range(2))
    positions = torch.rand(tokens, axes, generator=gen, dtype=dtype) * 20 - 5
    freqs = torch.randn(axes, heads if per_head else 1, half_pairs, generator=gen, dtype=dtype)
    got = posext.apply_rope(q.to(device), k.to(device), positions.to(device), freqs.to(device),
                            num_prefix_tokens=prefix, layout=layout, pair_layout=pair_layout)
    want = reference(q, k, positions, freqs, prefix, layout, pair_layout)
    tol = 1e-12 if dtype == torch.float64 else 5e-5
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu().double(), w, rtol=0, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("pair_layout", ["interleaved", "half"])
def test_partial_rope_and_grouped_query_heads(backend, device, layout, pair_layout):
    """k with 2 of q's 6 heads; 3 of 8 pairs rotated (partial RoPE), the other 10 channels passed."""
    gen = torch.Generator().manual_seed(7)
    n, prefix = 11, 2
    def shape(heads):
        return (2, heads, n, 16) if layout == "bhnd" else (2, n, heads, 16)

    q = torch.randn(*shape(6), generator=gen, dtype=torch.float64)
    k = torch.randn(*shape(2), generator=gen, dtype=torch.float64)
    positions = torch.rand(n - prefix, 2, generator=gen, dtype=torch.float64) * 9
    freqs = torch.randn(2, 1, 3, generator=gen, dtype=torch.float64)
    got = posext.apply_rope(q.to(device), k.to(device), positions.to(device), freqs.to(device),
                            num_prefix_tokens=prefix, layout=layout, pair_layout=pair_layout)
    for x, g in zip((q, k), got):
        rotated = reference(x[..., :6], x[..., :6], positions, freqs, prefix, layout, pair_layout)[0]
        torch.testing.assert_close(g.cpu(), torch.cat([rotated, x[..., 6:]], -1), rtol=0, atol=1e-12)
    qr, kr = (t.clone().requires_grad_() for t in (q[:1, :, :5] if layout == "bhnd" else q[:1, :5],
                                                   k[:1, :, :5] if layout == "bhnd" else k[:1, :5]))
    f = freqs.clone().requires_grad_()
    def rotated(a, b, c):
        return posext.apply_rope(a, b, positions[:3], c, num_prefix_tokens=prefix, layout=layout,
                                 pair_layout=pair_layout)

    torch.autograd.gradcheck(rotated, (qr, kr, f))


def test_two_axes_are_apply_rope_2d_bit_for_bit():
    q, k = torch.randn(2, 3, 17, 16), torch.randn(2, 3, 17, 16)
    pos, freqs = posext.rope_positions_2d((4, 4)), posext.rope_mixed_freqs(16, 3)
    a = posext.apply_rope(q, k, pos, freqs, num_prefix_tokens=1)
    b = posext.apply_rope_2d(q, k, pos, freqs, num_prefix_tokens=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("axes", [1, 3])
def test_gradients_and_a_repeatable_frequency_gradient(backend, axes):
    gen = torch.Generator().manual_seed(axes)
    q, k = (torch.randn(1, 2, 6, 8, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    positions = torch.rand(5, axes, generator=gen, dtype=torch.float64) * 4
    freqs = torch.randn(axes, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b, f: posext.apply_rope(a, b, positions, f, num_prefix_tokens=1),
                             (q, k, freqs))
    f32 = freqs.detach().float().requires_grad_()
    q32, k32 = q.detach().float(), k.detach().float()
    def freq_grad():
        rotated = posext.apply_rope(q32, k32, positions.float(), f32)
        return torch.autograd.grad(rotated[0].sum() + rotated[1].sum(), f32)[0]

    grads = [freq_grad(), freq_grad()]
    assert torch.equal(grads[0], grads[1])


def test_compiles_fullgraph():
    q, k = torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    positions, freqs = torch.rand(9, 3), torch.randn(3, 1, 4)
    compiled = torch.compile(lambda a, b: posext.apply_rope(a, b, positions, freqs), fullgraph=True,
                             backend="aot_eager")
    for got, want in zip(compiled(q, k), posext.apply_rope(q, k, positions, freqs)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("layout,sections,expected", [
    ("contiguous", (2, 3, 1), [0, 0, 1, 1, 1, 2]),
    ("interleaved", (2, 2, 2), [0, 1, 2, 0, 1, 2]),
    ("interleaved", (4, 1, 1), [0, 1, 2, 0, 0, 0]),
])
def test_section_freqs_put_each_pair_on_one_axis(layout, sections, expected):
    inv = torch.arange(1.0, 7.0)
    f = posext.rope_section_freqs(inv, sections, section_layout=layout)
    assert f.shape == (3, 1, 6)
    assert f[:, 0].argmax(0).tolist() == expected and torch.equal(f.sum(0)[0], inv)


def test_section_errors_name_the_argument():
    inv = torch.ones(6)
    with pytest.raises(ValueError, match="sum to head_dim/2 = 6"):
        posext.rope_section_freqs(inv, (2, 2, 1))
    with pytest.raises(ValueError, match="three axes"):
        posext.rope_section_freqs(inv, (3, 3), section_layout="interleaved")
    with pytest.raises(ValueError, match="section_layout"):
        posext.rope_section_freqs(inv, (3, 3), section_layout="zigzag")
    with pytest.raises(ValueError, match="do not fit"):
        posext.rope_section_freqs(inv, (0, 3, 3), section_layout="interleaved")
    q = torch.ones(1, 1, 2, 4)
    with pytest.raises(ValueError, match="A = 1, 2 or 3 axes"):
        posext.apply_rope(q, q.clone(), torch.ones(2, 4), torch.ones(4, 1, 2))
    with pytest.raises(ValueError, match=r"freqs must be \[3 \(axes\)"):
        posext.apply_rope(q, q.clone(), torch.ones(2, 3), torch.ones(2, 1, 2))


# ------------------------------------------------------------------------------------------ HF M-RoPE

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("family,sections,layout", [("qwen2_vl", [4, 6, 6], "contiguous"),
                                                    ("qwen3_vl", [6, 5, 5], "interleaved")])
def test_hf_qwen_vl_text_mrope(backend, family, sections, layout):
    import importlib

    mod = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    config_mod = importlib.import_module(f"transformers.models.{family}.configuration_{family}")
    prefix = {"qwen2_vl": "Qwen2VL", "qwen3_vl": "Qwen3VL"}[family]
    config = getattr(config_mod, f"{prefix}TextConfig")(
        hidden_size=64, num_attention_heads=2, num_key_value_heads=2, head_dim=32,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections})
    # Qwen3-VL: its text rotary; Qwen2-VL: the one rotary of its language model
    names = (f"{prefix}TextRotaryEmbedding", f"{prefix}RotaryEmbedding")
    rotary = next(getattr(mod, n) for n in names if hasattr(mod, n))(config)
    gen = torch.Generator().manual_seed(len(sections))
    n = 23
    position_ids = torch.stack([torch.randint(0, 40, (1, n), generator=gen) for _ in range(3)])  # [3, 1, n]
    q, k = torch.randn(1, 2, n, 32, generator=gen), torch.randn(1, 2, n, 32, generator=gen)
    cos, sin = rotary(q, position_ids)
    want = mod.apply_rotary_pos_emb(q, k, cos, sin)
    got = posext.apply_rope(q, k, position_ids[:, 0].T.float(), rotary.inv_freq, sections=sections,
                            section_layout=layout, pair_layout="half")
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5)
