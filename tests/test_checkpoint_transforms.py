"""posext.checkpoint.transforms against each family's own code (timm 1.0.x, transformers 5.x) as oracle."""
import types

import pytest
import torch
import torch.nn.functional as F

from posext.checkpoint import transforms as tf

timm = pytest.importorskip("timm")
from timm.layers import pos_embed_rel as timm_rel  # noqa: E402
from timm.layers import resample_patch_embed as timm_resample_patch_embed  # noqa: E402

TOL = dict(rtol=0, atol=1e-5)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64).to(dtype)


def _close(a, b, atol=1e-5):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    assert err <= atol, f"max error {err} > {atol}"
    return err


# ------------------------------------------------------------------------------------------ index


@pytest.mark.parametrize("window", [(1, 1), (2, 3), (4, 4), (7, 5)])
@pytest.mark.parametrize("class_token", [False, True])
def test_relative_position_index_matches_timm(window, class_token):
    ours = tf.relative_position_index(window, class_token=class_token)
    assert ours.dtype == torch.long
    assert torch.equal(ours, timm_rel.gen_relative_position_index(window, class_token=class_token))
    if class_token:
        from timm.models.beit import gen_relative_position_index as beit_index
        assert torch.equal(ours, beit_index(window))
        n = window[0] * window[1] + 1
        layer = timm_rel.RelPosBias(window, num_heads=2, prefix_tokens=1)
        assert torch.equal(ours.view(-1), layer.relative_position_index)
        assert ours.shape == (n, n)
    else:
        from timm.models.swin_transformer import get_relative_position_index
        assert torch.equal(ours, get_relative_position_index(*window))


@pytest.mark.parametrize("window", [(3, 3), (2, 5)])
def test_relative_position_index_matches_hf_beit(window):
    modeling_beit = pytest.importorskip("transformers.models.beit.modeling_beit")
    hf = modeling_beit.BeitRelativePositionBias.generate_relative_position_index(window)
    assert torch.equal(tf.relative_position_index(window, class_token=True), hf)


def test_relative_position_index_bad_inputs():
    with pytest.raises(ValueError, match=r"window\[0\] \(H\) must be > 0"):
        tf.relative_position_index((0, 3))
    with pytest.raises(TypeError, match="window must be an int or an"):
        tf.relative_position_index("7x7")
    with pytest.raises(TypeError, match="class_token must be True or False"):
        tf.relative_position_index(3, class_token=1)


# ------------------------------------------------------------------------------------------ rel-pos tables


def _rows(window, heads, extra=0, dtype=torch.float32, seed=0):
    return _randn((2 * window[0] - 1) * (2 * window[1] - 1) + extra, heads, dtype=dtype, seed=seed)


@pytest.mark.parametrize("old,new", [((7, 7), (12, 12)), ((12, 12), (7, 7)), ((4, 4), (5, 3)),
                                     ((3, 5), (6, 4)), ((1, 1), (3, 3)), ((3, 3), (1, 1)), ((2, 2), (2, 5))])
@pytest.mark.parametrize("extra", [0, 3])
def test_geometric_rows_match_timm(old, new, extra):
    table = _rows(old, 3, extra)
    new_rows = (2 * new[0] - 1) * (2 * new[1] - 1) + extra
    want = timm_rel.resize_rel_pos_bias_table(table, new_window_size=new, new_bias_shape=(new_rows, 3),
                                              old_window_size=old)
    got = tf.resize_rel_pos_bias_table(table, old, new, num_extra_rows=extra)
    _close(got, want)
    if extra:
        assert torch.equal(got[-extra:], table[-extra:])  # kept bit for bit
    # float64: the same recipe evaluated in float64 (timm itself works in float32)
    got64 = tf.resize_rel_pos_bias_table(table.double(), old, new, num_extra_rows=extra)
    assert got64.dtype == torch.float64
    _close(got64, want, atol=1e-5)


@pytest.mark.parametrize("old,new", [((7, 7), (12, 12)), ((8, 8), (4, 4)), ((3, 3), (5, 2))])
def test_geometric_heads_2d_matches_timm_maxvit_tf(old, new):
    layer = timm_rel.RelPosBiasTf(old, num_heads=4)
    with torch.no_grad():
        layer.relative_position_bias_table.copy_(_randn(4, 2 * old[0] - 1, 2 * old[1] - 1))
    table = layer.relative_position_bias_table.detach().clone()
    layer.set_window_size(new)  # timm's run-time resize; its checkpoint filter calls the same function
    got = tf.resize_rel_pos_bias_table(table, old, new, layout="heads_2d")
    assert got.shape == (4, 2 * new[0] - 1, 2 * new[1] - 1)
    _close(got, layer.relative_position_bias_table.detach())


