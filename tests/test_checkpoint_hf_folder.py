"""HF save_pretrained folders: geometry read from / written to config.json and the processor configs, and
resized folders that load with from_pretrained (no missing, unexpected or mismatched keys) and run at the
new size. Tiny random models, built offline."""
import hashlib
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from posext.checkpoint.hf_config import read_geometry, updated_config, updated_preprocessor
from posext.checkpoint.hf_folder import is_hf_folder, resize_folder, state_dict_plan

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
TEXT = dict(V, vocab_size=100, max_position_embeddings=16)


def _snapshot(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _load_clean(cls, folder):
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


def _temp_leftovers(folder):
    return [n for n in os.listdir(folder) if n.startswith(".posext-tmp-")]


def _processor_shape(folder, hw):
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    image = np.random.RandomState(0).randint(0, 255, (hw[0] + 17, hw[1] + 29, 3), dtype=np.uint8)
    return tuple(proc(images=image, return_tensors="pt")["pixel_values"].shape[-2:])


# --- geometry ---------------------------------------------------------------------------------------------

GEOMETRY_CASES = [  # config class, kwargs, expected (image_size, patch_size)
    ("CLIPConfig", {}, (224, 224), (32, 32)), ("SiglipConfig", {}, (224, 224), (16, 16)),
    ("BlipConfig", {}, (384, 384), (16, 16)), ("Blip2Config", {}, (224, 224), (14, 14)),
    ("InstructBlipConfig", {}, (224, 224), (14, 14)), ("OwlViTConfig", {}, (768, 768), (32, 32)),
    ("GitConfig", {}, (224, 224), (16, 16)), ("Idefics2Config", {}, (224, 224), (32, 32)),
    ("SamConfig", {}, (1024, 1024), (16, 16)), ("DPTConfig", {}, (384, 384), (16, 16)),
    ("ViTConfig", {"image_size": [32, 48]}, (32, 48), (16, 16)), ("DeiTConfig", {}, (224, 224), (16, 16)),
    ("Dinov2Config", {}, (224, 224), (14, 14)), ("BeitConfig", {}, (224, 224), (16, 16)),
    ("Data2VecVisionConfig", {}, (224, 224), (16, 16)), ("ViTMAEConfig", {}, (224, 224), (16, 16)),
    ("YolosConfig", {}, (512, 864), (16, 16)), ("TimesformerConfig", {}, (224, 224), (16, 16)),
    ("VivitConfig", {}, (224, 224), (16, 16)), ("VideoMAEConfig", {}, (224, 224), (16, 16)),
    ("SwinConfig", {}, (224, 224), (4, 4)), ("DepthAnythingConfig", {}, (518, 518), (14, 14)),
]


@pytest.mark.parametrize("name,kwargs,image,patch", GEOMETRY_CASES, ids=[c[0] for c in GEOMETRY_CASES])
def test_read_geometry_and_update_round_trip(name, kwargs, image, patch):
    cls = getattr(transformers, name)
    d = cls(**kwargs).to_dict()
    g = read_geometry(d)
    assert (g["image_size"], g["patch_size"]) == (image, patch)
    new = updated_config(d, image_size=(48, 48), patch_size=8)
    assert list(new) == list(d)  # key order kept
    g2 = read_geometry(new)
    assert (g2["image_size"], g2["patch_size"]) == ((48, 48), (8, 8))
    sub = cls.from_dict(new)  # the family parses what was written
    node = getattr(sub, g["field"]) if g["field"] else sub
    stored = node.image_size if "image_size" in node.to_dict() else None
    assert stored in (48, [48, 48], (48, 48))


def test_video_geometry_and_frames():
    g = read_geometry(transformers.VivitConfig(num_frames=8, tubelet_size=[2, 8, 8]).to_dict())
    assert g["num_frames"] == 8 and g["tubelet_size"] == 2 and g["patch_size"] == (8, 8)
    new = updated_config(transformers.VivitConfig().to_dict(), image_size=(48, 64), patch_size=(8, 4),
                         num_frames=16)
    assert new["image_size"] == [48, 64] and new["tubelet_size"] == [2, 8, 4] and new["num_frames"] == 16
    tsf = updated_config(transformers.TimesformerConfig().to_dict(), image_size=64, num_frames=4)
    assert tsf["image_size"] == 64 and tsf["num_frames"] == 4


def test_written_forms():
    assert updated_config(transformers.ViTConfig().to_dict(), image_size=(48, 64))["image_size"] == [48, 64]
    assert updated_config(transformers.ViTConfig().to_dict(), image_size=48)["image_size"] == 48
    assert updated_config(transformers.YolosConfig().to_dict(), image_size=48)["image_size"] == [48, 48]
    sam = updated_config(transformers.SamConfig().to_dict(), image_size=512)
    assert sam["vision_config"]["image_size"] == 512 and sam["prompt_encoder_config"]["image_size"] == 512
    assert sam["prompt_encoder_config"]["image_embedding_size"] == 32
    da = updated_config(transformers.DepthAnythingConfig().to_dict(), image_size=(364, 518))
    assert da["backbone_config"]["image_size"] == [364, 518]


@pytest.mark.parametrize("name,field", [("CLIPConfig", "vision_config.image_size"),
                                        ("SamConfig", "vision_config.image_size"),
                                        ("TimesformerConfig", "image_size"),
                                        ("OwlViTConfig", "vision_config.image_size")])
def test_square_only_families_refuse_non_square(name, field):
    with pytest.raises(ValueError) as exc:
        updated_config(getattr(transformers, name)().to_dict(), image_size=(48, 64))
    msg = str(exc.value)
    assert field in msg and "48x64" in msg and "one int" in msg


def test_other_refusals():
    with pytest.raises(ValueError, match=r"patch_size.*8x4"):
        updated_config(transformers.ViTConfig().to_dict(), patch_size=(8, 4))
    with pytest.raises(ValueError, match="no num_frames"):
        updated_config(transformers.ViTConfig().to_dict(), num_frames=4)
    with pytest.raises(ValueError, match="no image_size"):
        updated_config({"model_type": "convnext", "hidden_sizes": [8]}, image_size=64)


# --- processors -------------------------------------------------------------------------------------------

def test_updated_preprocessor_forms():
    t = transformers
    clip = updated_preprocessor(t.CLIPImageProcessor().to_dict(), (48, 64))
    assert clip["size"] == {"shortest_edge": 64} and clip["crop_size"] == {"height": 48, "width": 64}
    deit = updated_preprocessor(t.DeiTImageProcessor().to_dict(), 112)
    assert deit["size"] == {"height": 128, "width": 128}
    assert deit["crop_size"] == {"height": 112, "width": 112}
    sam = updated_preprocessor(t.SamImageProcessor().to_dict(), 512)
    assert sam["size"] == {"longest_edge": 512} and sam["pad_size"] == {"height": 512, "width": 512}
    yolos = updated_preprocessor(t.YolosImageProcessor().to_dict(), (512, 864))
    assert yolos["size"] == {"longest_edge": 864, "shortest_edge": 512}
    with pytest.raises(ValueError, match="shortest-edge"):
        updated_preprocessor(t.ConvNextImageProcessor().to_dict(), (48, 64))
    nested = updated_preprocessor({"image_processor": t.ViTImageProcessor().to_dict(), "x": 1}, (48, 64))
    assert nested["image_processor"]["size"] == {"height": 48, "width": 64} and nested["x"] == 1
    video = updated_preprocessor(t.VivitImageProcessor().to_dict(), 112)
    assert video["crop_size"] == {"height": 112, "width": 112} and video["size"] == {"shortest_edge": 128}


# --- folders ----------------------------------------------------------------------------------------------

def _vit_folder(tmp_path, name="src", **save_kwargs):
    torch.manual_seed(0)
    model = transformers.ViTModel(transformers.ViTConfig(**V, image_size=32, patch_size=8))
    src = str(tmp_path / name)
    model.save_pretrained(src, **save_kwargs)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(src)
    return src


def test_vit_non_square_end_to_end(tmp_path):
    src = _vit_folder(tmp_path)
    with open(os.path.join(src, "README.md"), "w") as f:
        f.write("card\n")
    before = _snapshot(src)
    out = str(tmp_path / "out")
    result = resize_folder(src, out, state_dict_plan((6, 8)), image_size=(48, 64))
    assert _snapshot(src) == before
    assert [f.key for f in result.applied] == ["embeddings.position_embeddings"]
    assert _snapshot(out)["README.md"] == before["README.md"]
    model = _load_clean(transformers.ViTModel, out)
    assert model.config.image_size == [48, 64]
    with torch.no_grad():
        hidden = model(pixel_values=torch.randn(1, 3, 48, 64)).last_hidden_state
    assert hidden.shape == (1, 1 + 6 * 8, 32)
    assert _processor_shape(out, (48, 64)) == (48, 64)
    assert is_hf_folder(out) and not _temp_leftovers(str(tmp_path))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~umask  # an ordinary folder, not the temp folder's 0700


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_clip_and_siglip_square(tmp_path, kind):
    t = transformers
    if kind == "clip":
        cfg = t.CLIPConfig(vision_config=dict(V, image_size=32, patch_size=8), text_config=TEXT,
                           projection_dim=16)
        cls, proc = t.CLIPModel, t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    else:
        cfg = t.SiglipConfig(vision_config=dict(V, image_size=32, patch_size=8), text_config=TEXT)
        cls, proc = t.SiglipModel, t.SiglipImageProcessor(size={"height": 32, "width": 32})
    src = str(tmp_path / "src")
    cls(cfg).save_pretrained(src)
    proc.save_pretrained(src)
    before = _snapshot(src)
    with pytest.raises(ValueError, match=r"vision_config\.image_size.*48x64"):  # nothing written
        resize_folder(src, str(tmp_path / "bad"), state_dict_plan((6, 8)), image_size=(48, 64))
    assert not os.path.exists(tmp_path / "bad") and not _temp_leftovers(str(tmp_path))
    out = str(tmp_path / "out")
    resize_folder(src, out, state_dict_plan((6, 6)), image_size=48)
    assert _snapshot(src) == before
    model = _load_clean(cls, out)
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=torch.randn(1, 3, 48, 48))
    assert torch.isfinite(feats if isinstance(feats, torch.Tensor) else feats.pooler_output).all()
    assert _processor_shape(out, (48, 48)) == (48, 48)


