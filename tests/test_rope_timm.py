"""posext's RoPE recipes for timm's rotary classes (``timm.layers.pos_embed_sincos``), against timm itself:
its modules' embeddings applied by ``apply_rot_embed_cat``, and the attention of small timm models built
offline with random weights (q and k captured where they enter scaled_dot_product_attention). Within 1e-5 in
float32. timm's modules build their angles in float32 whatever their dtype, so float64 is checked against
timm's ``build_rotary_pos_embed`` fed float64 bands on grids whose coordinates float32 holds exactly: 1e-12.

The recipes (D = head_dim; P prefix tokens pass unrotated in every case):

* ``RotaryEmbeddingCat(D, in_pixels=False, temperature=T, ref_feat_shape=R, grid_offset=o, grid_indexing=g,
  rotate_half=h)`` (EVA-02, RoPE-ViT axial, Perception Encoder, SBB ViTs):
  ``rope_axial_freqs(D, theta=T, first_axis="y" if g == "ij" else "x")``,
  ``rope_positions_2d((H, W), ref_grid_size=R, offset=o)``, ``pair_layout="half" if h else "interleaved"``.
* ``RotaryEmbeddingCat(D, in_pixels=True, max_res=M)``: positions ``torch.linspace(-1, 1, S)`` per axis and
  the pixel bands ``pi * linspace(1, M/2, D/4)`` (log: ``pi * 2^linspace(0, log2(M) - 1, D/4)``) on the
  slots of ``rope_axial_freqs``; no posext builder makes these (no timm model uses them), the op takes them.
* ``RotaryEmbeddingDinoV3(D, temperature=T, normalize_coords=n, grid_indexing=g, rotate_half=h)``:
  ``rope_axial_freqs(D, theta=T, scale=2*pi, first_axis="y" if g == "ij" else "x")``,
  ``rope_positions_2d((H, W), mode="normalized", normalize_coords=n, offset=grid_offset)``; with
  ``min_period=a, max_period=b`` instead: ``theta=(b/a) ** (q/(q-1))``, ``scale=2*pi/a``, q = D/4. The
  shift / jitter / rescale augmentations act in training only; eval mode is this recipe.
* ``RotaryEmbeddingMixed`` (RoPE-ViT mixed): block i's ``freqs[:, i]`` (``[2, heads, D/2]``, learnable) as
  they are, ``rope_positions_2d((H, W))`` (grid_indexing "xy"; "ij" swaps the columns), interleaved.
* ``RotaryEmbeddingMRope(D, mrope_section, temperature=T)``: ``apply_rope`` on positions (t=0, h, w),
  inverse frequencies ``T^(-2p/D)``, ``sections`` = the pairs timm really gives each axis (``_mrope_counts``:
  its strided sections are clamped to D/2 pairs), ``section_layout="interleaved"``, ``pair_layout="half"``.
"""
import math

import pytest
import torch
from torch.nn import functional as F

import posext
from tests.conftest import assert_error_names

timm = pytest.importorskip("timm")
from timm.layers import pos_embed_sincos as ps  # noqa: E402

pytestmark = pytest.mark.usefixtures("poison_outputs")

GRID = (3, 5)
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _qk(shape, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=gen, dtype=dtype) for _ in range(2))


def _close(got, want, dtype=torch.float32):
    err = max((g - w).abs().max().item() for g, w in zip(got, want))
    assert err <= TOL[dtype], f"max abs error {err:.3g} > {TOL[dtype]}"


def _timm_rotate(q, k, emb, half):
    return ps.apply_rot_embed_cat(q, emb, half=half), ps.apply_rot_embed_cat(k, emb, half=half)


def _axis(grid_indexing):
    return "y" if grid_indexing == "ij" else "x"  # 'ij' puts the row coordinate on the first D/4 pairs