def test_geometric_table_drives_timm_rel_pos_bias():
    """GCViT / MaxViT-rw RelPosBias.set_window_size (non-square old window passed through) == ours."""
    layer = timm_rel.RelPosBias((3, 5), num_heads=2)
    with torch.no_grad():
        layer.relative_position_bias_table.copy_(_rows((3, 5), 2, seed=3))
    table = layer.relative_position_bias_table.detach().clone()
    layer.set_window_size((6, 4))
    got = tf.resize_rel_pos_bias_table(table, (3, 5), (6, 4))
    _close(got, layer.relative_position_bias_table.detach())
    bias = got[tf.relative_position_index((6, 4)).view(-1)].view(24, 24, 2).permute(2, 0, 1)
    _close(bias.unsqueeze(0), layer.get_bias().detach())


def test_beit_and_swin_checkpoint_filters():
    from timm.models import beit, swin_transformer
    small = beit.Beit(img_size=48, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                      use_abs_pos_emb=False, use_rel_pos_bias=True)
    big = beit.Beit(img_size=80, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                    use_abs_pos_emb=False, use_rel_pos_bias=True)
    sd = {k: _randn(*v.shape, seed=i) for i, (k, v) in enumerate(small.state_dict().items())
          if v.is_floating_point()}
    key = "blocks.0.attn.relative_position_bias_table"
    out = beit.checkpoint_filter_fn(dict(sd), big)
    _close(tf.resize_rel_pos_bias_table(sd[key], 3, 5, num_extra_rows=3), out[key])

    s_small = swin_transformer.SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16,
                                               depths=(1,), num_heads=(2,), num_classes=0)
    s_big = swin_transformer.SwinTransformer(img_size=56, patch_size=4, window_size=7, embed_dim=16,
                                             depths=(1,), num_heads=(2,), num_classes=0)
    sd = {k: _randn(*v.shape, seed=i) for i, (k, v) in enumerate(s_small.state_dict().items())}
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    out = swin_transformer.checkpoint_filter_fn(dict(sd), s_big)
    assert not torch.equal(out[key][:5], sd[key][:5])
    _close(tf.resize_rel_pos_bias_table(sd[key], 4, 7), out[key])


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
def test_interpolated_methods_match_f_interpolate(method):
    table = _rows((3, 4), 2, extra=3)
    grid = table[:35].T.reshape(1, 2, 5, 7)
    want = F.interpolate(grid, size=(9, 3), mode=method, align_corners=False).reshape(2, 27).T
    got = tf.resize_rel_pos_bias_table(table, (3, 4), (5, 2), num_extra_rows=3, method=method)
    _close(got[:27], want)
    assert torch.equal(got[27:], table[35:])
    # timm's "simple" resize is the bicubic one
    if method == "bicubic":
        sq = _rows((4, 4), 2, extra=3)
        want = timm_rel.resize_rel_pos_bias_table_simple(sq, (6, 6), (124, 2))
        _close(tf.resize_rel_pos_bias_table(sq, 4, 6, num_extra_rows=3, method="bicubic"), want)


@pytest.mark.parametrize("old,new", [(3, 5), (5, 3), (4, 7)])
def test_bilinear_matches_hf_beit_runtime(old, new):
    transformers = pytest.importorskip("transformers")
    from transformers.models.beit.modeling_beit import BeitRelativePositionBias
    cfg = transformers.BeitConfig(image_size=16 * old, patch_size=16, num_attention_heads=3)
    module = BeitRelativePositionBias(cfg)
    with torch.no_grad():
        module.relative_position_bias_table.copy_(_rows((old, old), 3, extra=3, seed=5))
    n = new * new + 1
    # dim_size = n: HF's final bilinear resize of the gathered bias to (dim_size, dim_size) is the identity
    want = module((new, new), interpolate_pos_encoding=True, dim_size=n).detach().reshape(3, n, n)
    table = tf.resize_rel_pos_bias_table(module.relative_position_bias_table.detach(), old, new,
                                         num_extra_rows=3, method="bilinear")
    got = table[tf.relative_position_index(new, class_token=True).view(-1)].view(n, n, 3).permute(2, 0, 1)
    _close(got, want)


