"""posext.compat resampling drop-ins against their peers.

Oracles: timm 1.0.31 ``timm.layers.resample_abs_pos_embed`` / ``_nhwc``; open_clip 3.3.0
``open_clip.model.resize_pos_embed`` and ``open_clip.pos_embed.interpolate_pos_embed`` (MAE's copy);
transformers 5.23 ViT / CLIP / Dinov2 / Dinov2WithRegisters embedding modules (tiny random configs, offline).
DINO v1 / DINOv2 are not installable: their methods are re-stated below in plain torch.

Tolerances on N(0, 1) data: float32 max abs <= 1e-5; float64 computed in float64 <= 1e-12; float16 /
bfloat16 (oracle also in float32) within 1 ulp, or within 1e-5 abs for values so close to zero that an
ulp is finer than float32 rounding noise; prefix rows always bit for bit.
"""
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from posext.compat import dino as cdino
from posext.compat import hf as chf
from posext.compat import mae as cmae
from posext.compat import open_clip as coc
from posext.compat import timm as ctimm

F32_TOL = 1e-5
F64_TOL = 1e-12
LOW = (torch.float16, torch.bfloat16)


def _randn(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype)


def _ulp_key(t):
    """Monotonic integer key of float16 / bfloat16 bit patterns (+0 and -0 share 0)."""
    bits = t.contiguous().view(torch.int16).to(torch.int32)
    return torch.where(bits < 0, -(bits & 0x7FFF), bits)


def assert_close(got, want, *, prefix=0, f64_tol=F64_TOL):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    if prefix:
        assert torch.equal(got[..., :prefix, :], want[..., :prefix, :]), "prefix rows differ"
    if got.dtype in LOW:
        # 1 ulp; near zero an ulp is finer than float32's summation-order noise, so there 1e-5 abs applies.
        ulps = (_ulp_key(got) - _ulp_key(want)).abs()
        absdiff = (got.float() - want.float()).abs()
        bad = (ulps > 1) & (absdiff > F32_TOL)
        assert not bad.any(), f"{ulps[bad].max().item()} ulp, abs {absdiff[bad].max().item()}"
    else:
        tol = F32_TOL if got.dtype == torch.float32 else f64_tol
        diff = (got.double() - want.double()).abs().max().item()
        assert diff <= tol, diff


def plain_resample(posemb, old_size, new_size, prefix, *, mode="bicubic", antialias=False, upcast=True):
    """split prefix -> permute -> F.interpolate (float32 if upcast) -> permute -> cat, for [B, P+N, C]."""
    b, _, c = posemb.shape
    grid = posemb[:, prefix:].reshape(b, *old_size, c).permute(0, 3, 1, 2)
    kwargs = {} if mode == "nearest" else dict(antialias=antialias, align_corners=False)
    out = F.interpolate(grid.float() if upcast else grid, size=new_size, mode=mode, **kwargs).to(posemb.dtype)
    return torch.cat([posemb[:, :prefix], out.permute(0, 2, 3, 1).reshape(b, -1, c)], dim=1)




# ----------------------------------------------------------------------------------------------- timm

@pytest.fixture(scope="module")
def timm_pe():
    return pytest.importorskip("timm.layers.pos_embed")