def _mrope_counts(head_dim, mrope_section):
    """The (t, h, w) pairs timm's interleaved MRoPE gives each axis: h on pairs 1, 4, .. below 3 s_h, w on
    2, 5, .. below 3 s_w, both clamped to the D/2 pairs; t the rest."""
    pairs = head_dim // 2
    h = len(range(1, min(3 * mrope_section[1], pairs), 3))
    w = len(range(2, min(3 * mrope_section[2], pairs), 3))
    return pairs - h - w, h, w


@pytest.mark.parametrize("ref,offset,temperature", [(None, 0.0, 10000.0), ((16, 16), 0.0, 10000.0),
                                                    ((24, 24), 1.0, 100.0)], ids=["plain", "eva02", "pe"])
@pytest.mark.parametrize("grid_indexing", ["ij", "xy"])
@pytest.mark.parametrize("rotate_half", [False, True])
def test_cat_matches_timm(backend, ref, offset, temperature, grid_indexing, rotate_half):
    d = 32
    rope = ps.RotaryEmbeddingCat(d, in_pixels=False, temperature=temperature, ref_feat_shape=ref,
                                 grid_offset=offset, grid_indexing=grid_indexing, rotate_half=rotate_half)
    q, k = _qk((2, 3, GRID[0] * GRID[1], d), seed=7)
    want = _timm_rotate(q, k, rope.get_embed(GRID), rotate_half)
    freqs = posext.rope_axial_freqs(d, theta=temperature, first_axis=_axis(grid_indexing))
    positions = posext.rope_positions_2d(GRID, ref_grid_size=ref, offset=offset)
    got = posext.apply_rope_2d(q, k, positions, freqs, pair_layout="half" if rotate_half else "interleaved")
    _close(got, want)


@pytest.mark.parametrize("linear_bands", [False, True])
def test_cat_in_pixels_maps_onto_the_op(backend, linear_bands):
    d, max_res = 32, 16  # bands up to pi * max_res / 2 rad: larger ones leave float32 angles ~1e-5 apart
    rope = ps.RotaryEmbeddingCat(d, in_pixels=True, max_res=max_res, linear_bands=linear_bands,
                                 grid_indexing="xy")
    q, k = _qk((1, 2, GRID[0] * GRID[1], d), seed=3)
    want = _timm_rotate(q, k, rope.get_embed(GRID), False)
    quarter = d // 4
    bands = (torch.linspace(1, max_res / 2, quarter, dtype=torch.float64) if linear_bands
             else 2 ** torch.linspace(0, math.log2(max_res) - 1, quarter, dtype=torch.float64)) * math.pi
    freqs = posext.rope_axial_freqs(d, theta=1.0 + 1e-9)  # slot pattern only: w_k = 1 on x, then on y
    freqs = (freqs * bands.repeat(2)).float()
    ys, xs = torch.linspace(-1, 1, GRID[0]), torch.linspace(-1, 1, GRID[1])
    positions = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    _close(posext.apply_rope_2d(q, k, positions, freqs), want)


DINO_CASES = [dict(temperature=100.0), dict(temperature=10000.0, grid_offset=0.5),
              dict(temperature=None, min_period=0.5, max_period=40.0)]


