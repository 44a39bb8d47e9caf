"""V-JEPA 2's 3-D RoPE through posext, against HF transformers' ``VJEPA2RopeAttention`` (random weights, tiny
configs): its rotation of q and k, and its whole attention forward with and without a token mask.

The released model's rotation is not a rotation: each axis block spreads its m frequencies over its 2m
channels block-wise while pairing adjacent channels, so a pair's two channels turn by different angles (see
``posext.rope_vjepa2_freqs``). posext reproduces it exactly with two fused rotations (even-channel and
odd-channel frequencies) and a channel merge; ``exact_compat=False`` gives the true rotation the model meant.
"""
import pytest
import torch
from torch.nn import functional as F

import posext
from tests.conftest import assert_error_names

transformers = pytest.importorskip("transformers")
from transformers.models.vjepa2 import modeling_vjepa2 as hf  # noqa: E402

pytestmark = pytest.mark.usefixtures("poison_outputs")

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}  # HF computes in q's dtype, so float64 is tight


def _attention(head_dim, heads=2, grid=3, frames=2, seed=0):
    torch.manual_seed(seed)
    config = transformers.VJEPA2Config(hidden_size=heads * head_dim, num_attention_heads=heads, patch_size=16,
                                       crop_size=16 * grid, frames_per_clip=2 * frames, tubelet_size=2)
    config._attn_implementation = "eager"
    return hf.VJEPA2RopeAttention(config, heads * head_dim, heads).eval()


def _positions(frames, h, w):
    """(t, h, w) of every token of a (frames, h, w) clip, frame-major then row-major."""
    xy = posext.rope_positions([(frames, h, w)])  # (x, y) = (w, h), frames repeating their grid
    t = torch.arange(frames * h * w) // (h * w)
    return torch.stack([t.float(), xy[:, 1], xy[:, 0]], 1)


def _rotate_exact(q, k, positions, head_dim, **kwargs):
    even, odd = posext.rope_vjepa2_freqs(head_dim, dtype=q.dtype)
    q_even, k_even = posext.apply_rope(q, k, positions, even, **kwargs)
    q_odd, k_odd = posext.apply_rope(q, k, positions, odd, **kwargs)
    q_even[..., 1::2], k_even[..., 1::2] = q_odd[..., 1::2], k_odd[..., 1::2]
    return q_even, k_even


def _err(got, want):
    return max((g - w).abs().max().item() for g, w in zip(got, want))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("head_dim,grid,frames", [(64, 3, 2), (48, 4, 1), (22, 2, 3), (88, 2, 2)])
def test_exact_recipe_matches_hf_rotation(backend, dtype, head_dim, grid, frames):
    attn = _attention(head_dim, grid=grid, frames=frames).to(dtype)
    n = frames * grid * grid
    ids = attn.get_position_ids(torch.zeros(1, n, 1))
    gen = torch.Generator().manual_seed(head_dim)
    q, k = (torch.randn(2, 2, n, head_dim, generator=gen, dtype=dtype) for _ in range(2))
    want = attn.apply_rotary_embeddings(q, ids), attn.apply_rotary_embeddings(k, ids)
    got = _rotate_exact(q, k, _positions(frames, grid, grid).to(dtype), head_dim)
    assert _err(got, want) <= TOL[dtype]