def test_rel_pos_bias_table_same_window_is_copy_and_half():
    table = _rows((4, 4), 2, extra=3)
    out = tf.resize_rel_pos_bias_table(table, 4, 4, num_extra_rows=3)
    assert torch.equal(out, table) and out.data_ptr() != table.data_ptr()
    half = tf.resize_rel_pos_bias_table(table.bfloat16(), 4, 6, num_extra_rows=3)
    assert half.dtype == torch.bfloat16
    _close(half.float(), tf.resize_rel_pos_bias_table(table.bfloat16().float(), 4, 6, num_extra_rows=3),
           atol=2e-2)


def test_rel_pos_bias_table_bad_inputs():
    table = _rows((4, 4), 2)
    with pytest.raises(ValueError, match=r"table \(49, 2\) must have .* = 52 rows for old_window \(4, 4\)"):
        tf.resize_rel_pos_bias_table(table, 4, 6, num_extra_rows=3)
    with pytest.raises(ValueError, match="method must be one of"):
        tf.resize_rel_pos_bias_table(table, 4, 6, method="cubic")
    with pytest.raises(ValueError, match="layout must be 'rows' or 'heads_2d'"):
        tf.resize_rel_pos_bias_table(table, 4, 6, layout="flat")
    with pytest.raises(ValueError, match=r"table must be \[heads, 2Wh-1, 2Ww-1\]"):
        tf.resize_rel_pos_bias_table(table, 4, 6, layout="heads_2d")
    with pytest.raises(ValueError, match=r"must be \[heads, 7, 7\] for old_window \(4, 4\)"):
        tf.resize_rel_pos_bias_table(torch.zeros(2, 7, 5), 4, 6, layout="heads_2d")
    with pytest.raises(TypeError, match="table.dtype must be one of"):
        tf.resize_rel_pos_bias_table(table.long(), 4, 6)
    with pytest.raises(TypeError, match="table must be a tensor"):
        tf.resize_rel_pos_bias_table(table.tolist(), 4, 6)
    with pytest.raises(ValueError, match=r"num_extra_rows must be >= 0"):
        tf.resize_rel_pos_bias_table(table, 4, 6, num_extra_rows=-1)


# ------------------------------------------------------------------------------------------ SAM / MViTv2


@pytest.mark.parametrize("old_s,new_s", [(14, 32), (32, 14), (1, 4), (7, 7)])
def test_rel_pos_1d_matches_sam_get_rel_pos(old_s, new_s):
    from timm.models.vision_transformer_sam import get_rel_pos
    rel = _randn(2 * old_s - 1, 8)
    got = tf.resize_rel_pos_1d(rel, 2 * new_s - 1)
    coords = torch.arange(new_s)[:, None] - torch.arange(new_s)[None, :] + new_s - 1
    _close(got[coords], get_rel_pos(new_s, new_s, rel))
    modeling_sam = pytest.importorskip("transformers.models.sam.modeling_sam")
    _close(got[coords], modeling_sam.SamVisionAttention.get_rel_pos(None, new_s, new_s, rel))
    want64 = F.interpolate(rel.double().T[None], size=2 * new_s - 1, mode="linear")[0].T
    _close(tf.resize_rel_pos_1d(rel.double(), 2 * new_s - 1), want64, atol=1e-12)


def test_rel_pos_1d_matches_mvitv2_filter():
    from timm.models import mvitv2
    sd = {"stages.0.blocks.0.norm1.weight": torch.ones(4),
          "stages.0.blocks.0.attn.rel_pos_h": _randn(27, 8, seed=1),
          "stages.0.blocks.0.attn.rel_pos_w": _randn(27, 8, seed=2)}
    target = {k: (torch.zeros(13, 8) if "rel_pos" in k else v) for k, v in sd.items()}
    model = types.SimpleNamespace(state_dict=lambda: target)
    out = mvitv2.checkpoint_filter_fn(dict(sd), model)
    for k in ("stages.0.blocks.0.attn.rel_pos_h", "stages.0.blocks.0.attn.rel_pos_w"):
        _close(tf.resize_rel_pos_1d(sd[k], 13), out[k])