@pytest.mark.parametrize("case", DINO_CASES, ids=["t100", "t1e4-offset", "min-max-period"])
@pytest.mark.parametrize("normalize_coords", ["separate", "min", "max"])
@pytest.mark.parametrize("grid_indexing", ["ij", "xy"])
@pytest.mark.parametrize("rotate_half", [True, False])
@pytest.mark.parametrize("grid", [(3, 5), (6, 2)])
def test_dinov3_matches_timm(backend, case, normalize_coords, grid_indexing, rotate_half, grid):
    d = 32
    # augmentation configured, module in eval mode: timm applies none of it, and neither does the recipe
    rope = ps.RotaryEmbeddingDinoV3(d, normalize_coords=normalize_coords, grid_indexing=grid_indexing,
                                    rotate_half=rotate_half, shift_coords=0.5, jitter_coords=2.0,
                                    rescale_coords=2.0, **case).eval()
    q, k = _qk((2, 2, 5 + grid[0] * grid[1], d), seed=11)
    prefix = 5  # class token and four registers
    emb = rope.get_embed(grid)

    def timm_rotate(x):
        grid_part = ps.apply_rot_embed_cat(x[:, :, prefix:], emb, half=rotate_half)
        return torch.cat([x[:, :, :prefix], grid_part], 2)

    want = timm_rotate(q), timm_rotate(k)
    if case.get("min_period") is not None:
        a, b, quarter = case["min_period"], case["max_period"], d // 4
        theta, scale = (b / a) ** (quarter / (quarter - 1)), 2 * math.pi / a
    else:
        theta, scale = case["temperature"], 2 * math.pi
    freqs = posext.rope_axial_freqs(d, theta=theta, scale=scale, first_axis=_axis(grid_indexing))
    positions = posext.rope_positions_2d(grid, mode="normalized", normalize_coords=normalize_coords,
                                         offset=case.get("grid_offset", 0.0))
    got = posext.apply_rope_2d(q, k, positions, freqs, num_prefix_tokens=prefix,
                               pair_layout="half" if rotate_half else "interleaved")
    _close(got, want)