@pytest.mark.parametrize("masked", [False, True])
def test_attention_forward_matches_hf(backend, masked):
    head_dim, heads, grid, frames = 64, 2, 3, 2
    attn = _attention(head_dim, heads, grid, frames, seed=1)
    n = frames * grid * grid
    gen = torch.Generator().manual_seed(2)
    positions = _positions(frames, grid, grid)
    if masked:  # each clip keeps its own tokens: per-entry positions [B, kept, 3]
        keep = torch.stack([torch.randperm(n, generator=gen)[:11].sort().values for _ in range(2)])
        positions = positions[keep]
    hidden = torch.randn(2, keep.shape[1] if masked else n, heads * head_dim, generator=gen)
    with torch.no_grad():
        want, _ = attn(hidden, position_mask=keep if masked else None)
        q, k, v = (proj(hidden).unflatten(-1, (heads, head_dim))
                   for proj in (attn.query, attn.key, attn.value))
        q, k = _rotate_exact(q, k, positions, head_dim, layout="bnhd")
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        got = attn.proj(out.transpose(1, 2).flatten(2))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def _complex_rotation(x, positions, freqs):
    """Each interleaved pair (2p, 2p+1) times e^(i sum_a t_a f[a, p]), in float64; the rest passes."""
    angle = positions.double() @ freqs[:, 0].double()  # [N, R/2]
    r = 2 * angle.shape[-1]
    z = torch.view_as_complex(x[..., :r].double().unflatten(-1, (-1, 2)).contiguous())
    turned = torch.view_as_real(z * torch.polar(torch.ones_like(angle), angle)).flatten(-2)
    return torch.cat([turned, x[..., r:].double()], -1)


def test_clean_variant_is_the_true_rotation_and_differs_from_the_checkpoints(backend):
    head_dim, grid, frames = 64, 3, 2
    attn = _attention(head_dim, grid=grid, frames=frames)
    n = frames * grid * grid
    gen = torch.Generator().manual_seed(4)
    q, k = (torch.randn(1, 2, n, head_dim, generator=gen) for _ in range(2))
    positions = _positions(frames, grid, grid)
    clean = posext.rope_vjepa2_freqs(head_dim, exact_compat=False)
    got_q, _ = posext.apply_rope(q, k, positions, clean)
    torch.testing.assert_close(got_q.double(), _complex_rotation(q, positions, clean), rtol=0, atol=1e-5)
    torch.testing.assert_close(got_q.norm(dim=-1), q.norm(dim=-1), rtol=1e-5, atol=0)
    model_q = attn.apply_rotary_embeddings(q, attn.get_position_ids(torch.zeros(1, n, 1)))
    assert (model_q.norm(dim=-1) / q.norm(dim=-1) - 1).abs().max() > 1e-2  # the checkpoints' map: no rotation
    assert (got_q - model_q).abs().max() > 1e-1


def test_frequency_layout():
    head_dim, theta = 64, 10000.0
    m = 2 * ((head_dim // 3) // 2) // 2  # 10 pairs per axis, 3 * 10 of the 32 pairs rotated
    w = theta ** (-torch.arange(m, dtype=torch.float64) / m)
    clean = posext.rope_vjepa2_freqs(head_dim, exact_compat=False, dtype=torch.float64)
    assert clean.shape == (3, 1, 3 * m)
    for axis in range(3):  # t, h, w blocks in that order, one frequency per pair
        want = torch.zeros(3 * m, dtype=torch.float64)
        want[axis * m:(axis + 1) * m] = w
        assert torch.equal(clean[axis, 0], want)
    even, odd = posext.rope_vjepa2_freqs(head_dim, dtype=torch.float64)
    block = slice(m, 2 * m)  # the h block; channel c of it sees w[c mod m]
    assert torch.equal(even[1, 0, block], w[torch.arange(0, 2 * m, 2) % m])
    assert torch.equal(odd[1, 0, block], w[torch.arange(1, 2 * m, 2) % m])
    assert torch.equal(even[1, 0, m:m + m // 2], even[1, 0, m + m // 2:2 * m])  # pairs p and p + m/2 repeat


def test_builder_refuses_bad_input():
    assert_error_names(lambda: posext.rope_vjepa2_freqs(5), ValueError, ["head_dim", ">= 6", "5"])
    assert_error_names(lambda: posext.rope_vjepa2_freqs(0), ValueError, ["head_dim", "> 0"])
    assert_error_names(lambda: posext.rope_vjepa2_freqs(64.0), TypeError, ["head_dim", "int"])
    assert_error_names(lambda: posext.rope_vjepa2_freqs(64, theta=0), ValueError, ["theta", "> 0"])
    assert_error_names(lambda: posext.rope_vjepa2_freqs(64, exact_compat=1), TypeError, ["exact_compat"])
    assert_error_names(lambda: posext.rope_vjepa2_freqs(64, dtype=torch.int64), TypeError, ["dtype"])