def test_sam_square(tmp_path):
    t = transformers
    cfg = t.SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                           patch_size=8, output_channels=16, window_size=4, global_attn_indexes=[1],
                           mlp_dim=64, num_pos_feats=8, use_rel_pos=False),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                 iou_head_hidden_dim=16))
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    t.SamModel(cfg).save_pretrained(src)
    t.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}).save_pretrained(src)
    resize_folder(src, out, state_dict_plan((12, 12)), image_size=96)
    model = _load_clean(t.SamModel, out)
    with torch.no_grad():
        emb = model.get_image_embeddings(torch.randn(1, 3, 96, 96))
    assert emb.shape[-2:] == (12, 12)
    assert _processor_shape(out, (96, 96)) == (96, 96)


def _grid_plan(keys, prefix, old, new, suffix=0):
    """A plan resizing (..., prefix + T*H*W + suffix, C) tables on their (T, H, W) grid (trilinear)."""
    class Plan:
        findings = list(keys)

        def apply(self, part):
            out, applied = dict(part), []
            for key in keys:
                if key not in part:
                    continue
                t = part[key]
                lead, n, c = t.shape[:-2], t.shape[-2], t.shape[-1]
                flat = t.reshape(-1, n, c)
                grid = flat[:, prefix:n - suffix].reshape(-1, *old, c).permute(0, 4, 1, 2, 3)
                grid = F.interpolate(grid, size=new, mode="trilinear", align_corners=False)
                grid = grid.permute(0, 2, 3, 4, 1).reshape(flat.shape[0], -1, c)
                table = torch.cat([flat[:, :prefix], grid, flat[:, n - suffix:]], 1)
                out[key] = table.reshape(*lead, table.shape[1], c).contiguous()
                applied.append(type("F", (), {"key": key})())
            return out, applied
    return lambda view: Plan()