def test_rel_pos_1d_bad_inputs():
    with pytest.raises(ValueError, match=r"rel_pos must be \[2S-1, C\], got shape \(1, 5, 3\)"):
        tf.resize_rel_pos_1d(torch.zeros(1, 5, 3), 7)
    with pytest.raises(ValueError, match="new_length must be > 0"):
        tf.resize_rel_pos_1d(torch.zeros(5, 3), 0)
    with pytest.raises(TypeError, match="new_length must be an int"):
        tf.resize_rel_pos_1d(torch.zeros(5, 3), 7.0)


# ------------------------------------------------------------------------------------------ LeViT-style


@pytest.mark.parametrize("res", [1, 4, 7, (3, 5)])
def test_attention_bias_idxs_match_families(res):
    from timm.models import efficientformer, efficientformer_v2, efficientvit_msra, levit, tiny_vit
    pair = (res, res) if isinstance(res, int) else res
    ours = tf.attention_bias_idxs(res)
    assert ours.shape == (pair[0] * pair[1],) * 2
    ef = efficientformer.Attention(dim=16, key_dim=4, num_heads=2, resolution=res)
    assert "attention_bias_idxs" in ef.state_dict()  # a persistent buffer in EfficientFormer v1
    assert torch.equal(ours, ef.attention_bias_idxs)
    assert torch.equal(ours, levit.Attention(16, 4, num_heads=2, resolution=res).attention_bias_idxs)
    assert torch.equal(ours, efficientformer_v2.Attention2d(16, 4, num_heads=2, resolution=res)
                       .attention_bias_idxs)
    assert torch.equal(ours, tiny_vit.Attention(16, 4, num_heads=2, resolution=pair).attention_bias_idxs)
    if pair[0] == pair[1]:
        cga = efficientvit_msra.CascadedGroupAttention(16, 4, num_heads=2, resolution=pair[0],
                                                       kernels=(3, 3))
        assert torch.equal(ours, cga.attention_bias_idxs)


@pytest.mark.parametrize("res", [4, 7, (6, 5)])
def test_attention_bias_idxs_downsample(res):
    from timm.models import efficientformer_v2, levit
    got = tf.attention_bias_idxs(res, stride=2)
    assert torch.equal(got, levit.AttentionDownsample(16, 16, 4, num_heads=2, stride=2, resolution=res)
                       .attention_bias_idxs)
    assert torch.equal(got, efficientformer_v2.Attention2dDownsample(16, 4, num_heads=2, resolution=res)
                       .attention_bias_idxs)


@pytest.mark.parametrize("old,new", [(7, 14), (14, 7), (5, 5), (1, 3), (4, 1)])
def test_attention_biases_match_timm_levit_resize(old, new):
    biases = _randn(3, old * old)
    want = timm_rel.resize_rel_pos_bias_table_levit(biases.T, (new * new, 3)).T
    got = tf.resize_attention_biases(biases, old, new)
    _close(got, want)
    want64 = F.interpolate(biases.double().view(1, 3, old, old), size=(new, new), mode="bicubic",
                           antialias=True).view(3, -1)
    _close(tf.resize_attention_biases(biases.double(), old, new), want64, atol=1e-12)


def test_attention_biases_tiny_vit_and_efficientvit_filters():
    from timm.models import efficientvit_msra, tiny_vit
    sd = {"stages.1.blocks.0.attn.attention_biases": _randn(4, 49),
          "stages.1.blocks.0.attn.attention_bias_idxs": torch.zeros(49, 49, dtype=torch.long)}
    target = {"stages.1.blocks.0.attn.attention_biases": torch.zeros(4, 100)}
    model = types.SimpleNamespace(state_dict=lambda: target)
    key = "stages.1.blocks.0.attn.attention_biases"
    for filt in (tiny_vit.checkpoint_filter_fn, efficientvit_msra.checkpoint_filter_fn):
        out = filt(dict(sd), model)
        assert "stages.1.blocks.0.attn.attention_bias_idxs" not in out
        _close(tf.resize_attention_biases(sd[key], 7, 10), out[key])


