"""posext.checkpoint family rules checked against the families' own code: video tables, refusals, MobileCLIP,
patch sizes, inspect reports and Swin windows.

Every checkpoint comes from the peer library's model code (timm, HF transformers) built with tiny configs and
seeded random weights, or is written in the peer's key layout (Apple's MobileCLIP). Each resized value is
compared with an oracle that is not posext: the family's own run-time resize, its checkpoint filter, or a
float64 reference written here with ``F.interpolate``. Resized dicts load with ``strict=True`` into the model
built for the new geometry and run a finite forward there.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from posext.checkpoint import resize_state_dict  # noqa: E402
from posext.checkpoint.geometry import GeometryError  # noqa: E402
from posext.checkpoint.grid import AmbiguousGridError  # noqa: E402
from posext.checkpoint.reporting import failure_reason  # noqa: E402
from posext.cli import main  # noqa: E402
from tests.conftest import assert_error_names  # noqa: E402

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

HF_TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
TIME = "embeddings.time_embeddings"
TABLE = "embeddings.position_embeddings"


def untouched(sd, out, changed):
    """Every key of ``sd`` but ``changed`` is the very input object in ``out``, in the same order."""
    assert list(out) == list(sd)
    for key, value in sd.items():
        if key not in changed:
            assert out[key] is value, key


def redraw_positions(model, seed=0):
    """Position-like parameters drawn at random: transformers starts some at zero, and a zero table would
    make every resampling look right."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "position" in name or "time_embed" in name or "cls_token" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def hf_model(cls, config_cls, seed=0, **config):
    torch.manual_seed(seed)
    return redraw_positions(getattr(transformers, cls)(getattr(transformers, config_cls)(**config)).eval(),
                            seed)


def timesformer(frames, size):
    return hf_model("TimesformerModel", "TimesformerConfig", image_size=size, patch_size=8, num_frames=frames,
                    **HF_TINY)


def vivit(frames, size, seed=0):
    return hf_model("VivitModel", "VivitConfig", seed=seed, image_size=list(size), tubelet_size=[2, 8, 8],
                    num_frames=frames, **HF_TINY)


def embedded(model, x):
    """The output of the model's embeddings (HF's run-time resizing of the tables lives there: its encoder
    layers read the frame count and grid from the config)."""
    with torch.no_grad():
        return model.embeddings(x)


def hidden(model, x):
    with torch.no_grad():
        out = model(pixel_values=x).last_hidden_state
    assert torch.isfinite(out).all()
    return out


# ------------------------------------------------------------------------------------------ video