def test_vivit_frames_and_size(tmp_path):
    t = transformers
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    t.VivitModel(t.VivitConfig(**V, image_size=32, num_frames=4, tubelet_size=[2, 8, 8])).save_pretrained(src)
    plan = _grid_plan(["embeddings.position_embeddings"], 1, (2, 4, 4), (4, 6, 8))
    resize_folder(src, out, plan, image_size=(48, 64), num_frames=8)
    model = _load_clean(t.VivitModel, out)
    assert model.config.num_frames == 8 and model.config.image_size == [48, 64]
    with torch.no_grad():
        hidden = model(pixel_values=torch.randn(1, 8, 3, 48, 64)).last_hidden_state
    assert hidden.shape[1] == 1 + 4 * 6 * 8


def test_yolos_detection_tokens(tmp_path):
    t = transformers
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    cfg = t.YolosConfig(**dict(V, num_hidden_layers=2), image_size=[32, 48], patch_size=8,
                        num_detection_tokens=5)
    t.YolosModel(cfg).save_pretrained(src)
    # the mid-layer tables sit beside the input one, with the same rows: both follow the grid
    keys = ["embeddings.position_embeddings", "encoder.mid_position_embeddings"]
    plan = _grid_plan(keys, 1, (1, 4, 6), (1, 6, 8), suffix=5)
    resize_folder(src, out, plan, image_size=(48, 64))
    model = _load_clean(t.YolosModel, out)
    with torch.no_grad():
        hidden = model(pixel_values=torch.randn(1, 3, 48, 64)).last_hidden_state
    assert hidden.shape[1] == 1 + 6 * 8 + 5


