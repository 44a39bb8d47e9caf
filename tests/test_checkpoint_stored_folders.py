"""Hugging Face folders in a store (memory://) are one input each, as on a local disk: the result in the store
has the bytes of a local run and loads with from_pretrained at the new size; local <-> store both ways; an
existing target is replaced, and while it is, the prefix is either a whole folder or no model folder at all;
a failed upload leaves the old target and no temp object; the manifest skips a complete folder and redoes a
changed one; weights of other frameworks are never downloaded."""
import hashlib
import json
import os

import pytest

from posext.checkpoint.stored_folders import hf_folders_in, owner
from posext.cli import main
from tests.test_checkpoint_hf_folder import _load_clean, _processor_shape, _snapshot, _vit_folder
from tests.test_checkpoint_safety import vit_state

fsspec = pytest.importorskip("fsspec")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")



def _objects(fs, prefix):
    return {path[len(prefix) + 1:]: hashlib.sha256(fs.cat(path)).hexdigest() for path in fs.find(prefix)}


def _zoo(tmp_path, fs, root):
    """A local zoo (a sharded ViT folder with a stale TF weight file and a model card, a safetensors file)
    and its copy at ``root``/zoo in the store."""
    zoo = tmp_path / "zoo"
    src = _vit_folder(zoo, name="vit-b.16", max_shard_size="20KB")
    with open(os.path.join(src, "tf_model.h5"), "wb") as f:
        f.write(b"old-size TF weights")
    os.makedirs(os.path.join(src, "docs"))
    with open(os.path.join(src, "docs", "card.md"), "w") as f:
        f.write("card\n")
    safetensors_torch.save_file(vit_state(0), str(zoo / "m.safetensors"))
    fs.put(str(zoo), f"{root}/zoo", recursive=True)
    return zoo


def _temp_objects(fs, root):
    return [p for p in fs.find(root) if ".posext-tmp-" in p]


def test_a_stored_folder_resizes_to_the_bytes_of_a_local_run_and_loads(tmp_path, store):
    fs, root = store
    zoo = _zoo(tmp_path, fs, root)
    before = _objects(fs, f"{root}/zoo")
    assert main(["resize", str(zoo), "--image-size", "48x64", "--out", str(tmp_path / "local")]) == 0
    assert main(["resize", f"memory://{root}/zoo", "--image-size", "48x64",
                 "--out", f"memory://{root}/out"]) == 0
    local = _snapshot(str(tmp_path / "local"))
    assert _objects(fs, f"{root}/out") == local and "vit-b.16/tf_model.h5" not in local
    assert "vit-b.16/docs/card.md" in local and "m.safetensors" in local
    assert _objects(fs, f"{root}/zoo") == before and not _temp_objects(fs, root)
    # the store's result, fetched, is a folder from_pretrained loads at the new size
    fs.get(f"{root}/out/vit-b.16", str(tmp_path / "fetched"), recursive=True)
    fetched = str(tmp_path / "fetched")
    model = _load_clean(transformers.ViTModel, fetched)
    assert model.config.image_size == [48, 64] and _processor_shape(fetched, (48, 64)) == (48, 64)


def test_local_and_store_both_ways_and_next_to_the_input(tmp_path, store):
    fs, root = store
    zoo = _zoo(tmp_path, fs, root)
    src = str(zoo / "vit-b.16")
    assert main(["resize", src, "--grid", "6", "--out", str(tmp_path / "local")]) == 0
    local = _snapshot(str(tmp_path / "local" / "vit-b.16"))
    assert main(["resize", src, "--grid", "6", "--out", f"memory://{root}/up"]) == 0
    assert _objects(fs, f"{root}/up/vit-b.16") == local
    assert main(["resize", f"memory://{root}/zoo/vit-b.16", "--grid", "6",
                 "--out", str(tmp_path / "down")]) == 0
    assert _snapshot(str(tmp_path / "down" / "vit-b.16")) == local
    # without --out the result sits beside the input; the dot in the folder's name is no file suffix
    assert main(["resize", f"memory://{root}/zoo/vit-b.16", "--grid", "6"]) == 0
    assert _objects(fs, f"{root}/zoo/vit-b.16_6x6") == local