def test_timesformer_frames_match_hf_run_time_nearest():
    old = timesformer(4, 32)
    sd = old.state_dict()
    out, applied = resize_state_dict(sd, num_frames=8)
    assert [(f.key, f.action) for f in applied] == [(TIME, "resample_temporal")]
    untouched(sd, out, {TIME})
    # what TimesformerEmbeddings does when fed another frame count
    want = F.interpolate(sd[TIME].transpose(1, 2), size=8, mode="nearest").transpose(1, 2)
    assert out[TIME].shape == (1, 8, 32) and torch.equal(out[TIME], want)
    new = timesformer(8, 32)
    new.load_state_dict(out, strict=True)
    x = torch.randn(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    # the native embeddings resample the time table at run time: the resized ones compute the same
    torch.testing.assert_close(embedded(new, x), embedded(old, x), rtol=0, atol=0)
    hidden(new, x)


def test_timesformer_frames_and_image_size():
    old = timesformer(4, 32)
    sd = old.state_dict()
    x = torch.randn(1, 8, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    new = timesformer(8, 48)
    # nearest in space too: what HF's forward does at run time for both tables
    out, applied = resize_state_dict(sd, image_size=(48, 48), num_frames=8, mode="nearest")
    assert {f.key: f.action for f in applied} == {TABLE: "resample", TIME: "resample_temporal"}
    untouched(sd, out, {TABLE, TIME})
    new.load_state_dict(out, strict=True)
    torch.testing.assert_close(embedded(new, x), embedded(old, x), rtol=0, atol=1e-6)
    hidden(new, x)
    # the default bicubic table equals timm's resize of a cls + 4x4 table to 6x6
    out, _ = resize_state_dict(sd, image_size=(48, 48), num_frames=8)
    want = timm.layers.resample_abs_pos_embed(sd[TABLE], [6, 6], num_prefix_tokens=1)
    torch.testing.assert_close(out[TABLE], want, rtol=0, atol=1e-5)
    assert torch.equal(out[TIME], F.interpolate(sd[TIME].transpose(1, 2), size=8).transpose(1, 2))
    new.load_state_dict(out, strict=True)
    hidden(new, x)


def video_reference(table, old_thw, new_thw, p, antialias):
    """Float64 separable resize of a [1, P + T*H*W, C] frame-major table: each frame bicubic in space, then
    linear over time (both F.interpolate, align_corners=False)."""
    (t, h, w), (nt, nh, nw) = old_thw, new_thw
    x = table[0].double()
    c = x.shape[-1]
    frames = x[p:].reshape(t, h, w, c).permute(0, 3, 1, 2)
    frames = F.interpolate(frames, size=(nh, nw), mode="bicubic", align_corners=False, antialias=antialias)
    series = frames.permute(1, 2, 3, 0).reshape(1, c * nh * nw, t)
    series = F.interpolate(series, size=nt, mode="linear", align_corners=False)
    grid = series.reshape(c, nh, nw, nt).permute(3, 1, 2, 0).reshape(nt * nh * nw, c)
    return torch.cat([x[:p], grid])[None]


@pytest.mark.parametrize("image_size,antialias", [(None, True), ((48, 64), True), ((48, 64), False),
                                                  ((24, 16), True), ((24, 16), False)])
def test_vivit_frames_match_separable_reference(image_size, antialias):
    sd = vivit(4, (32, 32)).state_dict()
    kw = dict(num_frames=8, antialias=antialias)
    if image_size is not None:
        kw["image_size"] = image_size
    # T' x H x W = 2 x 4 x 4 rows: the shape does not tell the frame grid
    assert_error_names(lambda: resize_state_dict(sd, **kw), AmbiguousGridError, [TABLE, "old_size=(H, W)"])
    out, applied = resize_state_dict(sd, old_size=(4, 4), **kw)
    assert [(f.key, f.action) for f in applied] == [(TABLE, "resample_video")]
    untouched(sd, out, {TABLE})
    size = image_size or (32, 32)
    new_thw = (4, size[0] // 8, size[1] // 8)
    want = video_reference(sd[TABLE], (2, 4, 4), new_thw, 1, antialias)
    assert out[TABLE].dtype == torch.float32 and out[TABLE].shape == want.shape
    torch.testing.assert_close(out[TABLE].double(), want, rtol=0, atol=1e-5)
    assert torch.equal(out[TABLE][:, :1], sd[TABLE][:, :1])  # the class row kept bit for bit
    new = vivit(8, size, seed=1)
    new.load_state_dict(out, strict=True)
    x = torch.randn(1, 8, 3, *size, generator=torch.Generator().manual_seed(1))
    assert hidden(new, x).shape == (1, 1 + new_thw[0] * new_thw[1] * new_thw[2], 32)


def test_vivit_frames_command_line(tmp_path, capsys):
    sd = vivit(4, (32, 32)).state_dict()
    src, out_dir = tmp_path / "vivit.pth", tmp_path / "out"
    torch.save(sd, src)
    assert main(["resize", str(src), "--frames", "8", "--out", str(out_dir)]) == 1
    err = capsys.readouterr().err
    assert TABLE in err and "--old-size HxW" in err and "old_size=" not in err
    assert not (out_dir / "vivit.pth").exists()
    assert main(["resize", str(src), "--frames", "8", "--old-size", "4x4", "--out", str(out_dir)]) == 0
    written = torch.load(out_dir / "vivit.pth", weights_only=True)
    want, _ = resize_state_dict(sd, num_frames=8, old_size=(4, 4))
    assert list(written) == list(want) and all(torch.equal(written[k], want[k]) for k in want)
    new = vivit(8, (32, 32), seed=1)
    new.load_state_dict(written, strict=True)
    hidden(new, torch.randn(1, 8, 3, 32, 32))


# ------------------------------------------------------------------------------------------ refusals


def timm_model(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def timm_forward(model, size):
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1)))
    assert torch.isfinite(out).all()
    return out


CROSSVIT = dict(depth=((1, 1, 0),))
SAM = dict(img_size=224, window_size=14, depth=2, global_attn_indexes=(1,), embed_dim=64, num_heads=2,
           neck_chans=16)


def crossvit_sd():
    return timm_model("crossvit_tiny_240", **CROSSVIT).state_dict()


def sam_sd():
    return timm_model("samvit_base_patch16", **SAM).state_dict()


def mvitv2_sd():
    """mvitv2_tiny's class with one block per stage and 16 channels."""
    from timm.models.mvitv2 import MultiScaleVit, MultiScaleVitCfg

    torch.manual_seed(0)
    cfg = MultiScaleVitCfg(depths=(1, 1, 1, 1), embed_dim=16, num_heads=1)
    return MultiScaleVit(cfg, img_size=224, num_classes=10).state_dict()


def bare_table_sd():
    return {"pos_embed": torch.randn(1, 17, 8, generator=torch.Generator().manual_seed(0))}


def vivit_sd():
    return vivit(4, (32, 32)).state_dict()


def hybrid_sd():
    return timm_model("vit_tiny_r_s16_p8_224", depth=1).state_dict()


MVIT_KEY = "stages.0.blocks.0.attn.rel_pos_h"
SAM_KEY = "blocks.0.attn.rel_pos_h"


def refusal(name, make, kwargs, cli, error, words, cli_words, xfail=""):
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(make, kwargs, cli, error, words, cli_words, id=name, marks=marks)


# (state dict, library arguments, command-line arguments, error, words of the library message, words of the
# command-line message): each names the key and the argument that settles it, spelled for its reader
REFUSALS = [
    refusal("crossvit_one_grid", crossvit_sd, dict(new_grid=(10, 10)), ["--grid", "10x10"], GeometryError,
            ["pos_embed_0", "pos_embed_1", "new_grid=(H, W)", "image_size=(H, W)"],
            ["pos_embed_0", "pos_embed_1", "--grid HxW", "--image-size HxW"]),
    # the 14-token window equals the 14x14 grid: windowed and global blocks cannot be told apart
    refusal("sam_window_equals_grid", sam_sd, dict(image_size=(256, 256)), ["--image-size", "256"],
            AmbiguousGridError, [SAM_KEY, "27 rows", "window"], [SAM_KEY, "27 rows", "window"]),
    refusal("mvitv2_image_size", mvitv2_sd, dict(image_size=(192, 192)), ["--image-size", "192"],
            GeometryError, [MVIT_KEY, "MViTv2", "image_size=(192, 192)"],
            [MVIT_KEY, "MViTv2", "--image-size 192x192"]),
    refusal("mvitv2_grid", mvitv2_sd, dict(new_grid=(12, 12)), ["--grid", "12"], GeometryError,
            [MVIT_KEY, "new_grid=(12, 12)"], [MVIT_KEY, "--grid 12x12"]),
    refusal("no_patch_kernel", bare_table_sd, dict(image_size=(64, 64)), ["--image-size", "64"],
            GeometryError, ["pos_embed", "patch_size=(P, P)", "image_size=(H, W)"],
            ["pos_embed", "--patch-size P", "--image-size HxW"]),
    refusal("frames_below_tubelet", vivit_sd, dict(num_frames=1, old_size=(4, 4)),
            ["--frames", "1", "--old-size", "4x4"], GeometryError, [TABLE, "num_frames=1", "tubelet of 2"],
            [TABLE, "--frames 1", "tubelet of 2"]),
    refusal("hybrid_patch_alone", hybrid_sd, dict(patch_size=(4, 4)), ["--patch-size", "4"], GeometryError,
            ["pos_embed", "image_size=(H, W)"], ["pos_embed", "--image-size HxW"]),
]
LIBRARY_SPELLINGS = ("image_size=", "new_grid=", "patch_size=", "num_frames=", "old_size=")


@pytest.mark.parametrize("make,kwargs,cli,error,words,cli_words", REFUSALS)
def test_refusal_names_the_key_and_the_argument(tmp_path, capsys, make, kwargs, cli, error, words,
                                                 cli_words):
    sd = make()
    assert_error_names(lambda: resize_state_dict(sd, **kwargs), error, words)
    with pytest.raises(error) as info:
        resize_state_dict(sd, **kwargs)
    reason = failure_reason(info.value)  # what the command line prints: the flags, on one line
    assert reason == " ".join(info.value.render("cli").split())
    assert all(word in reason for word in cli_words), reason
    src, out_dir = tmp_path / "model.pth", tmp_path / "out"
    torch.save(sd, src)
    assert main(["resize", str(src), *cli, "--out", str(out_dir)]) == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if str(src) in line)
    for word in cli_words:
        assert word in line, f"{word!r} not in {line}"
    assert not any(s in line for s in LIBRARY_SPELLINGS), line
    assert not (out_dir / src.name).exists()