TIMM_CASES = [  # (num_prefix_tokens, old_size or None, new_size)
    (0, None, (20, 20)),     # upsample, no prefix
    (1, None, (9, 9)),       # downsample
    (2, (7, 7), (10, 13)),   # non-square new
    (5, (4, 6), (8, 3)),     # non-square old, 5 prefix tokens
    (1, (3, 12), (9, 9)),    # non-square old -> square
    (1, None, (2, 8)),       # same count, square old (None) -> non-square new: timm resamples
    (0, (2, 8), (8, 2)),     # same count, transposed grid
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("case", TIMM_CASES, ids=lambda c: f"p{c[0]}-{c[1]}-{c[2]}")
def test_timm_resample_abs_pos_embed(timm_pe, backend, case, antialias, dtype):
    prefix, old_size, new_size = case
    old = old_size or ((4, 4) if new_size == (2, 8) else (14, 14))
    posemb = _randn(1, prefix + old[0] * old[1], 24, dtype=dtype)
    kw = dict(old_size=old_size, num_prefix_tokens=prefix, antialias=antialias)
    want = timm_pe.resample_abs_pos_embed(posemb, list(new_size), **kw)
    got = ctimm.resample_abs_pos_embed(posemb, list(new_size), **kw)
    assert got is not posemb
    assert_close(got, want, prefix=prefix)


def test_timm_signatures_match(timm_pe):
    import inspect
    for name in ("resample_abs_pos_embed", "resample_abs_pos_embed_nhwc"):
        theirs = inspect.signature(getattr(timm_pe, name))
        ours = inspect.signature(getattr(ctimm, name))
        assert [(p.name, p.default) for p in ours.parameters.values()] == \
               [(p.name, p.default) for p in theirs.parameters.values()], name


@pytest.mark.parametrize("interpolation,align_corners,antialias", [
    ("bicubic", None, True), ("bicubic", True, False), ("bicubic", True, True), ("bilinear", False, True),
    ("bilinear", True, False), ("nearest", None, False), ("area", None, False),
])
def test_timm_modes_and_align_corners(timm_pe, interpolation, align_corners, antialias):
    posemb = _randn(1, 1 + 6 * 5, 16, seed=1)
    kw = dict(old_size=(6, 5), interpolation=interpolation, align_corners=align_corners, antialias=antialias)
    for new_size in ([9, 11], [3, 4]):
        assert_close(ctimm.resample_abs_pos_embed(posemb, new_size, **kw),
                     timm_pe.resample_abs_pos_embed(posemb, new_size, **kw), prefix=1)


def test_timm_float64_is_computed_in_float32(timm_pe):
    posemb = _randn(1, 2 + 49, 16, dtype=torch.float64, seed=2)
    want = timm_pe.resample_abs_pos_embed(posemb, [10, 12], num_prefix_tokens=2)
    got = ctimm.resample_abs_pos_embed(posemb, [10, 12], num_prefix_tokens=2)
    assert got.dtype == torch.float64
    assert_close(got, want, prefix=2, f64_tol=F32_TOL)
    # the grid went through float32 like timm's: every value is a float32 number
    assert torch.equal(got[:, 2:], got[:, 2:].float().double())


def test_timm_early_outs(timm_pe):
    square = _randn(1, 1 + 16, 8)
    for fn in (ctimm.resample_abs_pos_embed, timm_pe.resample_abs_pos_embed):
        assert fn(square, [4, 4]) is square                                   # no old_size, square new
        assert fn(square, [4, 4], old_size=[4, 4]) is square
        flat = _randn(1, 1 + 16, 8, seed=3)
        assert fn(flat, [2, 8], old_size=(2, 8)) is flat                      # old == new, non-square
        assert fn(flat, [2, 8]) is not flat                                   # None -> square (4, 4) old


def test_timm_old_early_return_bug_is_not_reproduced():
    """timm <= aa4b585 returned (2, 8) -> (4, 4) unchanged (same count, square new grid); we resample."""
    for old, new, prefix in [((2, 8), (4, 4), 1), ((12, 3), (6, 6), 0), ((1, 9), (3, 3), 2)]:
        posemb = _randn(1, prefix + old[0] * old[1], 12, seed=4)
        got = ctimm.resample_abs_pos_embed(posemb, list(new), old_size=list(old), num_prefix_tokens=prefix)
        assert got is not posemb and not torch.equal(got, posemb)
        assert_close(got, plain_resample(posemb, old, new, prefix, antialias=True), prefix=prefix)


def test_timm_batch_and_int_size(timm_pe):
    posemb = _randn(3, 1 + 25, 8, seed=5)
    got = ctimm.resample_abs_pos_embed(posemb, 7)
    for i in range(3):
        assert_close(got[i:i + 1], timm_pe.resample_abs_pos_embed(posemb[i:i + 1], [7, 7]), prefix=1)


def test_timm_verbose_log(timm_pe, caplog):
    posemb = _randn(1, 1 + 16, 8)
    with caplog.at_level("INFO"):
        ctimm.resample_abs_pos_embed(posemb, [6, 6], verbose=True)
        timm_pe.resample_abs_pos_embed(posemb, [6, 6], verbose=True)
        ctimm.resample_abs_pos_embed_nhwc(posemb[:, 1:].reshape(1, 4, 4, 8), [6, 6], verbose=True)
        timm_pe.resample_abs_pos_embed_nhwc(posemb[:, 1:].reshape(1, 4, 4, 8), [6, 6], verbose=True)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 4 and msgs[0] == msgs[1] and msgs[2] == msgs[3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("old,new", [((14, 14), (20, 20)), ((7, 9), (4, 11)), ((16, 16), (10, 10))])
def test_timm_nhwc(timm_pe, old, new, antialias, dtype):
    posemb = _randn(1, *old, 16, dtype=dtype, seed=6)
    want = timm_pe.resample_abs_pos_embed_nhwc(posemb, list(new), antialias=antialias)
    got = ctimm.resample_abs_pos_embed_nhwc(posemb, list(new), antialias=antialias)
    assert_close(got, want, f64_tol=F32_TOL)


def test_timm_nhwc_early_out_and_3d(timm_pe):
    posemb = _randn(1, 5, 7, 8)
    assert ctimm.resample_abs_pos_embed_nhwc(posemb, [5, 7]) is posemb
    hwc = posemb[0]
    got = ctimm.resample_abs_pos_embed_nhwc(hwc, [9, 3])
    assert got.shape == (1, 9, 3, 8)
    assert_close(got, timm_pe.resample_abs_pos_embed_nhwc(hwc, [9, 3]))


# ------------------------------------------------------------------------------------------- open_clip

@pytest.fixture(scope="module")
def oc_model():
    return pytest.importorskip("open_clip.model")


def _oc_visual(grid_size):
    return SimpleNamespace(visual=SimpleNamespace(grid_size=grid_size))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("interpolation,antialias", [("bicubic", True), ("bicubic", False),
                                                     ("bilinear", True), ("bilinear", False)])
@pytest.mark.parametrize("old_side,grid_size", [(7, 10), (7, (4, 9)), (12, (5, 5)), (6, (12, 4))])
def test_open_clip_resize_pos_embed(oc_model, old_side, grid_size, interpolation, antialias, dtype):
    table = _randn(1 + old_side * old_side, 16, dtype=dtype, seed=7)
    theirs, ours = ({"visual.positional_embedding": table, "other": 1},
                    {"visual.positional_embedding": table, "other": 1})
    model = _oc_visual(grid_size)
    assert oc_model.resize_pos_embed(theirs, model, interpolation=interpolation, antialias=antialias) is None
    assert coc.resize_pos_embed(ours, model, interpolation=interpolation, antialias=antialias) is None
    assert ours.keys() == theirs.keys()
    assert_close(ours["visual.positional_embedding"], theirs["visual.positional_embedding"], prefix=1)


def test_open_clip_nearest(oc_model):
    """open_clip passes align_corners=False, which F.interpolate refuses for 'nearest'; ours resamples."""
    table = _randn(1 + 25, 8)
    with pytest.raises(ValueError):
        oc_model.resize_pos_embed({"visual.positional_embedding": table}, _oc_visual(7), "nearest", False)
    sd = {"visual.positional_embedding": table}
    coc.resize_pos_embed(sd, _oc_visual(7), "nearest", False)
    want = plain_resample(table[None], (5, 5), (7, 7), 1, mode="nearest", upcast=False)[0]
    assert torch.equal(sd["visual.positional_embedding"], want)


def test_open_clip_no_ops(oc_model):
    table = _randn(1 + 16, 8)
    for fn in (oc_model.resize_pos_embed, coc.resize_pos_embed):
        sd = {"visual.positional_embedding": table}
        fn(sd, _oc_visual(4))
        assert sd["visual.positional_embedding"] is table
        fn(sd, _oc_visual((2, 8)))                      # equal count, non-square grid: open_clip skips it too
        assert sd["visual.positional_embedding"] is table
        fn(sd, SimpleNamespace(visual=SimpleNamespace()))  # no grid_size
        assert sd["visual.positional_embedding"] is table
        empty = {"x": table}
        fn(empty, _oc_visual(6))
        assert empty == {"x": table}


def test_open_clip_real_vision_tower(oc_model):
    transformer = pytest.importorskip("open_clip.transformer")
    kw = dict(patch_size=8, width=16, layers=1, heads=2, mlp_ratio=2.0, output_dim=8)
    torch.manual_seed(0)
    src = transformer.VisionTransformer(image_size=56, **kw)                  # 7 x 7
    dst = transformer.VisionTransformer(image_size=(48, 32), **kw)            # 6 x 4
    sd = {"visual." + k: v for k, v in src.state_dict().items()}
    theirs, ours = dict(sd), dict(sd)
    oc_model.resize_pos_embed(theirs, SimpleNamespace(visual=dst))
    coc.resize_pos_embed(ours, SimpleNamespace(visual=dst))
    assert_close(ours["visual.positional_embedding"], theirs["visual.positional_embedding"], prefix=1)
    dst.load_state_dict({k[len("visual."):]: v for k, v in ours.items()})


def test_open_clip_half_is_computed_in_float32():
    """open_clip interpolates half natively (CPU: no antialias kernel); posext computes in float32."""
    table = _randn(1 + 49, 16, dtype=torch.float16, seed=8)
    sd = {"visual.positional_embedding": table}
    coc.resize_pos_embed(sd, _oc_visual((9, 6)), antialias=False)
    want = plain_resample(table[None], (7, 7), (9, 6), 1, antialias=False, upcast=True)[0]
    assert_close(sd["visual.positional_embedding"], want, prefix=1)


# ------------------------------------------------------------------------------------------------- MAE

@pytest.fixture(scope="module")
def mae_oracle():
    return pytest.importorskip("open_clip.pos_embed").interpolate_pos_embed


def _mae_model(num_patches, extra, c):
    return SimpleNamespace(patch_embed=SimpleNamespace(num_patches=num_patches),
                           pos_embed=torch.zeros(1, num_patches + extra, c))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("extra,old,new,batch", [(1, 14, 16, 1), (1, 14, 7, 1), (2, 5, 9, 1), (0, 6, 4, 2)])
def test_mae_interpolate_pos_embed(mae_oracle, capsys, extra, old, new, batch, dtype):
    ckpt = _randn(batch, extra + old * old, 16, dtype=dtype, seed=9)
    model = _mae_model(new * new, extra, 16)
    theirs, ours = {"pos_embed": ckpt, "head": 0}, {"pos_embed": ckpt, "head": 0}
    mae_oracle(model, theirs)
    printed_theirs = capsys.readouterr().out
    cmae.interpolate_pos_embed(model, ours)
    printed_ours = capsys.readouterr().out
    assert printed_ours == printed_theirs == f"Position interpolate from {old}x{old} to {new}x{new}\n"
    assert_close(ours["pos_embed"], theirs["pos_embed"], prefix=extra)


def test_mae_no_ops(mae_oracle, capsys):
    ckpt = _randn(1, 1 + 36, 8)
    for fn in (mae_oracle, cmae.interpolate_pos_embed):
        sd = {"pos_embed": ckpt}
        fn(_mae_model(36, 1, 8), sd)
        assert sd["pos_embed"] is ckpt
        sd = {"other": ckpt}
        fn(_mae_model(16, 1, 8), sd)
        assert sd == {"other": ckpt}
    assert capsys.readouterr().out == ""


def test_mae_with_timm_vit(mae_oracle, capsys):
    vt = pytest.importorskip("timm.models.vision_transformer")
    kw = dict(patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0)
    src = vt.VisionTransformer(img_size=32, **kw)   # 4 x 4
    dst = vt.VisionTransformer(img_size=56, **kw)   # 7 x 7
    torch.nn.init.normal_(src.pos_embed)
    sd = src.state_dict()
    theirs, ours = dict(sd), dict(sd)
    mae_oracle(dst, theirs)
    cmae.interpolate_pos_embed(dst, ours)
    assert capsys.readouterr().out.count("Position interpolate from 4x4 to 7x7") == 2
    assert_close(ours["pos_embed"], theirs["pos_embed"], prefix=1)
    dst.load_state_dict(ours)


# ------------------------------------------------------------------------------------ DINO v1 / DINOv2
# Literal re-statements of facebookresearch/dino @7c446df and dinov2 @b8931f7 interpolate_pos_encoding
# (the methods' self.* reads become arguments). x: [B, 1 + npatch, C]; "w" is image dim 2 (rows).

def dino_v1_expected(pos_embed, x, w, h, patch_size):
    npatch, n = x.shape[1] - 1, pos_embed.shape[1] - 1
    if npatch == n and w == h:
        return pos_embed
    dim = x.shape[-1]
    w0, h0 = w // patch_size + 0.1, h // patch_size + 0.1
    side = int(math.sqrt(n))
    grid = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(w0 / math.sqrt(n), h0 / math.sqrt(n)), mode="bicubic")
    assert grid.shape[-2:] == (int(w0), int(h0))
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos_embed[:, 0].unsqueeze(0), grid), dim=1)