def test_inspect_a_stored_folder_as_a_local_one(tmp_path, store, capsys):
    fs, root = store
    zoo = _zoo(tmp_path, fs, root)
    assert main(["inspect", str(zoo / "vit-b.16"), "--json", str(tmp_path / "local.json")]) == 0
    assert main(["inspect", f"memory://{root}/zoo/vit-b.16", "--json", str(tmp_path / "store.json")]) == 0
    local, stored = (json.load(open(tmp_path / n)) for n in ("local.json", "store.json"))
    assert stored[0]["format"] == "hf-folder" and stored[0]["findings"] == local[0]["findings"]
    assert {r["key"] for r in stored[0]["findings"]} == {"embeddings.position_embeddings",
                                                        "embeddings.patch_embeddings.projection.weight"}


def test_weights_of_other_frameworks_are_not_downloaded(tmp_path, store, monkeypatch):
    fs, root = store
    _zoo(tmp_path, fs, root)
    fetched = []
    real_get = type(fs).get_file
    monkeypatch.setattr(type(fs), "get_file", lambda self, rpath, lpath, **kw: (
        fetched.append(rpath.rsplit("/", 1)[1]), real_get(self, rpath, lpath, **kw))[1])
    assert main(["resize", f"memory://{root}/zoo/vit-b.16", "--grid", "6", "--out", str(tmp_path / "o")]) == 0
    assert "tf_model.h5" not in fetched and "card.md" in fetched and "model.safetensors.index.json" in fetched


def test_an_existing_target_is_replaced_and_never_seen_half_swapped(tmp_path, store, monkeypatch):
    fs, root = store
    zoo = _zoo(tmp_path, fs, root)
    out = f"{root}/out/vit-b.16"
    assert main(["resize", f"memory://{root}/zoo", "--grid", "6", "--out", f"memory://{root}/out"]) == 0
    old = _objects(fs, out)
    fs.pipe(f"{out}/stray.txt", b"not part of the new result")
    old_with_stray = _objects(fs, out)
    states = []
    cls = type(fs)
    real_mv, real_rm = cls.mv, cls.rm_file

    def record(real):
        def call(self, *args, **kwargs):
            result = real(self, *args, **kwargs)
            states.append(_objects(fs, out))
            return result
        return call

    monkeypatch.setattr(cls, "mv", record(real_mv))
    monkeypatch.setattr(cls, "rm_file", record(real_rm))
    assert main(["resize", f"memory://{root}/zoo", "--grid", "5", "--out", f"memory://{root}/out"]) == 0
    monkeypatch.undo()
    assert main(["resize", str(zoo), "--grid", "5", "--out", str(tmp_path / "local")]) == 0
    new = _snapshot(str(tmp_path / "local" / "vit-b.16"))
    assert _objects(fs, out) == new and new != old and not _temp_objects(fs, root)
    swapping = [s for s in states if s not in (old_with_stray, new)]
    assert len(swapping) > 3 and states[-1] == new
    for state in swapping:  # with a config.json the folder is whole: the old one or the new one
        assert "config.json" not in state
    # a local rerun replaces its folder the same way (a rename)
    assert main(["resize", str(zoo), "--grid", "6", "--out", str(tmp_path / "local")]) == 0
    assert _snapshot(str(tmp_path / "local" / "vit-b.16")) == old


def test_a_failed_upload_keeps_the_old_target_and_leaves_no_temp_object(tmp_path, store, monkeypatch, capsys):
    fs, root = store
    _zoo(tmp_path, fs, root)
    argv = ["resize", f"memory://{root}/zoo/vit-b.16", "--grid", "6", "--out", f"memory://{root}/out"]
    assert main(argv) == 0
    old = _objects(fs, f"{root}/out/vit-b.16")
    puts = []
    real_put = type(fs).put_file

    def failing_put(self, lpath, rpath, **kwargs):
        puts.append(rpath)
        if len(puts) == 3:
            raise OSError("the store went away")
        return real_put(self, lpath, rpath, **kwargs)

    monkeypatch.setattr(type(fs), "put_file", failing_put)
    argv[3] = "5"
    assert main(argv) == 1
    assert "the store went away" in capsys.readouterr().err
    assert _objects(fs, f"{root}/out/vit-b.16") == old and not _temp_objects(fs, root)
    monkeypatch.undo()
    # a fresh target: absent after the failure
    monkeypatch.setattr(type(fs), "put_file", failing_put)
    puts.clear()
    assert main(argv[:-1] + [f"memory://{root}/fresh"]) == 1
    assert not fs.exists(f"{root}/fresh/vit-b.16") and not _temp_objects(fs, root)