def test_crossvit_image_size_settles_both_branches():
    sd = crossvit_sd()
    out, applied = resize_state_dict(sd, image_size=(360, 360))
    new = timm_model("crossvit_tiny_240", seed=1, img_size=360, **CROSSVIT)
    grids = {k: v.shape[-2] for k, v in new.state_dict().items() if k.startswith("pos_embed_")}
    assert {f.key for f in applied} == {"pos_embed_0", "pos_embed_1"}
    # branch 0: 12x12 patches of the whole image; branch 1: 16x16 patches of the image scaled by 224 / 240
    assert grids == {"pos_embed_0": 1 + 30 * 30, "pos_embed_1": 1 + 21 * 21}
    for key, side in (("pos_embed_0", 30), ("pos_embed_1", 21)):
        want = timm.layers.resample_abs_pos_embed(sd[key], [side, side], num_prefix_tokens=1)
        torch.testing.assert_close(out[key], want, rtol=0, atol=1e-5)
    untouched(sd, out, {"pos_embed_0", "pos_embed_1"})
    new.load_state_dict(out, strict=True)
    timm_forward(new, (360, 360))


def test_bare_table_patch_size_settles_it():
    sd = bare_table_sd()
    out, applied = resize_state_dict(sd, image_size=(96, 64), patch_size=(16, 16))
    assert [f.key for f in applied] == ["pos_embed"]
    want = timm.layers.resample_abs_pos_embed(sd["pos_embed"], [6, 4], num_prefix_tokens=1)
    torch.testing.assert_close(out["pos_embed"], want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ MobileCLIP

APPLE = "image_encoder.model."
APPLE_TABLE = APPLE + "pos_embed.pos_embed.pos_embed"
APPLE_TEXT = "text_encoder.positional_embedding.pos_embed.pos_embed"
# timm name -> Apple's, the inverse of timm's vision_transformer_hybrid._convert_mobileclip, applied in order
TO_APPLE = (("patch_embed.backbone.", "patch_emb."), (".conv.", ".block.conv."), (".bn.", ".block.norm."),
            ("blocks.", "transformer."), ("norm1", "pre_norm_mha.0"),
            ("attn.qkv.", "pre_norm_mha.1.qkv_proj."), ("attn.proj.", "pre_norm_mha.1.out_proj."),
            ("norm2", "pre_norm_ffn.0"), ("mlp.fc1", "pre_norm_ffn.1"), ("mlp.fc2", "pre_norm_ffn.4"))


def apple_layout(sd, text_rows=77):
    """A timm vit_base_mci_224 state dict written as Apple's MobileCLIP checkpoint (image tower under
    image_encoder.model., the table [1, 1, N, C], the head as classifier.proj) plus a text table."""
    out = {}
    for key, value in sd.items():
        if key.startswith("head."):
            continue
        name = "post_transformer_norm." + key[len("norm."):] if key.startswith("norm.") else key
        for old, new in TO_APPLE:
            name = name.replace(old, new)
        if key == "pos_embed":
            name, value = "pos_embed.pos_embed.pos_embed", value[None]
        out[APPLE + name] = value
    out[APPLE + "classifier.proj"] = sd["head.weight"].T
    c = sd["pos_embed"].shape[-1]
    out[APPLE_TEXT] = torch.randn(1, 1, text_rows, c, generator=torch.Generator().manual_seed(2))
    return out


def test_mobileclip_apple_layout_matches_timm_conversion():
    from timm.models import vision_transformer_hybrid as hybrid

    old = timm_model("vit_base_mci_224", depth=1)
    sd = old.state_dict()
    apple = apple_layout(sd)
    # the layout is what timm reads: its converter gives back the timm dict
    back = hybrid._convert_mobileclip(apple, old)
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd if k != "head.bias")
    out, applied = resize_state_dict(apple, image_size=(160, 224))
    assert [(f.key, f.action) for f in applied] == [(APPLE_TABLE, "resample")]
    f = applied[0]
    # conv stem of kernels 4, 2, 2 (stride = kernel): a 16-pixel grid, no prefix rows (no_embed_class)
    assert (f.family, f.old_grid, f.num_prefix_tokens) == ("mobileclip", (14, 14), 0)
    assert out[APPLE_TABLE].shape == (1, 1, 10 * 14, 768)
    untouched(apple, out, {APPLE_TABLE})
    assert out[APPLE_TEXT] is apple[APPLE_TEXT]  # the text table is left alone
    new = timm_model("vit_base_mci_224", seed=1, depth=1, img_size=(160, 224))
    converted = hybrid.checkpoint_filter_fn(out, new)
    new.load_state_dict(converted, strict=True)
    timm_forward(new, (160, 224))
    # timm's own path: its filter converts the native Apple dict and resamples pos_embed for the new model
    reference = hybrid.checkpoint_filter_fn(apple, new)
    assert reference["pos_embed"].shape == converted["pos_embed"].shape == (1, 140, 768)
    torch.testing.assert_close(converted["pos_embed"], reference["pos_embed"], rtol=0, atol=1e-5)
    assert all(torch.equal(converted[k], reference[k]) for k in reference if k != "pos_embed")