# --- sharded folders and the files rule ---------------------------------------------------------------------

def test_sharded_folder_with_fake_plan(tmp_path):
    src = _vit_folder(tmp_path, max_shard_size="20KB")
    index_name = "model.safetensors.index.json"
    with open(os.path.join(src, index_name)) as f:
        index = json.load(f)
    assert len(set(index["weight_map"].values())) > 1 and is_hf_folder(src)
    os.makedirs(os.path.join(src, "extra"))
    with open(os.path.join(src, "extra", "notes.txt"), "w") as f:
        f.write("kept\n")
    with open(os.path.join(src, "tf_model.h5"), "wb") as f:
        f.write(b"stale")
    before = _snapshot(src)
    doubled, dropped = "embeddings.cls_token", "pooler.dense.bias"
    views = []

    class Plan:
        findings = ["fake"]

        def apply(self, part):
            out = {k: v for k, v in part.items() if k != dropped}
            if doubled in out:
                out[doubled] = torch.cat([out[doubled]] * 2, 1)
            return out, [type("F", (), {"key": k})() for k in (doubled, dropped) if k in part]

    def plan_fn(view):
        views.append(view)
        return Plan()

    out = str(tmp_path / "out")
    result = resize_folder(src, out, plan_fn)
    assert _snapshot(src) == before
    assert len(views) == 1 and set(views[0]) == set(index["weight_map"])
    assert all(v.device.type == "meta" for v in views[0].values())
    assert sorted(f.key for f in result.applied) == sorted([doubled, dropped]) and result.dropped == [dropped]
    assert result.left_out == ["tf_model.h5"] and not os.path.exists(os.path.join(out, "tf_model.h5"))
    assert _snapshot(out)[os.path.join("extra", "notes.txt")] == before[os.path.join("extra", "notes.txt")]
    assert _snapshot(out)["config.json"] == before["config.json"]  # no geometry asked: copied
    with open(os.path.join(out, index_name)) as f:
        new_index = json.load(f)
    expected = {k: v for k, v in index["weight_map"].items() if k != dropped}
    assert new_index["weight_map"] == expected
    from safetensors.torch import load_file
    tensors = {}
    for shard in set(new_index["weight_map"].values()):
        part = load_file(os.path.join(out, shard))
        assert set(part) == {k for k, v in expected.items() if v == shard}
        tensors.update(part)
    assert tensors[doubled].shape[1] == 2
    # the doubled cls token gains 32 float32 values, the dropped bias loses as many
    assert new_index["metadata"]["total_size"] == index["metadata"]["total_size"]
    assert new_index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in tensors.values())