@pytest.mark.parametrize("grid_indexing", ["xy", "ij"])
def test_mixed_matches_timm_with_frequency_gradients(backend, grid_indexing):
    heads, d, depth = 2, 16, 2
    rope = ps.RotaryEmbeddingMixed(heads * d, depth=depth, num_heads=heads, grid_indexing=grid_indexing)
    q0, k0 = _qk((2, heads, 1 + GRID[0] * GRID[1], d), seed=5)
    g_q, g_k = _qk(q0.shape, seed=6)  # upstream gradients
    positions = posext.rope_positions_2d(GRID)
    if grid_indexing == "ij":  # timm's t_x is then the row index
        positions = positions.flip(-1).contiguous()
    emb = rope.get_embed(GRID)  # [depth, heads, N-1, 2 D]
    for block in range(depth):
        q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
        want = tuple(torch.cat([x[:, :, :1], ps.apply_rot_embed_cat(x[:, :, 1:], emb[block])], 2)
                     for x in (q, k))
        ((want[0] * g_q).sum() + (want[1] * g_k).sum()).backward(retain_graph=True)
        want_grads = rope.freqs.grad[:, block].clone(), q.grad.clone()
        rope.freqs.grad = None
        q.grad = None
        got = posext.apply_rope_2d(q, k, positions, rope.freqs[:, block], num_prefix_tokens=1)
        ((got[0] * g_q).sum() + (got[1] * g_k).sum()).backward()
        _close(got, want)
        torch.testing.assert_close(rope.freqs.grad[:, block], want_grads[0], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(q.grad, want_grads[1], rtol=0, atol=1e-5)
        assert rope.freqs.grad[:, 1 - block].abs().max() == 0  # only this block's frequencies
        rope.freqs.grad = None


@pytest.mark.parametrize("head_dim,section", [(64, (8, 12, 12)), (72, (12, 12, 12)), (32, (2, 3, 3))])
def test_mrope_matches_timm(backend, head_dim, section):
    rope = ps.RotaryEmbeddingMRope(head_dim, mrope_section=section)
    q, k = _qk((2, 2, GRID[0] * GRID[1], head_dim), seed=head_dim)
    want = _timm_rotate(q, k, rope.get_embed(GRID), True)
    xy = posext.rope_positions_2d(GRID)
    positions = torch.stack([torch.zeros_like(xy[:, 0]), xy[:, 1], xy[:, 0]], 1)  # (t, h, w), t = 0
    inv_freq = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    got = posext.apply_rope(q, k, positions, inv_freq.float(), sections=_mrope_counts(head_dim, section),
                            section_layout="interleaved", pair_layout="half")
    _close(got, want)


# grids whose timm coordinates are exact in float32: (4, 8) with reference (16, 32), or centred / 4 and / 8
FLOAT64_CASES = [dict(grid_type="index", ref_feat_shape=(16, 32)), dict(grid_type="index", grid_offset=1.0),
                 dict(grid_type="centered", normalize_coords="separate"),
                 dict(grid_type="centered", normalize_coords="min"),
                 dict(grid_type="centered", normalize_coords="max")]


@pytest.mark.parametrize("case", FLOAT64_CASES, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("grid_indexing", ["ij", "xy"])
@pytest.mark.parametrize("rotate_half", [False, True])
def test_float64_matches_timms_embedding_functions(backend, case, grid_indexing, rotate_half):
    d, grid, theta = 32, (4, 8), 100.0
    centred = case["grid_type"] == "centered"
    freqs = posext.rope_axial_freqs(d, theta=theta, scale=2 * math.pi if centred else 1.0,
                                    first_axis=_axis(grid_indexing), dtype=torch.float64)
    bands = freqs[0, 0, :d // 4] if grid_indexing == "xy" else freqs[1, 0, :d // 4]
    sin, cos = ps.build_rotary_pos_embed(list(grid), bands=bands, in_pixels=False,
                                         grid_indexing=grid_indexing, rotate_half=rotate_half,
                                         dtype=torch.float64, **case)
    q, k = _qk((1, 2, grid[0] * grid[1], d), seed=2, dtype=torch.float64)
    want = tuple(ps.apply_rot_embed(x, sin, cos, half=rotate_half) for x in (q, k))
    positions = posext.rope_positions_2d(grid, mode="normalized" if centred else "index",
                                         ref_grid_size=case.get("ref_feat_shape"),
                                         normalize_coords=case.get("normalize_coords", "separate"),
                                         offset=case.get("grid_offset", 0.0), dtype=torch.float64)
    got = posext.apply_rope_2d(q, k, positions, freqs, pair_layout="half" if rotate_half else "interleaved")
    _close(got, want, torch.float64)


def test_mrope_counts_are_timms_axis_assignment():
    for head_dim, section in [(64, (8, 12, 12)), (72, (12, 12, 12)), (32, (2, 3, 3)), (40, (0, 2, 9))]:
        axis = ps.RotaryEmbeddingMRope(head_dim, mrope_section=section).axis
        assert _mrope_counts(head_dim, section) == tuple(int((axis == a).sum()) for a in range(3))


# Small timm models, random weights (tiny widths): (name, kwargs, recipe -> (freqs, positions, pair_layout)).
def _cat(theta, first_axis, ref=None, offset=0.0, half=False):
    return lambda d, grid: (posext.rope_axial_freqs(d, theta=theta, first_axis=first_axis),
                            posext.rope_positions_2d(grid, ref_grid_size=ref, offset=offset),
                            "half" if half else "interleaved")


def _dinov3(d, grid):
    return (posext.rope_axial_freqs(d, theta=100.0, scale=2 * math.pi, first_axis="y"),
            posext.rope_positions_2d(grid, mode="normalized"), "half")


MODELS = [
    ("eva02_tiny_patch14_224", dict(img_size=(42, 70)), _cat(10000.0, "y", ref=(16, 16))),
    ("vit_small_patch16_rope_224", dict(img_size=(48, 80)), _cat(100.0, "x")),
    ("vit_pe_core_tiny_patch16_384", dict(img_size=(48, 80)), _cat(10000.0, "x", ref=(24, 24), offset=1.0)),
    ("vit_small_patch16_dinov3", dict(img_size=(48, 80), num_reg_tokens=4), _dinov3),
    ("vit_small_patch16_rope_mixed_224", dict(img_size=(48, 80)), "mixed"),
    ("vit_small_patch16_rope_224", dict(img_size=(48, 80), rope_type="mrope", rope_grid_indexing="ij",
                                        rope_mrope_section=(2, 3, 3)), "mrope"),
]


def _capture_block0(model, x, monkeypatch):
    """q and k of the first block where they enter attention (after any rotation)."""
    seen, sdpa = [], F.scaled_dot_product_attention

    def record(q, k, v, *args, **kwargs):
        seen.append((q.detach(), k.detach()))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", record)
    with torch.no_grad():
        model.forward_features(x)
    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    return seen[0]


def _model_recipe(model, recipe, grid):
    d = model.blocks[0].attn.head_dim if hasattr(model.blocks[0].attn, "head_dim") else \
        model.embed_dim // model.blocks[0].attn.num_heads
    if recipe == "mixed":
        return model.rope.freqs[:, 0].detach(), posext.rope_positions_2d(grid), "interleaved", None
    if recipe == "mrope":
        xy = posext.rope_positions_2d(grid)
        positions = torch.stack([torch.zeros_like(xy[:, 0]), xy[:, 1], xy[:, 0]], 1)
        inv_freq = 100.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # the model's rope_temperature
        return inv_freq.float(), positions, "half", _mrope_counts(d, (2, 3, 3))
    return (*recipe(d, grid), None)


@pytest.mark.parametrize("name,kwargs,recipe", MODELS, ids=[f"{m[0]}-{m[2]}" if isinstance(m[2], str)
                                                            else m[0] for m in MODELS])
def test_timm_model_attention_matches(backend, monkeypatch, name, kwargs, recipe):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, embed_dim=64, num_heads=2, depth=1, num_classes=0,
                              **kwargs).eval()
    for block in model.blocks:
        block.attn.fused_attn = True
    x = torch.randn(2, 3, *kwargs["img_size"])
    grid = model.patch_embed.grid_size
    freqs, positions, pair_layout, sections = _model_recipe(model, recipe, grid)
    want_q, want_k = _capture_block0(model, x, monkeypatch)
    model.rope = None  # the same model without RoPE: block 0 sees the same tokens, q and k unrotated
    q, k = _capture_block0(model, x, monkeypatch)
    prefix = model.num_prefix_tokens
    got = posext.apply_rope(q, k, positions, freqs, sections=sections, num_prefix_tokens=prefix,
                            section_layout="interleaved", pair_layout=pair_layout)
    assert torch.equal(got[0][:, :, :prefix], want_q[:, :, :prefix])  # class token / registers unrotated
    _close(got, (want_q, want_k))


def test_new_position_options_refuse_bad_input():
    assert_error_names(lambda: posext.rope_positions_2d(GRID, mode="normalized", normalize_coords="mean"),
                       ValueError, ["normalize_coords", "mean", "separate"])
    assert_error_names(lambda: posext.rope_positions_2d(GRID, normalize_coords="max"), ValueError,
                       ["normalize_coords", "mode='normalized'"])
    assert_error_names(lambda: posext.rope_positions_2d(GRID, offset="1"), TypeError, ["offset", "str"])
    assert_error_names(lambda: posext.rope_positions_2d(GRID, offset=True), TypeError, ["offset"])
    assert_error_names(lambda: posext.rope_positions_2d(GRID, offset=math.inf), ValueError,
                       ["offset", "finite"])


def test_offset_and_coordinate_modes_by_hand():
    pos = posext.rope_positions_2d((2, 4), ref_grid_size=(4, 8), offset=1.0, dtype=torch.float64)
    assert pos[:, 0].tolist() == [2.0, 4.0, 6.0, 8.0] * 2 and pos[:, 1].tolist() == [2.0] * 4 + [4.0] * 4
    wide = posext.rope_positions_2d((2, 4), mode="normalized", normalize_coords="min", dtype=torch.float64)
    assert wide[:4, 0].tolist() == [-0.5, 0.5, 1.5, 2.5] and wide[::4, 1].tolist() == [-0.5, 0.5]
    tall = posext.rope_positions_2d((2, 4), mode="normalized", normalize_coords="max", dtype=torch.float64)
    assert tall[:4, 0].tolist() == [-0.75, -0.25, 0.25, 0.75] and tall[::4, 1].tolist() == [-0.75, -0.25]
