"""sincos_3d: the video tables of V-JEPA, CogVideoX (diffusers) and VideoMAE against independent oracles: HF
transformers' VideoMAE function, and float64 NumPy references written below from the V-JEPA and diffusers
formulas (neither package is a dependency).

Tolerances (as tests/test_sincos.py): float64 <= 1e-12 abs; float32 <= 1e-6 abs and within one float32 ulp of
the rounded reference; float16 / bfloat16 equal to the float64 reference cast to that dtype.
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
from tests.test_sincos import FLOAT_DTYPES, assert_matches_reference, poisoned

pytestmark = pytest.mark.usefixtures("poison_outputs")
CONVENTIONS = ["vjepa", "vjepa_uniform", "cogvideox", "videomae"]


# ------------------------------------------------------------------------------ float64 references

def vjepa_reference(embed_dim, depth, height, width, uniform_power=False, cls_token=False):
    """Follows get_3d_sincos_pos_embed of facebookresearch/jepa (and vjepa2) src/models/utils/pos_embs.py,
    generalised from its square grid_size to (H, W): meshgrid(h, d, w) in 'xy' order gives [d, h, w] arrays;
    channels [d | h | w], d D/2 and h, w D/4 wide (uniform_power: each 2 * ceil(D/6)), cut to D."""
    grid_h, grid_d, grid_w = np.meshgrid(np.arange(height, dtype=float), np.arange(depth, dtype=float),
                                         np.arange(width, dtype=float))
    if uniform_power:
        d_dim = h_dim = w_dim = int(np.ceil(embed_dim / 6) * 2)
    else:
        d_dim, h_dim, w_dim = embed_dim // 2, embed_dim // 4, embed_dim // 4
    table = np.concatenate([ref.sincos_1d(d_dim, grid_d), ref.sincos_1d(h_dim, grid_h),
                            ref.sincos_1d(w_dim, grid_w)], axis=1)[:, :embed_dim]
    if cls_token:
        table = np.concatenate([np.zeros([1, embed_dim]), table])
    return table


def diffusers_reference(embed_dim, spatial_size, temporal_size, spatial_scale=1.0, temporal_scale=1.0):
    """Follows get_3d_sincos_pos_embed of huggingface/diffusers src/diffusers/models/embeddings.py, with its
    argument order (spatial_size = (W, H)): grids arange(n, float32) / scale kept in float32, a 2-D table over
    3D/4 channels whose first half encodes grid[0] of meshgrid(w, h) (the column), a 1-D table over D/4 for t,
    concatenated [temporal | spatial]; returns [T, H*W, D] float64."""
    width, height = spatial_size
    grid_w = np.arange(width, dtype=np.float32) / np.float32(spatial_scale)
    grid_h = np.arange(height, dtype=np.float32) / np.float32(spatial_scale)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0)  # [2, H, W]
    spatial_dim = 3 * embed_dim // 4
    spatial = np.concatenate([ref.sincos_1d(spatial_dim // 2, grid[0]),
                              ref.sincos_1d(spatial_dim // 2, grid[1])], axis=1)
    grid_t = np.arange(temporal_size, dtype=np.float32) / np.float32(temporal_scale)
    temporal = ref.sincos_1d(embed_dim // 4, grid_t)
    spatial = np.repeat(spatial[None], temporal_size, axis=0)
    temporal = np.repeat(temporal[:, None], width * height, axis=1)
    return np.concatenate([temporal, spatial], axis=-1)


def videomae_reference(n_position, d_hid, monkeypatch):
    """HF transformers' VideoMAE get_sinusoid_encoding_table, before its float32 cast: torch.FloatTensor is
    replaced for the call so that its float64 NumPy table comes back as it is."""
    videomae = pytest.importorskip("transformers.models.videomae.modeling_videomae")
    with monkeypatch.context() as m:
        m.setattr(videomae.torch, "FloatTensor", lambda a: torch.from_numpy(np.asarray(a)))
        table = videomae.get_sinusoid_encoding_table(n_position, d_hid)
    assert table.dtype == torch.float64
    return table[0].numpy()


def reference(convention, embed_dim, grid, prefix=0, spatial_scale=1.0, temporal_scale=1.0):
    depth, height, width = grid
    if convention in ("vjepa", "vjepa_uniform"):
        table = vjepa_reference(embed_dim, depth, height, width, uniform_power=convention == "vjepa_uniform")
    elif convention in ("cogvideox", "diffusers"):
        table = diffusers_reference(embed_dim, (width, height), depth, spatial_scale, temporal_scale)
        table = table.reshape(-1, embed_dim)
    else:  # written from VideoMAE's formula (the HF function itself is the oracle of the tests below)
        n = np.arange(depth * height * width, dtype=np.float64)[:, None]
        c = np.arange(embed_dim)
        angle = n / np.array([math.pow(10000, 2 * (j // 2) / embed_dim) for j in c])
        table = np.where(c % 2 == 1, np.cos(angle), np.sin(angle))
    return np.concatenate([np.zeros((prefix, embed_dim)), table])


def embed_dims(convention):
    multiple = {"vjepa": 8, "cogvideox": 16}.get(convention, 1)
    return st.integers(1, 768 // multiple).map(lambda k: k * multiple)


@st.composite
def cases(draw):
    convention = draw(st.sampled_from(CONVENTIONS))
    embed_dim = draw(embed_dims(convention))
    depth, height = draw(st.integers(1, 9)), draw(st.integers(1, 24))
    width = draw(st.integers(1, max(1, min(24, 400_000 // (embed_dim * depth * height)))))
    prefix = draw(st.integers(0, 3))
    scales = (1.0, 1.0)
    if convention == "cogvideox":
        scales = draw(st.sampled_from([(1.0, 1.0), (1.875, 1.0), (1.1, 0.3), (2.0, 4.0)]))
    return convention, embed_dim, (depth, height, width), prefix, scales, draw(st.sampled_from(FLOAT_DTYPES))


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=80, deadline=None)
@given(case=cases(), use_out=st.booleans())
def test_sincos_3d_matches_reference(device, backend, case, use_out):
    convention, embed_dim, grid, prefix, (spatial, temporal), dtype = case
    expected = reference(convention, embed_dim, grid, prefix, spatial, temporal)
    kwargs = dict(convention=convention, num_prefix_tokens=prefix)
    if convention == "cogvideox":
        kwargs.update(spatial_interpolation_scale=spatial, temporal_interpolation_scale=temporal)
    if use_out:
        out = poisoned(expected.shape, dtype, device)
        assert posext.sincos_3d(embed_dim, grid, out=out, **kwargs) is out
    else:
        out = posext.sincos_3d(embed_dim, grid, dtype=dtype, device=device, **kwargs)
        assert out.dtype == dtype and out.device.type == device
    assert_matches_reference(out, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("embed_dim,grid", [(16, (1, 1, 1)), (32, (1, 14, 14)), (1024, (8, 16, 16)),
                                            (48, (5, 3, 7)), (64, (300, 1, 1)), (16, (1, 1, 700)),
                                            (32, (2, 600, 3))])
def test_sincos_3d_sizes(device, backend, convention, embed_dim, grid):
    expected = reference(convention, embed_dim, grid, prefix=1)
    out = posext.sincos_3d(embed_dim, grid, convention=convention, num_prefix_tokens=1, device=device,
                           out=poisoned(expected.shape, torch.float32, device))
    assert_matches_reference(out, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("embed_dim", [1, 2, 5, 6, 7, 100, 1000, 1024, 1280])
def test_vjepa_uniform_power_cuts_the_last_band(device, backend, embed_dim):
    """2 * ceil(D/6) channels per axis cut to D: the cut falls in cos w (or earlier for tiny D)."""
    expected = vjepa_reference(embed_dim, 3, 2, 5, uniform_power=True, cls_token=True)
    out = posext.sincos_3d(embed_dim, (3, 2, 5), convention="vjepa_uniform", num_prefix_tokens=1,
                           dtype=torch.float64, device=device)
    assert_matches_reference(out, expected)


def test_cube_int_equals_triple(backend):
    assert torch.equal(posext.sincos_3d(64, 3), posext.sincos_3d(64, (3, 3, 3)))


def test_diffusers_alias_and_peer_shape(backend):
    a = posext.sincos_3d(64, (4, 3, 5), convention="diffusers", spatial_interpolation_scale=1.875)
    b = posext.sincos_3d(64, (4, 3, 5), convention="cogvideox", spatial_interpolation_scale=1.875)
    assert torch.equal(a, b)
    peer = diffusers_reference(64, (5, 3), 4, 1.875)  # [T, H*W, D]
    np.testing.assert_allclose(a.double().view(4, 15, 64).numpy(), peer, rtol=0, atol=1e-6)


def test_cogvideox_patch_embed_layout(backend):
    """CogVideoX-2b's table: sample 60 x 90 latents, patch 2, 13 latent frames, scales 1.875 / 1.0, the
    text rows (226) zero in front; D reduced from 1920 to 64 to keep the test small (the layout scales)."""
    width, height, frames, text = 45, 30, 13, 226
    peer = diffusers_reference(64, (width, height), frames, 1.875, 1.0).reshape(-1, 64)
    got = posext.sincos_3d(64, (frames, height, width), convention="cogvideox", num_prefix_tokens=text,
                           spatial_interpolation_scale=1.875, dtype=torch.float64)
    assert got.shape == (text + frames * height * width, 64)
    assert not got[:text].any()
    np.testing.assert_allclose(got[text:].numpy(), peer, rtol=0, atol=1e-12)


def test_float32_positions_matter_at_fractional_scale():
    """The float32 grid of diffusers is part of its convention: float64 positions would differ by ~1e-6."""
    exact = reference("cogvideox", 64, (2, 40, 40), spatial_scale=1.875)
    q = np.arange(40, dtype=np.float64) / 1.875
    assert np.abs(q - (np.arange(40, dtype=np.float32) / np.float32(1.875))).max() > 1e-7
    got = posext.sincos_3d(64, (2, 40, 40), convention="cogvideox", spatial_interpolation_scale=1.875,
                           dtype=torch.float64)
    np.testing.assert_allclose(got.numpy(), exact, rtol=0, atol=1e-12)


def test_extension_and_fallback_agree_on_cpu():
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    from posext.sincos3d import _layout, _sincos_3d_torch
    for name in CONVENTIONS:
        layout = _layout(name, 96)
        for dtype in FLOAT_DTYPES:
            ext = posext.sincos_3d(96, (3, 5, 4), convention=name, num_prefix_tokens=2, dtype=dtype)
            py = _sincos_3d_torch(96, 3, 5, 4, 2, 10000.0, layout.band_ints, [1.0, 1.0, 1.0],
                                  layout.float32_positions, dtype, torch.device("cpu"))
            torch.testing.assert_close(ext, py, rtol=0, atol=0 if dtype != torch.float64 else 1e-15)


# ------------------------------------------------------------------------------ VideoMAE, HF as the oracle

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("embed_dim,grid", [(768, (8, 14, 14)), (384, (1, 1, 1)), (7, (3, 5, 2)),
                                            (96, (1, 4, 9)), (1, (2, 2, 2))])
def test_videomae_matches_transformers(device, backend, monkeypatch, embed_dim, grid):
    videomae = pytest.importorskip("transformers.models.videomae.modeling_videomae")
    tokens = math.prod(grid)
    expected = videomae_reference(tokens, embed_dim, monkeypatch)
    got = posext.sincos_3d(embed_dim, grid, convention="videomae", dtype=torch.float64, device=device)
    assert_matches_reference(got, expected)
    # and the float32 table the model holds: the same rounding of (nearly) the same float64 values
    hf = videomae.get_sinusoid_encoding_table(tokens, embed_dim)[0]
    got32 = posext.sincos_3d(embed_dim, grid, convention="videomae", device=device).cpu()
    assert got32.dtype == hf.dtype and got32.shape == hf.shape
    assert ((got32 == hf) | (torch.nextafter(hf, got32) == got32)).all()


def test_videomae_is_interleaved_not_banded():
    table = posext.sincos_3d(8, (1, 1, 2), convention="videomae", dtype=torch.float64)
    # token 1: channels (0, 1) = sin(1), cos(1); (2, 3) = sin(1 / 10000^(2/8)), cos(...)
    assert table[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-15)
    assert table[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-15)
    assert table[1, 3].item() == pytest.approx(math.cos(1.0 / 10000 ** 0.25), abs=1e-15)


# ------------------------------------------------------------------------------ bad input

BAD = [
    (lambda: posext.sincos_3d(12, (2, 3, 3)), ValueError, ["embed_dim", "divisible by 8", "12"]),
    (lambda: posext.sincos_3d(24, (2, 3, 3), convention="cogvideox"), ValueError,
     ["embed_dim", "divisible by 16", "24"]),
    (lambda: posext.sincos_3d(0, (2, 3, 3), convention="videomae"), ValueError, ["embed_dim", "> 0"]),
    (lambda: posext.sincos_3d(8.0, (2, 3, 3)), TypeError, ["embed_dim", "int"]),
    (lambda: posext.sincos_3d(16, (2, 3)), TypeError, ["grid_size", "(T, H, W)", "(2, 3)"]),
    (lambda: posext.sincos_3d(16, (0, 3, 3)), ValueError, ["grid_size[0] (T)", "> 0", "0"]),
    (lambda: posext.sincos_3d(16, (2, 3, -4)), ValueError, ["grid_size[2] (W)", "-4"]),
    (lambda: posext.sincos_3d(16, (2, 3.0, 3)), TypeError, ["grid_size[1] (H)", "int"]),
    (lambda: posext.sincos_3d(16, True), TypeError, ["grid_size"]),
    (lambda: posext.sincos_3d(16, 2, convention="mae"), ValueError, ["convention", "vjepa", "'mae'"]),
    (lambda: posext.sincos_3d(16, 2, dtype=torch.int32), TypeError, ["dtype", "float"]),
    (lambda: posext.sincos_3d(16, 2, num_prefix_tokens=-1), ValueError, ["num_prefix_tokens", ">= 0"]),
    (lambda: posext.sincos_3d(16, 2, temperature=-1.0), ValueError, ["temperature", "> 0"]),
    (lambda: posext.sincos_3d(16, 2, spatial_interpolation_scale=2.0), ValueError,
     ["spatial_interpolation_scale", "cogvideox", "'vjepa'"]),
    (lambda: posext.sincos_3d(16, 2, convention="cogvideox", temporal_interpolation_scale=0.0), ValueError,
     ["temporal_interpolation_scale", "> 0"]),
    (lambda: posext.sincos_3d(16, (1, 2, 2), out=torch.empty(5, 16)), ValueError,
     ["out", "(4, 16)", "(5, 16)"]),
    (lambda: posext.sincos_3d(16, (1, 2, 2), out=torch.empty(16, 4).t()), ValueError, ["out", "contiguous"]),
    (lambda: posext.sincos_3d(16, (1, 2, 2), out=torch.empty(4, 16, dtype=torch.int64)), TypeError,
     ["out.dtype"]),
    (lambda: posext.sincos_3d(16, (2**32, 2**32, 2)), ValueError, ["grid_size", "overflow"]),
]


@pytest.mark.parametrize("index", range(len(BAD)))
def test_bad_input_names_argument_and_rule(backend, index):
    call, exc, words = BAD[index]
    assert_error_names(call, exc, words)


def test_bad_input_same_error_from_both_backends(monkeypatch):
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    for call, exc, _ in BAD:
        with pytest.raises(exc) as ext:
            call()
        with monkeypatch.context() as m:
            m.setattr(_backend, "use_extension", lambda device: False)
            with pytest.raises(exc) as py:
                call()
        assert str(ext.value) == str(py.value)


@pytest.mark.parametrize("device", DEVICES)
def test_raw_ops_reject_bad_arguments_without_crashing(device):
    if _backend.backend() != "extension":
        pytest.skip("extension not built")
    ops, dev, one = torch.ops.posext, torch.device(device), [1.0, 1.0, 1.0]
    bands = [0, 2, 2, 1, 2, 2, 2, 1, 1, 3, 1, 1, 4, 1, 1, 5, 1, 1]  # vjepa, D = 8
    with pytest.raises(RuntimeError, match="grid must be positive"):
        ops.sincos_3d(8, 0, 2, 2, 0, 1e4, bands, one, False, torch.float32, dev)
    with pytest.raises(RuntimeError, match="sum to 8, expected embed_dim 16"):
        ops.sincos_3d(16, 2, 2, 2, 0, 1e4, bands, one, False, torch.float32, dev)
    with pytest.raises(RuntimeError, match="band code"):
        ops.sincos_3d(8, 2, 2, 2, 0, 1e4, [6, 8, 4], one, False, torch.float32, dev)
    with pytest.raises(RuntimeError, match="triples"):
        ops.sincos_3d(8, 2, 2, 2, 0, 1e4, [0, 8], one, False, torch.float32, dev)
    with pytest.raises(RuntimeError, match="widths and frequency counts"):
        ops.sincos_3d(8, 2, 2, 2, 0, 1e4, [0, 8, 0], one, False, torch.float32, dev)
    with pytest.raises(RuntimeError, match="3 position scales"):
        ops.sincos_3d(8, 2, 2, 2, 0, 1e4, bands, [1.0], False, torch.float32, dev)
    with pytest.raises(RuntimeError, match="dtype must be"):
        ops.sincos_3d(8, 2, 2, 2, 0, 1e4, bands, one, False, torch.int32, dev)
    with pytest.raises(RuntimeError, match="out must have shape"):
        ops.sincos_3d_out(8, 2, 2, 2, 0, 1e4, bands, one, False, out=torch.empty(7, 8, device=device))


# ------------------------------------------------------------------------------ torch.compile

@pytest.mark.parametrize("convention", ["vjepa", "videomae"])
@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph_has_no_graph_break(dynamic, convention):
    torch._dynamo.reset()

    def add_pos(x, t, h, w):
        return x + posext.sincos_3d(x.shape[-1], (t, h, w), convention=convention, num_prefix_tokens=1,
                                    dtype=x.dtype, device=x.device)

    compiled = torch.compile(add_pos, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for t, h, w in [(2, 3, 4), (1, 5, 5), (3, 2, 7)]:
        x = torch.randn(2, 1 + t * h * w, 32)
        torch.testing.assert_close(compiled(x, t, h, w), add_pos(x, t, h, w), rtol=0, atol=0)