# ------------------------------------------------------------------------------------------ patch size


def test_patch_size_alone_keeps_the_image_size():
    old = timm_model("vit_tiny_patch16_224", depth=1)
    sd = old.state_dict()
    kernel = "patch_embed.proj.weight"
    out, applied = resize_state_dict(sd, patch_size=(8, 8))
    assert {f.key: f.action for f in applied} == {"pos_embed": "resample", kernel: "resize_patch_embed"}
    untouched(sd, out, {"pos_embed", kernel})
    want = timm.layers.resample_patch_embed(sd[kernel], [8, 8])
    assert out[kernel].shape == (192, 3, 8, 8)
    torch.testing.assert_close(out[kernel], want, rtol=0, atol=1e-5 * sd[kernel].abs().max().item())
    # 224 / 8: a 28x28 grid behind the class row
    assert out["pos_embed"].shape == (1, 1 + 28 * 28, 192)
    want = timm.layers.resample_abs_pos_embed(sd["pos_embed"], [28, 28], num_prefix_tokens=1)
    torch.testing.assert_close(out["pos_embed"], want, rtol=0, atol=1e-5)
    new = timm_model("vit_tiny_patch16_224", seed=1, depth=1, patch_size=8)
    new.load_state_dict(out, strict=True)
    timm_forward(new, (224, 224))