def test_targets_inside_the_input_or_over_an_object_are_refused(tmp_path, store, capsys):
    fs, root = store
    _zoo(tmp_path, fs, root)
    before = _objects(fs, f"{root}/zoo")
    assert main(["resize", f"memory://{root}/zoo/vit-b.16", "--grid", "6",
                 "--out", f"memory://{root}/zoo/vit-b.16/inner"]) == 1
    assert "must lie outside the input folder" in capsys.readouterr().err
    fs.pipe(f"{root}/o/vit-b.16", b"an object")
    assert main(["resize", f"memory://{root}/zoo/vit-b.16", "--grid", "6",
                 "--out", f"memory://{root}/o"]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err
    assert fs.cat(f"{root}/o/vit-b.16") == b"an object"
    assert main(["resize", f"memory://{root}/zoo/vit-b.16", "--grid", "6", "--in-place"]) == 1
    assert "--in-place" in capsys.readouterr().err
    assert _objects(fs, f"{root}/zoo") == before and not _temp_objects(fs, root)


def test_manifest_skips_a_complete_folder_and_redoes_a_changed_one(tmp_path, store):
    fs, root = store
    _zoo(tmp_path, fs, root)
    manifest = tmp_path / "m.jsonl"
    argv = ["resize", f"memory://{root}/zoo", "--grid", "6", "--out", f"memory://{root}/out",
            "--manifest", str(manifest), "--skip-existing"]
    assert main(argv) == 0
    first = _objects(fs, f"{root}/out")
    assert main(argv) == 0
    assert len(manifest.read_text().splitlines()) == 2  # nothing redone
    fs.pipe(f"{root}/out/vit-b.16/model-00001-of-00004.safetensors", b"changed since")
    assert main(argv) == 0
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(entries) == 3 and entries[2]["input"].endswith("vit-b.16") and entries[2]["status"] == "ok"
    assert _objects(fs, f"{root}/out") == first
    # a local target folder: a file changed inside it is seen the same way
    argv[argv.index("--out") + 1] = str(tmp_path / "local")
    assert main(argv) == 0 and main(argv) == 0
    assert len(manifest.read_text().splitlines()) == 5
    with open(tmp_path / "local" / "vit-b.16" / "preprocessor_config.json", "a") as f:
        f.write(" ")
    assert main(argv) == 0
    assert json.loads(manifest.read_text().splitlines()[-1])["input"].endswith("vit-b.16")
    assert len(manifest.read_text().splitlines()) == 6


def test_which_prefixes_are_model_folders(store):
    fs, root = store
    fs.pipe(f"{root}/a/config.json", b"{}")
    fs.pipe(f"{root}/a/model.safetensors", b"x")
    fs.pipe(f"{root}/a/sub/config.json", b"{}")          # inside a folder: part of it
    fs.pipe(f"{root}/a/sub/model.safetensors", b"x")
    fs.pipe(f"{root}/b/config.json", b"{}")              # no weights
    fs.pipe(f"{root}/c/config.json", b"{}")              # an index naming a missing shard
    fs.pipe(f"{root}/c/model.safetensors.index.json", b'{"weight_map": {"k": "s1.safetensors"}}')
    fs.pipe(f"{root}/d/config.json", b"{}")              # a corrupt index
    fs.pipe(f"{root}/d/model.safetensors.index.json", b"{not json")
    fs.pipe(f"{root}/e/config.json", b"{}")              # a complete sharded set of .bin files
    fs.pipe(f"{root}/e/pytorch_model.bin.index.json", b'{"weight_map": {"k": "s1.bin"}}')
    fs.pipe(f"{root}/e/s1.bin", b"x")
    fs.pipe(f"{root}/loose.safetensors", b"x")
    assert hf_folders_in(fs, fs.find(root)) == [f"{root}/a", f"{root}/e"]
    assert owner(f"{root}/a/sub/model.safetensors", {f"{root}/a", f"{root}/e"}) == f"{root}/a"
    assert owner(f"{root}/loose.safetensors", {f"{root}/a"}) is None


def test_the_local_staging_copy_of_a_store_target_is_not_forced_to_disk(tmp_path, store, monkeypatch):
    """The store's object is the copy that lasts: the local result uploaded to it is written without fsync
    (the same bytes as a local run, which fsyncs every file)."""
    fs, root = store
    _zoo(tmp_path, fs, root)
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    src = f"memory://{root}/zoo/vit-b.16"
    assert main(["resize", src, "--grid", "6", "--out", f"memory://{root}/out"]) == 0
    assert calls == []
    assert main(["resize", src, "--grid", "6", "--out", str(tmp_path / "local")]) == 0
    assert len(calls) >= 7  # every file of the folder, and the folder the rename lands in
    assert _objects(fs, f"{root}/out/vit-b.16") == _snapshot(str(tmp_path / "local" / "vit-b.16"))