def test_sharded_folder_real_resize(tmp_path):
    src = _vit_folder(tmp_path, max_shard_size="20KB")
    out = str(tmp_path / "out")
    resize_folder(src, out, state_dict_plan((6, 6)), image_size=48)
    model = _load_clean(transformers.ViTModel, out)
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 3, 48, 48)).last_hidden_state.shape[1] == 37


@pytest.mark.parametrize("sharded", [False, True])
def test_bin_weights(tmp_path, sharded):
    """pytorch_model.bin folders (older save_pretrained), single and sharded, rewritten from safetensors."""
    from safetensors.torch import load_file
    src = _vit_folder(tmp_path, **({"max_shard_size": "20KB"} if sharded else {}))
    if sharded:
        with open(os.path.join(src, "model.safetensors.index.json")) as f:
            index = json.load(f)
        renamed = {}
        for shard in sorted(set(index["weight_map"].values())):
            name = shard.replace("model", "pytorch_model").replace(".safetensors", ".bin")
            torch.save(load_file(os.path.join(src, shard)), os.path.join(src, name))
            os.remove(os.path.join(src, shard))
            renamed[shard] = name
        index["weight_map"] = {k: renamed[v] for k, v in index["weight_map"].items()}
        with open(os.path.join(src, "pytorch_model.bin.index.json"), "w") as f:
            json.dump(index, f)
        os.remove(os.path.join(src, "model.safetensors.index.json"))
    else:
        torch.save(load_file(os.path.join(src, "model.safetensors")), os.path.join(src, "pytorch_model.bin"))
        os.remove(os.path.join(src, "model.safetensors"))
    assert is_hf_folder(src)
    out = str(tmp_path / "out")
    result = resize_folder(src, out, state_dict_plan((6, 6)), image_size=48)
    assert all(name.endswith(".bin") for name in result.resized)
    model = _load_clean(transformers.ViTModel, out)
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 3, 48, 48)).last_hidden_state.shape[1] == 37


def test_failure_leaves_nothing(tmp_path):
    src = _vit_folder(tmp_path, max_shard_size="20KB")
    before = _snapshot(src)
    calls = []

    class Plan:
        findings = []

        def apply(self, part):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("boom")
            return dict(part), []

    out = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="boom"):
        resize_folder(src, out, lambda view: Plan())
    assert not os.path.exists(out) and not _temp_leftovers(str(tmp_path)) and _snapshot(src) == before


def test_target_rules(tmp_path):
    src = _vit_folder(tmp_path)
    out = str(tmp_path / "out")
    resize_folder(src, out, state_dict_plan((6, 6)), image_size=48)
    with pytest.raises(FileExistsError):
        resize_folder(src, out, state_dict_plan((5, 5)), image_size=40)
    resize_folder(src, out, state_dict_plan((5, 5)), image_size=40, overwrite=True)
    assert _load_clean(transformers.ViTModel, out).config.image_size == 40
    assert not _temp_leftovers(str(tmp_path))
    with pytest.raises(ValueError, match="outside"):
        resize_folder(src, os.path.join(src, "inner"), state_dict_plan((6, 6)), image_size=48)
    with pytest.raises(ValueError, match="outside"):
        resize_folder(src, src, state_dict_plan((6, 6)), image_size=48, overwrite=True)


def test_is_hf_folder(tmp_path):
    src = _vit_folder(tmp_path, max_shard_size="20KB")
    assert is_hf_folder(src)
    assert not is_hf_folder(os.path.join(src, "config.json"))
    with open(os.path.join(src, "model.safetensors.index.json")) as f:
        shard = next(iter(json.load(f)["weight_map"].values()))
    os.rename(os.path.join(src, shard), os.path.join(str(tmp_path), "moved"))
    assert not is_hf_folder(src)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    assert not is_hf_folder(str(empty))


# --- the command line: a folder is one input ---------------------------------------------------------------

