"""posext.checkpoint library: find and resize position embeddings in real-layout state dicts.

Each state dict comes from the peer library's own model code (timm, open_clip, HF transformers) built offline
with tiny configs and random weights, or is hand-made in the peer's key layout (MAE, big_vision .npz, EVA's
persistent RoPE buffers, stale HF position_ids). For each: resize to a new grid, build the same architecture
for the new image size, ``load_state_dict(strict=True)`` and run a forward pass at that size; untouched
tensors are the input objects; resized values equal ``posext.resample`` with the family's P (cross-checked
against the peer's own resize where it has one), MAE tables equal ``sincos_2d`` at the new grid.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections import OrderedDict

import pytest
import torch

import posext
from posext.checkpoint import AmbiguousGridError, Finding, find_position_embeddings, resize_state_dict
from posext.compat.mae import get_2d_sincos_pos_embed
from tests.conftest import assert_error_names

ACTED = ("resample", "regenerate_sincos", "regenerate_position_ids", "drop", "resize_rel_pos",
         "resize_rel_pos_bias", "regenerate_rel_pos_index", "resize_patch_embed")


def grid_of(img, patch):
    img = (img, img) if isinstance(img, int) else img
    return img[0] // patch, img[1] // patch


def expected_resample(t, new_grid, p, old_grid=None, antialias=True):
    return posext.resample(t, new_grid, old_size=old_grid, num_prefix_tokens=None if t.dim() == 4 else p,
                           antialias=antialias)


def check_resize(sd, new_grid, expected, *, dropped=(), **kwargs):
    """Resize ``sd``; the keys of ``expected`` (key -> tensor) change to exactly those values, ``dropped``
    keys disappear, every other key is the very input object; order and dtypes kept; the input is not
    modified."""
    before = {k: v.clone() for k, v in sd.items()}
    out, applied = resize_state_dict(sd, new_grid, **kwargs)
    assert out is not sd
    assert {f.key for f in applied} == set(expected) | set(dropped)
    assert all(isinstance(f, Finding) and f.action in ACTED and f.reason for f in applied)
    assert list(out) == [k for k in sd if k not in dropped]
    for key, value in sd.items():
        assert torch.equal(value, before[key])  # input untouched
        if key in expected:
            assert out[key] is not value
            assert out[key].dtype == value.dtype
            assert out[key].shape == expected[key].shape
            torch.testing.assert_close(out[key], expected[key], rtol=0, atol=0)
        elif key not in dropped:
            assert out[key] is value, key
    return out, {f.key: f for f in applied}


def findings_by_key(sd, **kwargs):
    return {f.key: f for f in find_position_embeddings(sd, **kwargs)}


# ------------------------------------------------------------------------------------------------ timm

timm = pytest.importorskip("timm")
from timm.layers import resample_abs_pos_embed, resample_abs_pos_embed_nhwc  # noqa: E402

TINY = dict(pretrained=False, embed_dim=32, depth=1, num_heads=2)


def timm_pair(name, old_img, new_img, **kwargs):
    torch.manual_seed(0)
    kwargs = {**TINY, **kwargs}
    old = timm.create_model(name, img_size=old_img, **kwargs)
    new = timm.create_model(name, img_size=new_img, **kwargs)
    return old, new


def load_and_run(model, state, img):
    img = (img, img) if isinstance(img, int) else img
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        return model(torch.randn(1, 3, *img))


@pytest.mark.parametrize("name,patch,old_img,new_img,family,p", [
    ("vit_tiny_patch16_224", 16, 64, (96, 80), "timm-vit", 1),                 # cls row, non-square new grid
    ("deit_tiny_distilled_patch16_224", 16, 64, 80, "deit-distilled", 2),      # cls + dist rows
    ("vit_base_patch16_reg4_gap_256", 16, 64, 96, "timm-vit", 0),               # reg_token, no_embed_class
    ("vit_so150m_patch16_reg4_gap_256", 16, 64, 96, "timm-vit", 4),             # reg rows stored, no cls
    ("vit_small_patch14_reg4_dinov2", 14, 56, 70, "timm-vit", 0),               # cls + reg keys, yet P=0
    ("deit3_small_patch16_224", 16, 64, 48, "timm-vit", 0),                     # cls key, no_embed_class
    ("eva02_tiny_patch14_224", 14, 56, 84, "eva", 1),                           # EVA-02 (RoPE rebuilt)
])
def test_timm_models(name, patch, old_img, new_img, family, p):
    old, new = timm_pair(name, old_img, new_img)
    sd = old.state_dict()
    found = findings_by_key(sd)
    f = found["pos_embed"]
    assert (f.action, f.layout, f.num_prefix_tokens, f.family) == ("resample", "tokens", p, family)
    assert f.old_grid == grid_of(old_img, patch)
    kernel = found.pop("patch_embed.proj.weight")
    assert (kernel.action, kernel.old_grid) == ("resize_patch_embed", (patch, patch))
    assert f.rule is not None and f.rule.patch_key == "patch_embed.proj.weight"
    assert all(g.action == "skip" for k, g in found.items() if k != "pos_embed")
    new_grid = grid_of(new_img, patch)
    want = expected_resample(sd["pos_embed"], new_grid, p)
    # timm's own resize with the same P agrees
    torch.testing.assert_close(want, resample_abs_pos_embed(sd["pos_embed"], list(new_grid),
                                                            num_prefix_tokens=p), rtol=0, atol=1e-5)
    out, _ = check_resize(sd, new_grid, {"pos_embed": want})
    assert load_and_run(new, out, new_img).shape[0] == 1


def test_timm_bf16_and_wrapper_prefixes():
    old, _ = timm_pair("vit_tiny_patch16_224", 64, 96)
    sd = {k: v.to(torch.bfloat16) for k, v in old.state_dict().items()}
    for wrap in ("module.", "_orig_mod.", "module._orig_mod."):
        wrapped = OrderedDict((wrap + k, v) for k, v in sd.items())
        f = findings_by_key(wrapped)[wrap + "pos_embed"]
        assert (f.num_prefix_tokens, f.old_grid, f.family) == (1, (4, 4), "timm-vit")
        out, _ = check_resize(wrapped, (6, 6),
                              {wrap + "pos_embed": expected_resample(sd["pos_embed"], (6, 6), 1)})
        assert isinstance(out, OrderedDict) and out[wrap + "pos_embed"].dtype == torch.bfloat16


def test_timm_state_dict_metadata_kept_and_same_grid_is_a_no_op():
    old, _ = timm_pair("vit_tiny_patch16_224", 64, 64)
    sd = old.state_dict()
    out, applied = resize_state_dict(sd, (4, 4))
    assert applied == [] and all(out[k] is v for k, v in sd.items())
    out, _ = resize_state_dict(sd, 5)
    assert out._metadata is sd._metadata


def test_timm_nonsquare_stored_grid_needs_old_size():
    # 3x4 + cls = 13 rows: neither P=0 nor P=1 is square -> refused, named; old_size settles it
    old, new = timm_pair("vit_tiny_patch16_224", (48, 64), (96, 80))
    sd = old.state_dict()
    assert_error_names(lambda: find_position_embeddings(sd), AmbiguousGridError,
                       ["pos_embed", "13 tokens", "old_size=", "num_prefix_tokens="])
    assert_error_names(lambda: resize_state_dict(sd, (6, 5)), AmbiguousGridError, ["pos_embed", "13"])
    assert issubclass(AmbiguousGridError, ValueError)
    out, _ = check_resize(sd, (6, 5), {"pos_embed": expected_resample(sd["pos_embed"], (6, 5), 1, (3, 4))},
                          old_size=(3, 4))
    load_and_run(new, out, (96, 80))
    # num_prefix_tokens alone does not settle a non-square grid
    assert_error_names(lambda: find_position_embeddings(sd, num_prefix_tokens=1), AmbiguousGridError,
                       ["pos_embed", "N=12", "old_size="])
    # an old_size that contradicts the family evidence is an error, unless P is forced too
    assert_error_names(lambda: find_position_embeddings(sd, old_size=(3, 3)), ValueError,
                       ["pos_embed", "P=4", "num_prefix_tokens=4"])
    assert findings_by_key(sd, old_size=(3, 3), num_prefix_tokens=4)["pos_embed"].num_prefix_tokens == 4


def test_timm_masquerading_grid_settled_by_old_size():
    # 3x5 + cls = 16 rows reads as a 4x4 no_embed_class grid: the documented limit of the square rule
    old, new = timm_pair("vit_tiny_patch16_224", (48, 80), (64, 96))
    sd = old.state_dict()
    f = findings_by_key(sd)["pos_embed"]
    assert (f.num_prefix_tokens, f.old_grid) == (0, (4, 4))
    out, _ = check_resize(sd, (4, 6), {"pos_embed": expected_resample(sd["pos_embed"], (4, 6), 1, (3, 5))},
                          old_size=(3, 5))
    load_and_run(new, out, (64, 96))


def test_timm_reg_tokens_two_readings_refused():
    sd = {"cls_token": torch.zeros(1, 1, 8), "reg_token": torch.zeros(1, 4, 8),
          "pos_embed": torch.randn(1, 9, 8)}
    assert_error_names(lambda: find_position_embeddings(sd), AmbiguousGridError,
                       ["pos_embed", "9 tokens", "P=0", "P=5", "num_prefix_tokens="])
    assert findings_by_key(sd, num_prefix_tokens=5)["pos_embed"].old_grid == (2, 2)


def test_samvit_nhwc_table_windowed_rel_pos_kept_global_rel_pos_resized():
    kwargs = dict(window_size=2, neck_chans=16, use_rel_pos=True, patch_size=16)
    old, new = timm_pair("samvit_base_patch16", 64, 96, global_attn_indexes=(), **kwargs)
    sd = old.state_dict()
    found = findings_by_key(sd)
    f = found["pos_embed"]
    assert (f.action, f.layout, f.old_grid, f.num_prefix_tokens, f.family) == \
        ("resample", "nhwc", (4, 4), 0, "sam")
    # windowed blocks: rel_pos spans the 2-token window, a model constant
    assert {k for k, g in found.items() if g.action == "skip"} == {k for k in sd if "rel_pos" in k}
    want = expected_resample(sd["pos_embed"], (6, 6), 0)
    torch.testing.assert_close(want, resample_abs_pos_embed_nhwc(sd["pos_embed"], [6, 6]), rtol=0, atol=1e-5)
    out, _ = check_resize(sd, (6, 6), {"pos_embed": want})
    load_and_run(new, out, 96)
    # a global-attention block's rel_pos spans the grid: 2*4-1 rows -> 2*6-1, linearly as SAM's get_rel_pos
    glob, glob_new = timm_pair("samvit_base_patch16", 64, 96, global_attn_indexes=(1,),
                               **{**kwargs, "depth": 2})
    gsd = {"image_encoder." + k: v for k, v in glob.state_dict().items()}
    gsd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 8)
    found = findings_by_key(gsd)
    assert found["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].action == "skip"
    assert found["image_encoder.blocks.0.attn.rel_pos_h"].action == "skip"
    assert found["image_encoder.blocks.1.attn.rel_pos_h"].action == "resize_rel_pos"
    assert found["image_encoder.pos_embed"].family == "sam"

    def linear(rel_pos, n):
        return torch.nn.functional.interpolate(rel_pos.T[None], size=n, mode="linear")[0].T

    expected = {"image_encoder.pos_embed": expected_resample(gsd["image_encoder.pos_embed"], (6, 6), 0)}
    for axis in "hw":
        key = f"image_encoder.blocks.1.attn.rel_pos_{axis}"
        expected[key] = linear(gsd[key], 11)
    out, _ = check_resize(gsd, (6, 6), expected)
    encoder = {k[len("image_encoder."):]: v for k, v in out.items() if k.startswith("image_encoder.")}
    load_and_run(glob_new, encoder, 96)


def test_naflexvit_nhwc():
    def make(grid):
        return timm.create_model("naflexvit_base_patch16_gap", **TINY, pos_embed_grid_size=grid)
    torch.manual_seed(0)
    old, new = make((4, 4)), make((6, 5))
    sd = old.state_dict()
    f = findings_by_key(sd)["embeds.pos_embed"]
    assert (f.layout, f.old_grid, f.num_prefix_tokens, f.family) == ("nhwc", (4, 4), 0, "timm-naflexvit")
    out, _ = check_resize(sd, (6, 5),
                          {"embeds.pos_embed": expected_resample(sd["embeds.pos_embed"], (6, 5), 0)})
    load_and_run(new, out, (96, 80))


def test_eva_rope_buffers_dropped():
    old, new = timm_pair("eva02_tiny_patch14_224", 56, 84)
    sd = OrderedDict(old.state_dict())
    # baaivision/EVA VisionRotaryEmbeddingFast persists [H*W, rot_dim] tables; timm rebuilds them
    sd["rope.freqs_cos"] = torch.randn(16, 8)
    sd["rope.freqs_sin"] = torch.randn(16, 8)
    found = findings_by_key(sd)
    assert found["rope.freqs_cos"].action == "drop" and found["rope.freqs_cos"].family == "eva"
    assert "rebuild" in found["rope.freqs_sin"].reason
    assert found["pos_embed"].family == "eva"
    out, applied = check_resize(sd, (6, 6), {"pos_embed": expected_resample(sd["pos_embed"], (6, 6), 1)},
                                dropped=("rope.freqs_cos", "rope.freqs_sin"))
    load_and_run(new, out, 84)
    # EVA without an absolute table: the buffers' own H*W is the grid
    rope_only = {"patch_embed.proj.weight": torch.randn(8, 3, 14, 14), "rope.freqs_cos": torch.randn(16, 8)}
    assert findings_by_key(rope_only)["rope.freqs_cos"].old_grid == (4, 4)
    check_resize(rope_only, (4, 4), {})  # unchanged grid: nothing dropped


# ------------------------------------------------------------------------------------------------ MAE


def mae_state(grid=4, dim=32, dec=16, dtype=torch.float32, prefix=""):
    gen = torch.Generator().manual_seed(0)
    def table(c):
        return torch.from_numpy(get_2d_sincos_pos_embed(c, grid, cls_token=True)).float()[None].to(dtype)
    return OrderedDict([(prefix + "cls_token", torch.randn(1, 1, dim, generator=gen).to(dtype)),
                        (prefix + "pos_embed", table(dim)),
                        (prefix + "patch_embed.proj.weight",
                         torch.randn(dim, 3, 4, 4, generator=gen).to(dtype)),
                        (prefix + "blocks.0.attn.qkv.weight",
                         torch.randn(3 * dim, dim, generator=gen).to(dtype)),
                        (prefix + "decoder_embed.weight", torch.randn(dec, dim, generator=gen).to(dtype)),
                        (prefix + "mask_token", torch.randn(1, 1, dec, generator=gen).to(dtype)),
                        (prefix + "decoder_pos_embed", table(dec)),
                        (prefix + "decoder_pred.weight", torch.randn(48, dec, generator=gen).to(dtype))])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mae_sincos_regenerated(dtype):
    sd = mae_state(dtype=dtype, prefix="module.")
    found = findings_by_key(sd)
    for key, dim in (("module.pos_embed", 32), ("module.decoder_pos_embed", 16)):
        f = found[key]
        assert (f.action, f.family, f.num_prefix_tokens, f.old_grid) == \
            ("regenerate_sincos", "mae", 1, (4, 4))
    expected = {"module.pos_embed": posext.sincos_2d(32, (5, 7), num_prefix_tokens=1, dtype=dtype)[None],
                "module.decoder_pos_embed": posext.sincos_2d(16, (5, 7), num_prefix_tokens=1,
                                                             dtype=dtype)[None]}
    out, _ = check_resize(sd, (5, 7), expected)
    assert not out["module.pos_embed"][0, 0].any()  # zero cls row kept
    # sincos="interpolate": resampled like a learned table
    interp = {k: expected_resample(sd[k], (5, 7), 1) for k in expected}
    _, applied = check_resize(sd, (5, 7), interp, sincos="interpolate")
    assert {f.action for f in applied.values()} == {"resample"}


def test_mae_recognised_by_values_and_learned_tables_interpolated():
    old, _ = timm_pair("vit_tiny_patch16_224", 64, 64)
    sd = old.state_dict()
    sd["pos_embed"] = torch.from_numpy(get_2d_sincos_pos_embed(32, 4, cls_token=True)).float()[None]
    f = findings_by_key(sd)["pos_embed"]
    assert (f.action, f.family) == ("regenerate_sincos", "mae")
    check_resize(sd, (3, 3), {"pos_embed": posext.sincos_2d(32, 3, num_prefix_tokens=1)[None]})
    sd["pos_embed"] = sd["pos_embed"] + 1e-3  # fine-tuned: no longer the fixed table
    assert findings_by_key(sd)["pos_embed"].action == "resample"
    mae = mae_state()
    mae["decoder_pos_embed"] = torch.randn(1, 17, 16)
    f = findings_by_key(mae)["decoder_pos_embed"]
    assert (f.action, f.family, f.num_prefix_tokens) == ("resample", "mae", 1) and "interpolated" in f.reason


# ------------------------------------------------------------------------------------------------ open_clip


def open_clip_model(image_size):
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    vision = dict(image_size=image_size, layers=1, width=32, head_width=16, patch_size=8)
    text = dict(context_length=17, vocab_size=64, width=32, heads=2, layers=1)  # 17 rows, like 1 + 4x4
    return open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text)


def test_open_clip_vit():
    old, new = open_clip_model(32), open_clip_model(48)
    sd = old.state_dict()
    found = findings_by_key(sd)
    f = found["visual.positional_embedding"]
    assert (f.action, f.layout, f.num_prefix_tokens, f.old_grid, f.family) == \
        ("resample", "tokens_unbatched", 1, (4, 4), "open_clip")
    assert found["positional_embedding"].action == "skip" and "text" in found["positional_embedding"].reason
    want = expected_resample(sd["visual.positional_embedding"], (6, 6), 1)
    from open_clip.model import resize_pos_embed
    theirs = dict(sd)
    resize_pos_embed(theirs, new)  # open_clip's own loader resize (P=1 hard-coded, bicubic AA)
    torch.testing.assert_close(want, theirs["visual.positional_embedding"], rtol=0, atol=1e-5)
    out, _ = check_resize(sd, (6, 6), {"visual.positional_embedding": want})
    assert out["positional_embedding"] is sd["positional_embedding"]
    new.load_state_dict(out, strict=True)
    with torch.no_grad():
        assert new.encode_image(torch.randn(1, 3, 48, 48)).shape == (1, 16)
    # non-square stored grid: P=1 is fixed, so only old_size settles it
    bad = dict(sd, **{"visual.positional_embedding": torch.randn(1 + 12, 32)})
    assert_error_names(lambda: find_position_embeddings(bad), AmbiguousGridError,
                       ["visual.positional_embedding", "13 tokens", "old_size="])
    assert findings_by_key(bad, old_size=(3, 4))["visual.positional_embedding"].num_prefix_tokens == 1


def test_open_clip_timm_tower():
    open_clip = pytest.importorskip("open_clip")
    def make(name):
        return open_clip.CLIP(embed_dim=16, vision_cfg=dict(timm_model_name=name, image_size=224),
                              text_cfg=dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1))
    torch.manual_seed(0)
    old, new = make("vit_tiny_patch16_224"), make("vit_tiny_patch16_384")  # 14x14 -> 24x24 grid
    sd = old.state_dict()
    f = findings_by_key(sd)["visual.trunk.pos_embed"]
    assert (f.num_prefix_tokens, f.old_grid, f.family) == (1, (14, 14), "open_clip")
    out, _ = check_resize(sd, (24, 24), {"visual.trunk.pos_embed":
                                         expected_resample(sd["visual.trunk.pos_embed"], (24, 24), 1)})
    new.load_state_dict(out, strict=True)
    with torch.no_grad():
        new.encode_image(torch.randn(1, 3, 384, 384))


# -------------------------------------------------------------------------------------------- HF transformers


def hf_vision(image_size, **extra):
    return dict(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=2, **extra)


HF_TEXT = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
               num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
               pad_token_id=1)


def hf_models():
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("model,config,key,family,extra", [
    ("ViTModel", "ViTConfig", "embeddings.position_embeddings", "hf-vit", {}),
    ("Dinov2Model", "Dinov2Config", "embeddings.position_embeddings", "hf-dinov2", {}),
    ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig", "embeddings.position_embeddings", "hf-dinov2",
     dict(num_register_tokens=2)),
    ("DeiTForImageClassificationWithTeacher", "DeiTConfig", "deit.embeddings.position_embeddings", "hf-deit",
     {}),
])
def test_hf_vit_like(model, config, key, family, extra):
    T = hf_models()
    def build(size):
        return getattr(T, model)(getattr(T, config)(**hf_vision(size, **extra)))
    torch.manual_seed(0)
    old, new = build(32), build(48)
    sd = old.state_dict()
    f = findings_by_key(sd)[key]
    p = 2 if family == "hf-deit" else 1
    assert (f.action, f.layout, f.num_prefix_tokens, f.old_grid, f.family) == \
        ("resample", "tokens", p, (4, 4), family)
    out, _ = check_resize(sd, (6, 6), {key: expected_resample(sd[key], (6, 6), p)})
    load_and_run(new, out, 48)


def test_hf_clip_and_siglip_with_stale_position_ids():
    T = hf_models()
    def clip(size):
        return T.CLIPModel(T.CLIPConfig(vision_config=hf_vision(size), text_config=HF_TEXT,
                                        projection_dim=16))
    def siglip(size):
        return T.SiglipModel(T.SiglipConfig(vision_config=hf_vision(size), text_config=HF_TEXT))
    for build, family, p in ((clip, "hf-clip", 1), (siglip, "hf-siglip", 0)):
        torch.manual_seed(0)
        old, new = build(32), build(48)
        sd = OrderedDict(old.state_dict())
        vkey = "vision_model.embeddings.position_embedding.weight"
        tkey = "text_model.embeddings.position_embedding.weight"
        # old HF files persist position_ids; the vision one is stale after a resize, the text one is not
        sd["vision_model.embeddings.position_ids"] = torch.arange(p + 16)[None]
        sd["text_model.embeddings.position_ids"] = torch.arange(16)[None]
        found = findings_by_key(sd)
        f = found[vkey]
        assert (f.action, f.layout, f.num_prefix_tokens, f.old_grid, f.family) == \
            ("resample", "tokens_unbatched", p, (4, 4), family)
        assert found[tkey].action == "skip"
        assert found["vision_model.embeddings.position_ids"].action == "regenerate_position_ids"
        assert "text_model.embeddings.position_ids" not in found
        out, _ = check_resize(sd, (6, 6), {
            vkey: expected_resample(sd[vkey], (6, 6), p),
            "vision_model.embeddings.position_ids": torch.arange(p + 36)[None]})
        for k in ("vision_model.embeddings.position_ids", "text_model.embeddings.position_ids"):
            del out[k]  # non-persistent buffers in this transformers version
        new.load_state_dict(out, strict=True)
        with torch.no_grad():
            new.get_image_features(pixel_values=torch.randn(1, 3, 48, 48))
    ids = OrderedDict(sd)
    ids["vision_model.embeddings.position_ids"] = torch.arange(16)[None] * 2
    assert findings_by_key(ids)["vision_model.embeddings.position_ids"].action == "skip"


def test_hf_sam_vision_encoder_nhwc():
    T = hf_models()
    def build(size):
        return T.SamVisionModel(T.SamVisionConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=size, patch_size=16,
            window_size=2, global_attn_indexes=[], output_channels=16, mlp_dim=64))
    torch.manual_seed(0)
    old, new = build(64), build(96)
    sd = old.state_dict()
    found = findings_by_key(sd)
    f = found["vision_encoder.pos_embed"]
    assert (f.layout, f.old_grid, f.num_prefix_tokens, f.family) == ("nhwc", (4, 4), 0, "sam")
    assert all(found[k].action == "skip" for k in sd if "rel_pos" in k)
    out, _ = check_resize(sd, (6, 6), {"vision_encoder.pos_embed":
                                       expected_resample(sd["vision_encoder.pos_embed"], (6, 6), 0)})
    new.load_state_dict(out, strict=True)
    with torch.no_grad():
        assert new(pixel_values=torch.randn(1, 3, 96, 96)).last_hidden_state.shape[-2:] == (6, 6)


def test_hf_vit_mae_sincos_by_values():
    T = hf_models()
    def build(size):
        return T.ViTMAEForPreTraining(T.ViTMAEConfig(
            **hf_vision(size), decoder_hidden_size=16, decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2, decoder_intermediate_size=32))
    torch.manual_seed(0)
    old, new = build(32), build(48)
    sd = old.state_dict()
    # pretrained ViTMAE weights carry MAE's fixed sin-cos tables
    sd["vit.embeddings.position_embeddings"] = torch.from_numpy(
        get_2d_sincos_pos_embed(32, 4, True)).float()[None]
    sd["decoder.decoder_pos_embed"] = torch.from_numpy(get_2d_sincos_pos_embed(16, 4, True)).float()[None]
    found = findings_by_key(sd)
    assert found["vit.embeddings.position_embeddings"].action == "regenerate_sincos"
    assert found["decoder.decoder_pos_embed"].action == "regenerate_sincos"
    out, _ = check_resize(sd, (6, 6), {
        "vit.embeddings.position_embeddings": posext.sincos_2d(32, 6, num_prefix_tokens=1)[None],
        "decoder.decoder_pos_embed": posext.sincos_2d(16, 6, num_prefix_tokens=1)[None]})
    new.load_state_dict(out, strict=True)
    with torch.no_grad():
        new(pixel_values=torch.randn(1, 3, 48, 48))


# ------------------------------------------------------------------------------------------------ big_vision


def test_big_vision_npz_keys():
    gen = torch.Generator().manual_seed(0)
    def r(*shape):
        return torch.randn(*shape, generator=gen)
    siglip = OrderedDict([("params/img/embedding/kernel", r(8, 8, 3, 32)),
                          ("params/img/pos_embedding", r(1, 16, 32)),
                          ("params/img/MAPHead_0/probe", r(1, 1, 32)),
                          ("params/txt/pos_embedding", r(1, 16, 32)),
                          ("params/txt/Embed_0/embedding", r(64, 32)), ("params/t", r(1))])
    f = findings_by_key(siglip)["params/img/pos_embedding"]
    assert (f.num_prefix_tokens, f.old_grid, f.family) == (0, (4, 4), "big_vision")
    assert findings_by_key(siglip)["params/txt/pos_embedding"].action == "skip"  # square length, still text
    check_resize(siglip, (6, 5), {"params/img/pos_embedding":
                                  expected_resample(siglip["params/img/pos_embedding"], (6, 5), 0)})
    for root in ("", "opt/target/"):  # vision_transformer (augreg) .npz, classifier='token'
        augreg = OrderedDict([(root + "cls", r(1, 1, 32)), (root + "embedding/kernel", r(8, 8, 3, 32)),
                              (root + "Transformer/posembed_input/pos_embedding", r(1, 17, 32)),
                              (root + "Transformer/encoder_norm/scale", r(32))])
        key = root + "Transformer/posembed_input/pos_embedding"
        assert findings_by_key(augreg)[key].num_prefix_tokens == 1
        # timm's .npz loader kernel: bilinear, no antialias
        check_resize(augreg, (6, 6),
                     {key: posext.resample(augreg[key], (6, 6), num_prefix_tokens=1, mode="bilinear")},
                     mode="bilinear", antialias=False)
    gap = {"embedding/kernel": r(8, 8, 3, 32), "Transformer/posembed_input/pos_embedding": r(1, 16, 32)}
    assert findings_by_key(gap)["Transformer/posembed_input/pos_embedding"].num_prefix_tokens == 0
    naflex = {"img/pos_embedding": r(1, 4, 5, 32)}  # 4-D tables carry H, W
    f = findings_by_key(naflex)["img/pos_embedding"]
    assert (f.layout, f.old_grid) == ("nhwc", (4, 5))
    check_resize(naflex, (8, 8),
                 {"img/pos_embedding": expected_resample(naflex["img/pos_embedding"], (8, 8), 0)})


# ------------------------------------------------------------------------------------------------ rules


def test_generalised_square_rule_and_explicit_arguments():
    def r(rows):
        return torch.randn(1, rows, 8)
    for rows, p in ((16, 0), (17, 1), (18, 2)):
        f = findings_by_key({"pos_embed": r(rows)})["pos_embed"]
        assert (f.num_prefix_tokens, f.old_grid) == (p, (4, 4)) and "square rule" in f.reason
    sd = {"pos_embed": r(20)}
    assert_error_names(lambda: find_position_embeddings(sd), AmbiguousGridError,
                       ["pos_embed", "20 tokens", "old_size=(H, W)", "num_prefix_tokens=P"])
    out, _ = check_resize(sd, (5, 5), {"pos_embed": expected_resample(sd["pos_embed"], (5, 5), 0, (4, 5))},
                          old_size=(4, 5))
    f = findings_by_key(sd, old_size=(2, 9), num_prefix_tokens=2)["pos_embed"]
    assert (f.num_prefix_tokens, f.old_grid) == (2, (2, 9))
    assert_error_names(lambda: find_position_embeddings(sd, old_size=(4, 4), num_prefix_tokens=1), ValueError,
                       ["pos_embed", "old_size=(4, 4)", "19"])
    # HF AST-like: cls + dist rows around a non-square F x T grid
    ast = {"embeddings.cls_token": r(1), "embeddings.distillation_token": r(1),
           "embeddings.position_embeddings": r(2 + 3 * 5)}
    assert_error_names(lambda: find_position_embeddings(ast), AmbiguousGridError,
                       ["embeddings.position_embeddings", "17 tokens"])
    f = findings_by_key(ast, old_size=(3, 5))["embeddings.position_embeddings"]
    assert (f.num_prefix_tokens, f.old_grid) == (2, (3, 5))
    nhwc = {"pos_embed": torch.randn(1, 4, 4, 8)}
    assert_error_names(lambda: find_position_embeddings(nhwc, num_prefix_tokens=1), ValueError, ["NHWC"])
    assert_error_names(lambda: resize_state_dict(sd, (5, 5), sincos="keep"), ValueError, ["sincos"])


def test_never_touched_keys():
    def r(*shape):
        return torch.randn(*shape)
    sd = OrderedDict([
        ("positional_embedding", r(17, 8)),                              # open_clip text, 1 + 4x4 rows
        ("text.positional_embedding", r(16, 8)),                         # CustomTextCLIP
        ("text.transformer.embeddings.position_embeddings.weight", r(16, 8)),
        ("text_model.embeddings.position_embedding.weight", r(16, 8)),
        ("txt/pos_embedding", r(1, 16, 8)),
        ("embeddings.position_embedding.weight", r(16, 8)), ("embeddings.token_embedding.weight", r(9, 8)),
        ("blocks.0.attn.relative_position_bias_table", r(52, 2)),
        ("layers.0.blocks.0.attn.relative_position_bias_table", r(169, 1)),  # Swin
        ("rel_pos_bias.relative_position_bias_table", r(52, 2)),
        ("visual.attnpool.positional_embedding", r(5, 8)),
        ("some.other.tensor", r(17, 8)), ("step", torch.tensor(3)),
    ])
    found = findings_by_key(sd)
    assert all(f.action == "skip" and f.reason for f in found.values())
    assert set(found) <= set(sd) - {"some.other.tensor", "step"}
    assert found["layers.0.blocks.0.attn.relative_position_bias_table"].family == "swin"
    assert found["blocks.0.attn.relative_position_bias_table"].family == "beit"
    out, applied = resize_state_dict(sd, (6, 6))
    assert applied == [] and all(out[k] is v for k, v in sd.items())