def test_attention_biases_non_square_and_bad_inputs():
    biases = _randn(2, 12)
    want = F.interpolate(biases.view(1, 2, 3, 4), size=(5, 2), mode="bilinear", antialias=False).view(2, 10)
    _close(tf.resize_attention_biases(biases, (3, 4), (5, 2), mode="bilinear", antialias=False), want)
    with pytest.raises(ValueError, match=r"biases \(2, 12\) must have H\*W = 16 columns"):
        tf.resize_attention_biases(biases, 4, 5)
    with pytest.raises(ValueError, match=r"biases must be \[heads, H\*W\]"):
        tf.resize_attention_biases(biases.view(2, 3, 4), (3, 4), 5)
    with pytest.raises(ValueError, match="stride must be > 0"):
        tf.attention_bias_idxs(4, stride=0)


# ------------------------------------------------------------------------------------------ FlexiViT


@pytest.mark.parametrize("old,new", [((12, 12), (6, 6)), ((6, 6), (12, 12)), ((10, 10), (12, 8)),
                                     ((4, 6), (3, 2)), ((1, 1), (2, 3))])
@pytest.mark.parametrize("interpolation,antialias", [("bicubic", True), ("bilinear", False)])
def test_resample_patch_embed_matches_timm(old, new, interpolation, antialias):
    from timm.layers.patch_embed import _compute_resize_matrix
    w = _randn(6, 3, *old)
    want = timm_resample_patch_embed(w, list(new), interpolation=interpolation, antialias=antialias)
    got = tf.resample_patch_embed(w, new, interpolation=interpolation, antialias=antialias)
    # timm's float32 pinv is itself ~2e-6 relative from the exact result when an axis shrinks: relative 1e-5
    _close(got, want, atol=1e-5 * max(1.0, want.abs().max().item()))
    # float64: timm's own formula (resize matrix, pinv, product) evaluated in float64
    mat = _compute_resize_matrix(old, new, interpolation, antialias, "cpu", torch.float64)
    want64 = (w.double().reshape(6, 3, -1) @ torch.linalg.pinv(mat)).reshape(6, 3, *new)
    _close(tf.resample_patch_embed(w.double(), new, interpolation=interpolation, antialias=antialias),
           want64, atol=1e-10)


def test_resample_patch_embed_flexivit_property_conv3d_and_float64():
    w = _randn(5, 3, 8, 8, dtype=torch.float64)
    x = _randn(2, 3, 8, 8, dtype=torch.float64, seed=1)
    w2 = tf.resample_patch_embed(w, (16, 16))
    x2 = F.interpolate(x, size=(16, 16), mode="bicubic", antialias=True)
    # upsizing: <resize(x), w'> == <x, w> exactly, up to float64 rounding
    _close(torch.einsum("bchw,ochw->bo", x2, w2), torch.einsum("bchw,ochw->bo", x, w), atol=1e-9)
    w3 = _randn(4, 3, 2, 16, 16)
    got = tf.resample_patch_embed(w3, (8, 8))
    assert got.shape == (4, 3, 2, 8, 8)
    for t in range(2):
        _close(got[:, :, t], timm_resample_patch_embed(w3[:, :, t], [8, 8]))


def test_resample_patch_embed_bad_inputs():
    with pytest.raises(ValueError, match=r"weight must be a Conv2d .* got shape \(3, 16, 16\)"):
        tf.resample_patch_embed(torch.zeros(3, 16, 16), 8)
    with pytest.raises(ValueError, match="mode='nearest' takes neither antialias"):
        tf.resample_patch_embed(torch.zeros(1, 1, 4, 4), 8, interpolation="nearest")
    with pytest.raises(ValueError, match=r"new_size\[1\] \(W\) must be > 0"):
        tf.resample_patch_embed(torch.zeros(1, 1, 4, 4), (8, 0))


# ------------------------------------------------------------------------------------------ video


@pytest.mark.parametrize("old,new", [((4, 3, 5), (8, 6, 4)), ((8, 4, 4), (2, 4, 4)), ((1, 2, 2), (3, 1, 1)),
                                     ((3, 2, 2), (3, 2, 2))])
def test_video_table_bilinear_linear_is_trilinear(old, new):
    table = _randn(1, 1 + old[0] * old[1] * old[2], 6)
    grid = table[:, 1:].reshape(1, *old, 6).permute(0, 4, 1, 2, 3)
    want = F.interpolate(grid, size=new, mode="trilinear", align_corners=False).permute(0, 2, 3, 4, 1)
    got = tf.resample_video_table(table, old, new, mode="bilinear")
    assert torch.equal(got[:, :1], table[:, :1])
    _close(got[:, 1:], want.reshape(1, -1, 6))
    unbatched = tf.resample_video_table(table[0], old, new, mode="bilinear", num_prefix_tokens=1)
    assert torch.equal(unbatched, got[0])