def _folder_with_config(root):
    found = [folder for folder, _, names in os.walk(root) if "config.json" in names]
    assert found, f"no config.json written under {root}: {sorted(os.listdir(root))}"
    return found[0]


def test_hf_folder_image_size_command_line(tmp_path):
    src, out_dir = tmp_path / "vit", tmp_path / "out"
    old = hf_model("ViTModel", "ViTConfig", image_size=32, patch_size=8, **HF_TINY)
    old.save_pretrained(src)
    assert main(["resize", str(src), "--image-size", "48x64", "--no-antialias", "--out", str(out_dir)]) == 0
    new = transformers.ViTModel.from_pretrained(_folder_with_config(out_dir)).eval()
    assert list(new.config.image_size) == [48, 64]
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    # HF's own run-time interpolation of the native table (bicubic, no antialias)
    with torch.no_grad():
        want = old(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state
    torch.testing.assert_close(hidden(new, x), want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ inspect

BEIT_TABLE = "blocks.0.attn.relative_position_bias_table"


@pytest.fixture(scope="module")
def inspected(tmp_path_factory):
    """`posext inspect --json` over a saved timm BEiT and PiT: (report rows by file and key, the models)."""
    import json

    root = tmp_path_factory.mktemp("inspect")
    beit = timm_model("beit_base_patch16_224", depth=1, embed_dim=32, num_heads=2)
    pit = timm_model("pit_ti_224")
    torch.save(beit.state_dict(), root / "beit.pth")
    torch.save(pit.state_dict(), root / "pit.pth")
    report = root / "report.json"
    assert main(["inspect", str(root / "beit.pth"), str(root / "pit.pth"), "--json", str(report)]) == 0
    with open(report) as f:
        items = json.load(f)
    rows = {os.path.basename(item["input"]): {row["key"]: row for row in item["findings"]} for item in items}
    return rows, beit, pit


def test_inspect_report_beit_rel_pos_and_pit_nchw(inspected):
    rows, beit, pit = inspected
    table = rows["beit.pth"][BEIT_TABLE]
    # the table spans the whole patch grid timm builds: (2*14-1)^2 + 3 rows
    assert table["action"] == "resize_rel_pos_bias" and table["family"] == "beit"
    assert tuple(table["old_grid"]) == tuple(beit.patch_embed.grid_size) == (14, 14)
    assert table["shape"] == [27 * 27 + 3, 2] and table["params"]["extra"] == 3
    assert "patch_embed.proj.weight" in table["grid_from"]
    kernel = rows["beit.pth"]["patch_embed.proj.weight"]
    assert (kernel["action"], kernel["old_grid"]) == ("resize_patch_embed", [16, 16])
    pos = rows["pit.pth"]["pos_embed"]
    with torch.no_grad():
        grid = pit.patch_embed(torch.zeros(1, 3, 224, 224)).shape[-2:]  # PiT's overlapping patches
    assert (pos["action"], pos["layout"], pos["family"]) == ("resample", "nchw", "pit")
    assert tuple(pos["old_grid"]) == tuple(grid) == (27, 27) and pos["shape"] == list(pit.pos_embed.shape)
    assert "patch_embed.conv.weight" in pos["grid_from"] and "stride 8x8" in pos["grid_from"]


def test_inspect_report_names_grid_from_as_resize_does(inspected):
    rows, _, _ = inspected
    assert "patch_embed.proj.weight" in rows["beit.pth"][BEIT_TABLE]["grid_from"]
    assert "patch_embed.conv.weight" in rows["pit.pth"]["pos_embed"]["grid_from"]


# ------------------------------------------------------------------------------------------ Swin


def test_swin_wider_image_keeps_every_window():
    kwargs = dict(depths=(1, 1, 1, 1))
    old = timm_model("swin_tiny_patch4_window7_224", **kwargs)
    sd = old.state_dict()
    out, applied = resize_state_dict(sd, image_size=(224, 448))
    # feature maps 56x112 .. 7x14: the 7x7 window fits every stage, so nothing follows the image size
    assert applied == []
    assert list(out) == list(sd) and all(out[k] is v for k, v in sd.items())
    new = timm_model("swin_tiny_patch4_window7_224", seed=1, img_size=(224, 448), **kwargs)
    assert all(layer.blocks[0].window_size == (7, 7) for layer in new.layers)
    # timm's own filter changes nothing either
    ref = timm.models.swin_transformer.checkpoint_filter_fn(dict(sd), new)
    assert set(ref) == set(sd) and all(torch.equal(ref[k], sd[k]) for k in sd)
    new.load_state_dict(out, strict=True)
    timm_forward(new, (224, 448))


def test_target_arguments_are_checked():
    sd = {"cls_token": torch.randn(1, 1, 8), "pos_embed": torch.randn(1, 17, 8),
          "patch_embed.proj.weight": torch.randn(8, 3, 4, 4)}
    cases = [({}, ValueError, "nothing to resize"),
             (dict(new_grid=(5, 5), image_size=(20, 20)), ValueError, "not both"),
             (dict(new_grid=(5, 5), patch_size=(2, 2)), ValueError, "needs image_size"),
             (dict(image_size=(0, 20)), ValueError, "image_size"),
             (dict(num_frames=0), ValueError, "num_frames"),
             (dict(num_frames="4"), TypeError, "num_frames"),
             (dict(patch_size=(2.5, 2)), TypeError, "patch_size")]
    for kwargs, error, words in cases:
        with pytest.raises(error, match=words):
            resize_state_dict(sd, **kwargs)
    out, applied = resize_state_dict(sd, image_size=(20, 24))  # 4x4 patches: 5x6 grid
    assert out["pos_embed"].shape == (1, 31, 8) and [f.key for f in applied] == ["pos_embed"]


def test_hiera_video_separate_spatial_and_temporal_tables():
    from timm.layers import resample_abs_pos_embed
    from timm.models.hiera import Hiera

    kw = dict(in_chans=3, embed_dim=16, num_heads=1, stages=(1, 1, 1, 1), q_stride=(1, 2, 2),
              patch_kernel=(3, 7, 7), patch_stride=(2, 4, 4), patch_padding=(1, 3, 3),
              mask_unit_size=(1, 8, 8), sep_pos_embed=True, num_classes=5)
    torch.manual_seed(0)
    sd = Hiera(img_size=(4, 128, 128), **kw).state_dict()
    out, applied = resize_state_dict(sd, image_size=(128, 192), num_frames=8)
    assert {f.key: f.action for f in applied} == {"pos_embed_spatial": "resample",
                                                  "pos_embed_temporal": "resample_temporal"}
    # spatial: the 32x32 grid of the 7x7 stride-4 stem -> 32x48, as timm resamples an image table
    want = resample_abs_pos_embed(sd["pos_embed_spatial"], [32, 48], num_prefix_tokens=0)
    torch.testing.assert_close(out["pos_embed_spatial"], want, rtol=0, atol=1e-5)
    # temporal: 4 frames / stride 2 = 2 slots -> 8 / 2 = 4, linearly
    want = F.interpolate(sd["pos_embed_temporal"].transpose(1, 2), size=4, mode="linear").transpose(1, 2)
    torch.testing.assert_close(out["pos_embed_temporal"], want, rtol=0, atol=1e-6)
    new = Hiera(img_size=(8, 128, 192), **kw).eval()
    new.load_state_dict(out, strict=True)
    with torch.no_grad():
        assert torch.isfinite(new(torch.randn(1, 3, 8, 128, 192))).all()


def test_persisted_relative_position_index_is_rebuilt_as_the_new_model_builds_it():
    """Original BEiT / Data2Vec checkpoints persist relative_position_index [N+1, N+1] beside each table."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    old = timm.create_model("beit_base_patch16_224", depth=1, img_size=64)
    new = timm.create_model("beit_base_patch16_224", depth=1, img_size=(48, 80))
    sd = dict(old.state_dict())
    sd["blocks.0.attn.relative_position_index"] = old.blocks[0].attn.relative_position_index.clone()
    out, applied = resize_state_dict(sd, image_size=(48, 80))
    actions = {f.key: f.action for f in applied}
    assert actions["blocks.0.attn.relative_position_index"] == "regenerate_rel_pos_index"
    key = "blocks.0.attn.relative_position_index"
    assert out[key].dtype == sd[key].dtype
    assert torch.equal(out[key], new.blocks[0].attn.relative_position_index)
    del out[key]
    new.load_state_dict(out, strict=True)
