"""fsspec URLs as inputs and --out: a memory:// round trip gives the bytes of a local run for every format,
safetensors are read by ranges, a failed write leaves neither a target nor a temp object, the manifest
resumes over a store, and unusable URLs are refused with one clear line."""
import builtins
import os

import numpy as np
import pytest
import torch

from posext.checkpoint import safetensors_io
from posext.cli import main
from tests.test_checkpoint_safety import snapshot, vit_state

fsspec = pytest.importorskip("fsspec")
safetensors_torch = pytest.importorskip("safetensors.torch")



def _objects(fs, root):
    return {path[len(root):]: fs.cat(path) for path in fs.find(root)}


def _write_zoo(folder, count=3):
    """safetensors, torch pickles (wrapped as training checkpoints) and .npz files of small ViTs."""
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        state = {**vit_state(i), "blocks.0.w": torch.randn(16, 8)}
        safetensors_torch.save_file(state, os.path.join(folder, f"v{i}.safetensors"), metadata={"i": str(i)})
        torch.save({"model": state, "epoch": i}, os.path.join(folder, f"v{i}.pth"))
        np.savez(os.path.join(folder, f"v{i}.npz"), **{k: v.numpy() for k, v in state.items()})


def test_memory_round_trip_gives_the_bytes_of_a_local_run(tmp_path, store):
    fs, root = store
    _write_zoo(tmp_path / "zoo")
    fs.put(str(tmp_path / "zoo"), f"{root}/zoo", recursive=True)
    inputs = _objects(fs, f"{root}/zoo")
    fs.pipe(f"{root}/out/v0.safetensors", b"poison: must be replaced")
    assert main(["resize", str(tmp_path / "zoo"), "--grid", "6", "--out", str(tmp_path / "local")]) == 0
    assert main(["resize", f"memory://{root}/zoo", "--grid", "6", "--out", f"memory://{root}/out"]) == 0
    got = _objects(fs, f"{root}/out")
    local = {"/" + name: (tmp_path / "local" / name).read_bytes() for name in os.listdir(tmp_path / "local")}
    assert got == local and len(got) == 9
    assert _objects(fs, f"{root}/zoo") == inputs  # inputs untouched, no temp objects anywhere
    assert not [p for p in fs.find(root) if ".posext-tmp-" in p]
    # and back down: a store's files resized into a local folder
    assert main(["resize", f"memory://{root}/zoo/v1.pth", f"memory://{root}/zoo/*.npz", "--grid", "6",
                 "--out", str(tmp_path / "down")]) == 0
    assert sorted(os.listdir(tmp_path / "down")) == ["v0.npz", "v1.npz", "v1.pth", "v2.npz"]
    for name in os.listdir(tmp_path / "down"):
        assert (tmp_path / "down" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_next_to_the_input_and_in_place_in_a_store(tmp_path, store):
    fs, root = store
    safetensors_torch.save_file(vit_state(0), tmp_path / "m.safetensors")
    fs.put_file(str(tmp_path / "m.safetensors"), f"{root}/m.safetensors")
    assert main(["resize", f"memory://{root}/m.safetensors", "--grid", "5"]) == 0
    assert sorted(fs.ls(root, detail=False)) == [f"{root}/m.safetensors", f"{root}/m_5x5.safetensors"]
    assert main(["resize", f"memory://{root}/m.safetensors", "--grid", "3", "--in-place"]) == 0
    assert safetensors_torch.load(fs.cat(f"{root}/m.safetensors"))["pos_embed"].shape == (1, 10, 8)


class CountingFile:
    """A file object that counts the bytes read through it."""

    def __init__(self, f, counter):
        self.f, self.counter = f, counter

    def read(self, n=-1):
        data = self.f.read(n)
        self.counter[0] += len(data)
        return data

    def readinto(self, buf):
        n = self.f.readinto(buf)
        self.counter[0] += n or 0
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_stored_safetensors_file_is_read_by_ranges(tmp_path, store, monkeypatch):
    """Inspecting reads the header and the few tensors the detector looks at; a resize reads every byte once
    (the untouched tensors are streamed to the target), never the whole object into a local file."""
    fs, root = store
    state = {**vit_state(0), **{f"blocks.{i}.w": torch.randn(256, 256) for i in range(8)}}  # 2 MiB
    fs.pipe(f"{root}/big.safetensors", safetensors_torch.save(state))
    size = fs.size(f"{root}/big.safetensors")
    counter = [0]
    from posext.checkpoint import storage

    real_opener = storage.opener
    monkeypatch.setattr(storage, "opener", lambda path: (lambda: CountingFile(real_opener(path)(), counter)))
    monkeypatch.setattr(storage, "local_copy", None)  # a download would fail the test
    assert main(["inspect", f"memory://{root}/big.safetensors"]) == 0
    assert 0 < counter[0] < 0.01 * size
    counter[0] = 0
    out = f"memory://{root}/o"
    assert main(["resize", f"memory://{root}/big.safetensors", "--grid", "6", "--out", out]) == 0
    assert size * 0.99 < counter[0] < size * 1.01


def test_a_write_that_fails_midway_leaves_no_target_and_no_temp_object(tmp_path, store, monkeypatch, capsys):
    fs, root = store
    state = {**vit_state(0), "blocks.0.w": torch.randn(64, 64)}
    safetensors_torch.save_file(state, tmp_path / "m.safetensors")
    fs.put_file(str(tmp_path / "m.safetensors"), f"{root}/in/m.safetensors")
    fs.pipe(f"{root}/out/m.safetensors", b"the previous result")

    def broken(out, tensor):
        out.write(b"half a tensor")
        raise OSError("the store went away")

    monkeypatch.setattr(safetensors_io, "_write_tensor", broken)
    assert main(["resize", f"memory://{root}/in", "--grid", "6", "--out", f"memory://{root}/out"]) == 1
    assert "the store went away" in capsys.readouterr().err
    assert fs.cat(f"{root}/out/m.safetensors") == b"the previous result"
    assert sorted(fs.find(root)) == [f"{root}/in/m.safetensors", f"{root}/out/m.safetensors"]


def test_manifest_resumes_over_a_store(tmp_path, store):
    fs, root = store
    _write_zoo(tmp_path / "zoo", count=2)
    fs.put(str(tmp_path / "zoo"), f"{root}/zoo", recursive=True)
    argv = ["resize", f"memory://{root}/zoo", "--grid", "6", "--out", f"memory://{root}/out",
            "--manifest", str(tmp_path / "m.jsonl"), "--skip-existing"]
    assert main(argv) == 0
    first = _objects(fs, f"{root}/out")
    fs.pipe(f"{root}/out/v0.pth", b"changed since")  # a changed target is resized again
    assert main(argv) == 0
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert len(lines) == 6 + 1 and 'zoo/v0.pth"' in lines[6] and '"ok"' in lines[6]  # only v0.pth redone
    assert _objects(fs, f"{root}/out") == first


def test_unusable_urls_are_refused_with_one_line(tmp_path, store, capsys, monkeypatch):
    fs, root = store
    torch.save(vit_state(0), tmp_path / "m.pth")
    before = snapshot(tmp_path)
    assert main(["resize", "nosuchscheme://bucket/m.pth", "--grid", "6"]) == 1
    err = capsys.readouterr().err
    assert "nosuchscheme://" in err and "Traceback" not in err
    assert main(["resize", f"memory://{root}/absent.pth", "--grid", "6"]) == 1
    assert "no such object" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="give a local file"):
        main(["resize", str(tmp_path / "m.pth"), "--grid", "6", "--json", f"memory://{root}/r.json"])
    with pytest.raises(SystemExit, match="exists and is not a folder"):
        fs.pipe(f"{root}/file", b"x")
        main(["resize", str(tmp_path / "m.pth"), "--grid", "6", "--out", f"memory://{root}/file"])
    real_import = builtins.__import__

    def no_fsspec(name, *args, **kwargs):
        if name.startswith("fsspec"):
            raise ImportError("No module named 'fsspec'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fsspec)
    assert main(["resize", f"memory://{root}/m.pth", "--grid", "6"]) == 1
    assert "pip install 'posext[cluster]'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"posext\[cluster\]"):
        main(["resize", str(tmp_path / "m.pth"), "--grid", "6", "--out", f"memory://{root}/o"])
    assert snapshot(tmp_path) == before
    # file:// URLs are local paths
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert main(["resize", f"file://{tmp_path}/m.pth", "--grid", "6", "--out", f"file://{tmp_path}/o"]) == 0
    assert os.listdir(tmp_path / "o") == ["m.pth"]
    # and so are the objects fsspec's local file system (local://) finds
    assert main(["resize", f"local://{tmp_path}/m.pth", "--grid", "6", "--out", str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o2" / "m.pth").read_bytes() == (tmp_path / "o" / "m.pth").read_bytes()
