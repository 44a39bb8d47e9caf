"""posext.apply_rope with positions per batch entry ([B, N - P, A]) and packed ragged batches (cu_seqlens):
against the float64 complex reference entry by entry / sequence by sequence, both backends; gradients
(gradcheck, repeatable frequency gradient), torch.compile, in place, and the errors."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import posext
from tests.conftest import DEVICES
from tests.test_rope_axes import reference

pytestmark = pytest.mark.usefixtures("poison_outputs")


@pytest.mark.parametrize("device", DEVICES)
@given(batch=st.integers(0, 3), axes=st.integers(1, 3), heads=st.integers(1, 3), per_head=st.booleans(),
       tokens=st.integers(0, 9), prefix=st.integers(0, 2), pairs=st.integers(1, 5),
       layout=st.sampled_from(["bhnd", "bnhd"]), pair_layout=st.sampled_from(["interleaved", "half"]),
       shared_entry=st.booleans())
def test_positions_per_batch_entry_match_the_reference(backend, device, batch, axes, heads, per_head, tokens,
                                                       prefix, pairs, layout, pair_layout, shared_entry):
    gen = torch.Generator().manual_seed(batch * 1000 + axes * 100 + tokens * 10 + prefix)
    n, d = prefix + tokens, 2 * pairs + 2  # one pair passes (partial RoPE)
    shape = (batch, heads, n, d) if layout == "bhnd" else (batch, n, heads, d)
    q, k = (torch.randn(*shape, generator=gen, dtype=torch.float64) for _ in range(2))
    entries = 1 if shared_entry else batch
    positions = torch.rand(entries, tokens, axes, generator=gen, dtype=torch.float64) * 30
    freqs = torch.randn(axes, heads if per_head else 1, pairs, generator=gen, dtype=torch.float64)
    got = posext.apply_rope(q.to(device), k.to(device), positions.to(device), freqs.to(device),
                            num_prefix_tokens=prefix, layout=layout, pair_layout=pair_layout)
    token_axis = 2 if layout == "bhnd" else 1
    for b in range(batch):
        entry = positions[0 if shared_entry else b]
        for x, g in zip((q, k), got):
            xb = x[b:b + 1, ..., :2 * pairs]
            want = reference(xb, xb, entry, freqs, prefix, layout, pair_layout)[0]
            want = torch.cat([want, x[b:b + 1, ..., 2 * pairs:]], -1)
            torch.testing.assert_close(g[b:b + 1].cpu(), want, rtol=0, atol=1e-12)
    assert got[0].shape[token_axis] == n


def test_per_entry_positions_of_one_grid_equal_shared_ones_bit_for_bit(backend):
    q, k = torch.randn(3, 4, 17, 32), torch.randn(3, 4, 17, 32)
    pos, freqs = posext.rope_positions_2d((4, 4)), posext.rope_mixed_freqs(32, 4)
    shared = posext.apply_rope(q, k, pos, freqs, num_prefix_tokens=1)
    per_entry = posext.apply_rope(q, k, pos.expand(3, 16, 2), freqs, num_prefix_tokens=1)
    assert all(torch.equal(a, b) for a, b in zip(shared, per_entry))


@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_per_entry_gradients_and_a_repeatable_frequency_gradient(backend, layout):
    gen = torch.Generator().manual_seed(3)
    shape = (2, 2, 6, 8) if layout == "bhnd" else (2, 6, 2, 8)
    q, k = (torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    positions = torch.rand(2, 5, 3, generator=gen, dtype=torch.float64) * 4
    freqs = torch.randn(3, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b, f: posext.apply_rope(a, b, positions, f, num_prefix_tokens=1,
                                                               layout=layout), (q, k, freqs))
    f32 = freqs.detach().float().requires_grad_()
    big = torch.randn(*((4, 64, 2, 8) if layout == "bnhd" else (4, 2, 64, 8)), generator=gen)
    pos32 = torch.rand(4, 64, 3, generator=gen) * 50

    def freq_grad(threads):
        torch.set_num_threads(threads)
        rotated = posext.apply_rope(big, big * 2, pos32, f32, layout=layout)
        return torch.autograd.grad(rotated[0].square().sum() + rotated[1].sum(), f32)[0]

    before = torch.get_num_threads()
    try:
        grads = [freq_grad(1), freq_grad(2), freq_grad(1)]
    finally:
        torch.set_num_threads(before)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


def _packed_case(lengths, prefix, heads=3, k_heads=1, d=12, axes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q = torch.randn(total, heads, d, generator=gen, dtype=torch.float64)
    k = torch.randn(total, k_heads, d, generator=gen, dtype=torch.float64)
    positions = torch.randint(0, 40, (total - prefix * len(lengths), axes), generator=gen).double()
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    return q, k, positions, cu


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("prefix", [0, 1, 2])
@pytest.mark.parametrize("pair_layout", ["interleaved", "half"])
def test_cu_seqlens_equal_one_call_per_sequence(backend, device, prefix, pair_layout):
    lengths = [5, prefix, 9, 3]  # one sequence of prefix tokens only
    q, k, positions, cu = _packed_case(lengths, prefix)
    freqs = torch.randn(3, 1, 6, dtype=torch.float64)
    got = posext.apply_rope(q.to(device), k.to(device), positions.to(device), freqs.to(device),
                            num_prefix_tokens=prefix, pair_layout=pair_layout, cu_seqlens=cu.to(device))
    start, row = 0, 0
    for length in lengths:
        grid = length - prefix
        pos = positions[row:row + grid]
        for x, g in zip((q, k), got):
            seq = x[start:start + length].transpose(0, 1)[None]  # [1, heads, length, D]
            want = reference(seq, seq, pos, freqs, prefix, "bhnd", pair_layout)[0][0].transpose(0, 1)
            torch.testing.assert_close(g[start:start + length].cpu(), want, rtol=0, atol=1e-12)
        start, row = start + length, row + grid


def test_cu_seqlens_prefix_rows_pass_bit_for_bit_and_gradients(backend):
    q, k, positions, cu = _packed_case([4, 6], 1, seed=1)
    freqs = torch.randn(3, 1, 6, dtype=torch.float64)
    rq, rk = posext.apply_rope(q.float(), k.float(), positions, freqs, num_prefix_tokens=1, cu_seqlens=cu)
    for x, r in ((q, rq), (k, rk)):
        assert torch.equal(r[[0, 4]], x.float()[[0, 4]])
    q.requires_grad_()
    f = freqs.clone().requires_grad_()
    torch.autograd.gradcheck(lambda a, c: posext.apply_rope(a, k, positions, c, num_prefix_tokens=1,
                                                            cu_seqlens=cu), (q, f))


def test_cu_seqlens_in_place_and_compiled(backend):
    q, k, positions, cu = _packed_case([7, 2, 5], 0, seed=2)
    q, k, positions = q.float(), k.float(), positions.float()
    freqs = torch.randn(3, 1, 6)
    want = posext.apply_rope(q, k, positions, freqs, cu_seqlens=cu)
    qi, ki = q.clone(), k.clone()
    with torch.no_grad():
        out = posext.apply_rope(qi, ki, positions, freqs, cu_seqlens=cu, inplace=True)
    assert out[0] is qi and torch.equal(qi, want[0]) and torch.equal(ki, want[1])
    compiled = torch.compile(lambda a, b, p: posext.apply_rope(a, b, p, freqs, cu_seqlens=cu,
                                                               num_prefix_tokens=1),
                             fullgraph=True, backend="aot_eager")
    eager = posext.apply_rope(q, k, positions[3:], freqs, cu_seqlens=cu, num_prefix_tokens=1)
    for got, ref in zip(compiled(q, k, positions[3:]), eager):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("call, message", [
    (lambda q, k, p, f, cu: posext.apply_rope(q[None], k[None], p, f, cu_seqlens=cu),
     r"with cu_seqlens, q must be packed \[T, heads, head_dim\], got \(1, 14, 3, 12\)"),
    (lambda q, k, p, f, cu: posext.apply_rope(q, k, p[:-1], f, cu_seqlens=cu),
     r"positions \(13, 3\) must hold the T - S \* num_prefix_tokens = 14 - 2 \* 0 = 14 grid tokens"),
    (lambda q, k, p, f, cu: posext.apply_rope(q, k, p, f, cu_seqlens=cu.float()),
     r"cu_seqlens must be an int32/int64 \[S \+ 1\] tensor"),
    (lambda q, k, p, f, cu: posext.apply_rope(q, k, p, f, cu_seqlens=cu - 1),
     r"cu_seqlens must rise from 0 to T = 14 .* got \[-1, 4, 13\]"),
    (lambda q, k, p, f, cu: posext.apply_rope(q, k, p[None], f, cu_seqlens=cu),
     r"with cu_seqlens, positions must be \[T - S \* num_prefix_tokens, A\]"),
    (lambda q, k, p, f, cu: posext.apply_rope(q, k, p[:10], f, num_prefix_tokens=2,
                                              cu_seqlens=torch.tensor([0, 1, 14])),
     r"cu_seqlens must rise from 0 to T = 14 in steps of at least num_prefix_tokens = 2"),
    (lambda q, k, p, f, cu: posext.apply_rope(q[None].expand(3, -1, -1, -1), k[None].expand(3, -1, -1, -1),
                                              p.expand(2, 14, 3), f, layout="bnhd"),
     r"per-entry positions \(2, 14, 3\) must have q's batch size 3"),
])
def test_errors_name_the_argument(backend, call, message):
    q, k, positions, cu = _packed_case([5, 9], 0)
    with pytest.raises(ValueError, match=message):
        call(q, k, positions, torch.randn(3, 1, 6, dtype=torch.float64), cu)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head_dim", [64, 72, 80, 96, 128])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-5), (torch.bfloat16, 2e-2)])
def test_vision_head_sizes(backend, device, head_dim, dtype, tol):
    """The head sizes of ViT-B/L (64), Qwen-VL (80), SigLIP-So400m (72), EVA / InternViT (96, 128): axial
    frequencies, a class token, both pair layouts, against the float64 reference of the rounded inputs."""
    gen = torch.Generator().manual_seed(head_dim)
    q, k = (torch.randn(2, 3, 1 + 7 * 9, head_dim, generator=gen).to(dtype) for _ in range(2))
    freqs = posext.rope_axial_freqs(head_dim, theta=10000.0)
    positions = posext.rope_positions_2d((7, 9))
    for pair_layout in ("interleaved", "half"):
        got = posext.apply_rope(q.to(device), k.to(device), positions.to(device), freqs.to(device),
                                pair_layout=pair_layout)
        want = reference(q, k, positions, freqs, 1, "bhnd", pair_layout)
        for g, w in zip(got, want):
            assert g.dtype == dtype
            torch.testing.assert_close(g.cpu().double(), w, rtol=tol, atol=tol)