def test_video_table_bicubic_then_nearest_time():
    old, new = (4, 3, 3), (6, 5, 2)
    table = _randn(2, 36, 4, dtype=torch.float64)
    frames = table.reshape(2 * 4, 3, 3, 4).permute(0, 3, 1, 2)
    spatial = F.interpolate(frames, size=(5, 2), mode="bicubic", antialias=True)  # [B*T, C, 5, 2]
    spatial = spatial.reshape(2, 4, 4, 10).permute(0, 2, 3, 1).reshape(2, 40, 4)  # [B, C*HW, T]
    timed = F.interpolate(spatial, size=6, mode="nearest").reshape(2, 4, 10, 6).permute(0, 3, 2, 1)
    got = tf.resample_video_table(table, old, new, antialias=True, temporal_mode="nearest")
    _close(got, timed.reshape(2, 60, 4), atol=1e-12)


def test_video_table_bad_inputs():
    table = torch.zeros(1, 49, 4)
    with pytest.raises(ValueError, match=r"table \(1, 49, 4\) must have P \+ T\*H\*W tokens .* = 64\)"):
        tf.resample_video_table(table, (4, 4, 4), (2, 4, 4))
    with pytest.raises(TypeError, match="old_thw must be a \\(T, H, W\\) triple"):
        tf.resample_video_table(table, (4, 12), (2, 4, 4))
    with pytest.raises(ValueError, match="temporal_mode must be 'linear' or 'nearest'"):
        tf.resample_video_table(table, (1, 7, 7), (2, 4, 4), temporal_mode="cubic")
    with pytest.raises(ValueError, match=r"new_thw\[0\] must be > 0"):
        tf.resample_video_table(table, (1, 7, 7), (0, 4, 4))


@pytest.mark.parametrize("old_t,new_t", [(4, 6), (8, 3), (1, 4), (4, 1)])
def test_temporal_matches_hf_timesformer(old_t, new_t):
    transformers = pytest.importorskip("transformers")
    from transformers.models.timesformer.modeling_timesformer import TimesformerEmbeddings
    cfg = transformers.TimesformerConfig(image_size=16, patch_size=8, num_frames=old_t, hidden_size=8)
    emb = TimesformerEmbeddings(cfg).eval()
    time = _randn(1, old_t, 8)
    with torch.no_grad():  # zero everything but the time embeddings, so the output is them alone
        for p in emb.parameters():
            p.zero_()
        emb.time_embeddings.copy_(time)
        out = emb(torch.randn(1, new_t, 3, 16, 16))
    want = out[:, 1:].reshape(1, 4, new_t, 8)[:, 0]  # [1, T', C], one patch's frames
    got = tf.resample_temporal(time, new_t)
    assert torch.equal(got, want)
    linear = F.interpolate(time.transpose(1, 2), size=new_t, mode="linear").transpose(1, 2)
    _close(tf.resample_temporal(time[0], new_t, mode="linear"), linear[0])


def test_temporal_bad_inputs():
    with pytest.raises(ValueError, match="mode must be 'linear' or 'nearest'"):
        tf.resample_temporal(torch.zeros(1, 4, 8), 6, mode="bicubic")
    with pytest.raises(ValueError, match=r"table must be \[B, T, C\] or \[T, C\], got shape \(4,\)"):
        tf.resample_temporal(torch.zeros(4), 6)


# ------------------------------------------------------------------------------------------ NesT


@pytest.mark.parametrize("old_blocks,new_blocks,block", [(16, 64, 4), (64, 16, 4), (4, 9, 2), (1, 4, 3)])
def test_blocked_pos_embed_matches_timm_nest(old_blocks, new_blocks, block):
    from timm.models.nest import resize_pos_embed
    pe = _randn(1, old_blocks, block * block, 6)
    want = resize_pos_embed(pe, torch.zeros(1, new_blocks, block * block, 6))
    _close(tf.resize_blocked_pos_embed(pe, new_blocks), want)
    with pytest.raises(ValueError, match="must be perfect squares"):
        tf.resize_blocked_pos_embed(pe, new_blocks + 1)