def dinov2_expected(pos_embed, x, w, h, patch_size, interpolate_offset=0.1, interpolate_antialias=False):
    out_dtype = x.dtype
    npatch, n = x.shape[1] - 1, pos_embed.shape[1] - 1
    if npatch == n and w == h:
        return pos_embed
    pos = pos_embed.float()
    dim = x.shape[-1]
    w0, h0 = w // patch_size, h // patch_size
    m = int(math.sqrt(n))
    assert n == m * m
    if interpolate_offset:
        size_kw = dict(scale_factor=(float(w0 + interpolate_offset) / m, float(h0 + interpolate_offset) / m))
    else:
        size_kw = dict(size=(w0, h0))
    grid = pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, mode="bicubic", antialias=interpolate_antialias, **size_kw)
    assert grid.shape[-2:] == (w0, h0)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos[:, 0].unsqueeze(0), grid), dim=1).to(out_dtype)


def _tokens(w, h, patch_size, c, dtype=torch.float32):
    return torch.zeros(2, 1 + (w // patch_size) * (h // patch_size), c, dtype=dtype)


DINO_SIZES = [(224, 320), (320, 224), (480, 480), (976, 976), (112, 448), (100, 250)]


@pytest.mark.parametrize("w,h", DINO_SIZES)
def test_dino_v1(backend, w, h):
    pos_embed = _randn(1, 1 + 14 * 14, 16, seed=10)
    x = _tokens(w, h, 16, 16)
    got = cdino.dino_interpolate_pos_encoding(pos_embed, x, w, h, 16)
    want = dino_v1_expected(pos_embed, x, w, h, 16)
    assert_close(got, want, prefix=1)
    assert got.shape[1] == 1 + (w // 16) * (h // 16)
    assert_close(cdino.dino_interpolate_pos_encoding(pos_embed, x.shape[1] - 1, w, h, 16), want, prefix=1)


def test_dino_v1_rows_come_from_w():
    """w (image dim 2) sets the rows: a table varying only along rows stays constant along columns."""
    rows = torch.arange(8.0).repeat_interleave(8)           # token y*8+x -> y
    pos_embed = torch.cat([torch.zeros(1), rows])[None, :, None].repeat(1, 1, 4)
    got = cdino.dino_interpolate_pos_encoding(pos_embed, _tokens(160, 64, 16, 4), 160, 64, 16)
    grid = got[0, 1:, 0].reshape(10, 4)
    assert torch.allclose(grid, grid[:, :1].expand(10, 4)) and not torch.allclose(grid[0], grid[-1])


def test_dino_early_returns():
    pos_embed = _randn(1, 1 + 16 * 16, 8)
    x = _tokens(224, 224, 14, 8, dtype=torch.float16)
    assert cdino.dino_interpolate_pos_encoding(pos_embed, x, 224, 224, 14) is pos_embed
    assert cdino.dinov2_interpolate_pos_encoding(pos_embed, x, 224, 224, 14) is pos_embed   # not cast
    # same count, w != h: resampled to 8 x 32
    x = _tokens(8 * 14, 32 * 14, 14, 8)
    got = cdino.dinov2_interpolate_pos_encoding(pos_embed, x, 8 * 14, 32 * 14, 14)
    assert_close(got, dinov2_expected(pos_embed, x, 8 * 14, 32 * 14, 14), prefix=1)
    assert_close(cdino.dino_interpolate_pos_encoding(pos_embed, x, 8 * 14, 32 * 14, 14),
                 dino_v1_expected(pos_embed, x, 8 * 14, 32 * 14, 14), prefix=1)


@pytest.mark.parametrize("pos_dtype,x_dtype", [(torch.float32, torch.float32), (torch.float32, torch.float16),
                                               (torch.float16, torch.float16),
                                               (torch.bfloat16, torch.bfloat16),
                                               (torch.float64, torch.float64)], ids=str)
@pytest.mark.parametrize("offset,antialias", [(0.1, False), (0.0, True), (0.0, False), (0.1, True)])
@pytest.mark.parametrize("w,h", [(546, 546), (518, 700), (280, 224), (1092, 602)])
def test_dinov2(w, h, offset, antialias, pos_dtype, x_dtype):
    pos_embed = _randn(1, 1 + 37 * 37, 8, dtype=pos_dtype, seed=11)
    x = _tokens(w, h, 14, 8, dtype=x_dtype)
    got = cdino.dinov2_interpolate_pos_encoding(pos_embed, x, w, h, 14, interpolate_offset=offset,
                                                interpolate_antialias=antialias)
    want = dinov2_expected(pos_embed, x, w, h, 14, offset, antialias)
    assert got.dtype == x_dtype
    assert_close(got, want, prefix=1, f64_tol=F32_TOL)


# ------------------------------------------------------------------------------------------ HF transformers

@pytest.fixture(scope="module")
def hf_modules():
    pytest.importorskip("transformers")
    from transformers import CLIPVisionConfig, Dinov2Config, Dinov2WithRegistersConfig, ViTConfig
    from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings
    from transformers.models.dinov2_with_registers.modeling_dinov2_with_registers import (
        Dinov2WithRegistersEmbeddings,
    )
    from transformers.models.vit.modeling_vit import ViTEmbeddings
    common = dict(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32)
    torch.manual_seed(0)
    return {
        "vit": (ViTEmbeddings(ViTConfig(**common)), {}),
        "clip": (CLIPVisionEmbeddings(CLIPVisionConfig(**common)), {}),
        "dinov2": (Dinov2Embeddings(Dinov2Config(**common)), dict(upcast=True)),
        "dinov2_reg": (Dinov2WithRegistersEmbeddings(Dinov2WithRegistersConfig(num_register_tokens=4,
                                                                                **common)),
                       dict(upcast=True, antialias=True)),
    }


def module_dtype(module):
    return next(module.parameters()).dtype


def _hf_table(name, module):
    if name == "clip":
        return module.position_embedding.weight.unsqueeze(0)
    return module.position_embeddings


HF_SIZES = [(48, 48), (16, 16), (40, 24), (24, 56), (64, 16), (32, 40), (33, 47)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ["vit", "clip", "dinov2", "dinov2_reg"])
def test_hf_interpolate_pos_encoding(hf_modules, name, dtype):
    module, flags = hf_modules[name]
    upcast = flags.get("upcast", False)
    # ViT / CLIP interpolate half natively; posext computes it in float32: the oracle is then the module in
    # float32 holding the same (rounded) weights, its output cast back.
    native_half = dtype in LOW and not upcast
    module = module.to(dtype)
    try:
        if native_half:
            module.float()
        for height, width in HF_SIZES:
            emb = torch.zeros(1, 1 + (height // 8) * (width // 8), 16)
            with torch.no_grad():
                want = module.interpolate_pos_encoding(emb.to(module_dtype(module)), height, width).to(dtype)
                got = chf.interpolate_pos_encoding(_hf_table(name, module).to(dtype), height, width, 8,
                                                   **flags)
            f64_tol = F32_TOL if upcast else F64_TOL
            assert_close(got, want, prefix=1, f64_tol=f64_tol)
    finally:
        module.float()


@pytest.mark.parametrize("name", ["vit", "clip", "dinov2", "dinov2_reg"])
def test_hf_early_return_and_always_interpolate(hf_modules, name):
    module, flags = hf_modules[name]
    table = _hf_table(name, module)
    emb = torch.zeros(1, 1 + 16, 16)
    with torch.no_grad():
        want = module.interpolate_pos_encoding(emb, 32, 32)
    got = chf.interpolate_pos_encoding(table, 32, 32, 8, **flags)
    assert got is table and torch.equal(got, want)
    got = chf.interpolate_pos_encoding(table, 32, 32, (8, 8), always_interpolate=True, **flags)
    assert got is not table and torch.allclose(got, table, atol=1e-6)   # same-size bicubic is the identity


def test_hf_patch_tuple_matches_dinov2(hf_modules):
    module, flags = hf_modules["dinov2"]
    emb = torch.zeros(1, 1 + 5 * 3, 16)
    with torch.no_grad():
        want = module.interpolate_pos_encoding(emb, 40, 24)
    assert_close(chf.interpolate_pos_encoding(module.position_embeddings, 40, 24, (8, 8), **flags), want,
                 prefix=1)