def test_cli_resizes_a_sharded_folder_as_one_input_and_inspects_it(tmp_path, capsys):
    from posext.cli import main

    src = _vit_folder(tmp_path, max_shard_size="20KB")
    before = _snapshot(src)
    assert main(["inspect", src, "--json", str(tmp_path / "found.json")]) == 0
    rows = json.load(open(tmp_path / "found.json"))[0]["findings"]
    assert {r["key"]: r["action"] for r in rows} == {
        "embeddings.position_embeddings": "resample",
        "embeddings.patch_embeddings.projection.weight": "resize_patch_embed"}
    assert all(r["wrapper"] == "model.safetensors.index.json" for r in rows)
    assert main(["resize", str(tmp_path), "--image-size", "48x64", "--out", str(tmp_path / "out")]) == 0
    assert _snapshot(src) == before
    out = str(tmp_path / "out" / "src")
    model = _load_clean(transformers.ViTModel, out)
    assert model.config.image_size == [48, 64] and _processor_shape(out, (48, 64)) == (48, 64)
    # --grid on a folder: image = grid x the config's patch size
    assert main(["resize", src, "--grid", "5x7"]) == 0
    assert _load_clean(transformers.ViTModel, src + "_5x7").config.image_size == [40, 56]
    assert main(["resize", src, "--grid", "6", "--in-place"]) == 1
    assert "--in-place" in capsys.readouterr().err


def test_cli_video_folder_takes_its_frame_grid_from_the_config(tmp_path):
    from posext.cli import main

    t = transformers
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    torch.manual_seed(0)
    native = t.VivitModel(t.VivitConfig(**V, image_size=32, num_frames=4, tubelet_size=[2, 8, 8]))
    native.save_pretrained(src)
    assert main(["resize", src, "--image-size", "48x64", "--frames", "8", "--out", out]) == 0
    model = _load_clean(t.VivitModel, os.path.join(out, "src"))
    assert model.config.num_frames == 8 and model.config.image_size == [48, 64]
    table = native.state_dict()["embeddings.position_embeddings"]
    grid = table[:, 1:].reshape(1, 2, 4, 4, 32).permute(0, 4, 1, 2, 3).double()
    # separable: bicubic per frame, then linear over time (F.interpolate, align_corners=False)
    frames = F.interpolate(grid[0].permute(1, 0, 2, 3), size=(6, 8), mode="bicubic", align_corners=False)
    want = F.interpolate(frames.permute(1, 0, 2, 3)[None], size=(4, 6, 8), mode="trilinear",
                         align_corners=False)
    want = torch.cat([table[:, :1].double(), want.permute(0, 2, 3, 4, 1).reshape(1, -1, 32)], 1)
    torch.testing.assert_close(model.embeddings.position_embeddings.detach().double(), want, rtol=0,
                               atol=1e-5)
    with torch.no_grad():
        assert torch.isfinite(model(pixel_values=torch.randn(1, 8, 3, 48, 64)).last_hidden_state).all()


def test_cli_yolos_folder_keeps_the_detection_rows(tmp_path):
    from posext.cli import main

    t = transformers
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    cfg = t.YolosConfig(**dict(V, num_hidden_layers=3), image_size=[32, 48], patch_size=8,
                        num_detection_tokens=5)
    torch.manual_seed(0)
    native = t.YolosModel(cfg)
    native.save_pretrained(src)
    assert main(["resize", src, "--image-size", "48x64", "--no-antialias", "--out", out]) == 0
    model = _load_clean(t.YolosModel, os.path.join(out, "src"))
    old, new = native.state_dict(), model.state_dict()
    for key in ("embeddings.position_embeddings", "encoder.interpolation.mid_position_embeddings"):
        assert new[key].shape[-2] == 1 + 6 * 8 + 5
        assert torch.equal(new[key][..., -5:, :], old[key][..., -5:, :])  # detection rows bit for bit
        assert torch.equal(new[key][..., :1, :], old[key][..., :1, :])
        grid = old[key][..., 1:-5, :].reshape(-1, 4, 6, 32).permute(0, 3, 1, 2)
        want = F.interpolate(grid, size=(6, 8), mode="bicubic", align_corners=False)
        torch.testing.assert_close(new[key][..., 1:-5, :].reshape(-1, 48, 32),
                                   want.permute(0, 2, 3, 1).reshape(-1, 48, 32), rtol=0, atol=1e-5)
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 3, 48, 64)).last_hidden_state.shape[1] == 1 + 48 + 5
