"""posext resize / inspect over files: formats and wrapping kept, safety, atomic writes, failures reported."""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from posext.checkpoint import io as ckpt_io
from posext.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = (6, 6)


class NotAllowed:
    """A global that weights_only loading must refuse."""

    def __init__(self, value=1):
        self.value = value


def vit_state(seed=0, grid=4, dim=8, prefix_key=""):
    gen = torch.Generator().manual_seed(seed)
    return {f"{prefix_key}cls_token": torch.randn(1, 1, dim, generator=gen),
            f"{prefix_key}pos_embed": torch.randn(1, 1 + grid * grid, dim, generator=gen),
            f"{prefix_key}patch_embed.proj.weight": torch.randn(dim, 3, 2, 2, generator=gen),
            f"{prefix_key}head.weight": torch.randn(5, dim, generator=gen)}


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def expected_pos(pos):
    import posext

    return posext.resample(pos, GRID, num_prefix_tokens=1, antialias=True)


def no_temp_files(folder):
    return not [n for n in os.listdir(folder) if n.startswith(".posext-tmp-")]


def test_torch_pickle_with_wrappers_ema_optimizer_and_args(tmp_path):
    model, ema = vit_state(0, prefix_key="module."), vit_state(1)
    opt_state = {0: {"exp_avg": torch.zeros(1, 17, 8), "step": torch.tensor(3.0)},
                 1: {"exp_avg": torch.zeros(5, 8)}}
    ckpt = {"model": model, "model_ema": ema, "epoch": 7, "args": argparse.Namespace(lr=0.1),
            "optimizer": {"state": opt_state, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}
    src = tmp_path / "train.pth"
    torch.save(ckpt, src)
    before = sha(src)
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="optimizer"):
        assert main(["resize", str(src), "--grid", "6x6", "--out", str(out)]) == 0
    assert sha(src) == before, "the input must not change without --in-place"
    with torch.serialization.safe_globals([argparse.Namespace]):
        got = torch.load(out / "train.pth", weights_only=True)
    assert set(got) == set(ckpt) and got["epoch"] == 7 and got["args"].lr == 0.1
    torch.testing.assert_close(got["model"]["module.pos_embed"], expected_pos(model["module.pos_embed"]))
    torch.testing.assert_close(got["model_ema"]["pos_embed"], expected_pos(ema["pos_embed"]))
    for key in ("module.cls_token", "module.patch_embed.proj.weight", "module.head.weight"):
        assert torch.equal(got["model"][key], model[key])
    assert 0 not in got["optimizer"]["state"] and 1 in got["optimizer"]["state"]
    assert no_temp_files(out)


def test_drop_optimizer_flag_removes_it(tmp_path):
    torch.save({"model": vit_state(), "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "a.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # removal was asked for: no warning
        assert main(["resize", str(tmp_path / "a.pth"), "--grid", "6", "--drop-optimizer",
                     "--suffix", "_r"]) == 0
    assert "optimizer" not in torch.load(tmp_path / "a_r.pth", weights_only=True)


def test_safetensors_keeps_metadata_and_format(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    state = vit_state(2)
    save_file(state, tmp_path / "m.safetensors", metadata={"format": "pt", "note": "x"})
    assert main(["resize", str(tmp_path / "m.safetensors"), "--grid", "6x6"]) == 0
    path = tmp_path / "m_6x6.safetensors"
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}
        torch.testing.assert_close(f.get_tensor("pos_embed"), expected_pos(state["pos_embed"]))
        assert torch.equal(f.get_tensor("head.weight"), state["head.weight"])


def test_npz_big_vision_layout(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"params/img/pos_embedding": rng.standard_normal((1, 16, 8)).astype(np.float32),
              "params/img/embedding/kernel": rng.standard_normal((2, 2, 3, 8)).astype(np.float32),
              "params/txt/pos_embedding": rng.standard_normal((1, 16, 8)).astype(np.float32)}
    np.savez(tmp_path / "bv.npz", **arrays)
    assert main(["resize", str(tmp_path / "bv.npz"), "--grid", "6x6", "--no-antialias",
                 "--mode", "bilinear"]) == 0
    with np.load(tmp_path / "bv_6x6.npz", allow_pickle=False) as got:
        assert list(got.files) == list(arrays)
        assert got["params/img/pos_embedding"].shape == (1, 36, 8)
        assert got["params/img/pos_embedding"].dtype == np.float32
        np.testing.assert_array_equal(got["params/txt/pos_embedding"], arrays["params/txt/pos_embedding"])
        np.testing.assert_array_equal(got["params/img/embedding/kernel"],
                                      arrays["params/img/embedding/kernel"])


def test_in_place_and_dry_run(tmp_path):
    path = tmp_path / "x.pth"
    torch.save(vit_state(3), path)
    before = sha(path)
    assert main(["resize", str(path), "--grid", "6", "--dry-run", "--in-place"]) == 0
    assert sha(path) == before and sorted(os.listdir(tmp_path)) == ["x.pth"]
    assert main(["resize", str(path), "--grid", "6", "--in-place"]) == 0
    assert torch.load(path, weights_only=True)["pos_embed"].shape == (1, 37, 8)
    assert no_temp_files(tmp_path)


def test_image_size_alone_gives_the_grid_from_the_patch_kernel(tmp_path):
    torch.save(vit_state(), tmp_path / "v.pth")  # patch_embed.proj.weight: 2 x 2 patches
    assert main(["resize", str(tmp_path / "v.pth"), "--image-size", "12x10"]) == 0
    out = torch.load(tmp_path / "v_12x10.pth", weights_only=True)
    assert out["pos_embed"].shape == (1, 31, 8) and out["patch_embed.proj.weight"].shape == (8, 3, 2, 2)
    assert main(["resize", str(tmp_path / "v.pth"), "--image-size", "12", "--patch-size", "3"]) == 0
    out = torch.load(tmp_path / "v_12x12_p3.pth", weights_only=True)
    assert out["pos_embed"].shape == (1, 17, 8) and out["patch_embed.proj.weight"].shape == (8, 3, 3, 3)


def test_unsafe_pickle_is_refused_unless_asked(tmp_path, capsys):
    torch.save({"model": vit_state(), "extra": NotAllowed()}, tmp_path / "u.pth")
    assert main(["resize", str(tmp_path / "u.pth"), "--grid", "6"]) == 1
    out = capsys.readouterr().out
    assert "--unsafe-pickle" in out and "[failed]" in out
    assert not (tmp_path / "u_6x6.pth").exists()
    assert main(["resize", str(tmp_path / "u.pth"), "--grid", "6", "--unsafe-pickle"]) == 0
    assert torch.load(tmp_path / "u_6x6.pth", weights_only=False)["extra"].value == 1


def test_bad_files_are_reported_and_the_batch_goes_on(tmp_path, capsys):
    good = tmp_path / "good.pth"
    torch.save(vit_state(), good)
    (tmp_path / "corrupt.pth").write_bytes(os.urandom(300))
    valid = tmp_path / "valid.pth"
    torch.save(vit_state(4), valid)
    data = valid.read_bytes()
    valid.unlink()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    torch.save([1, 2, 3], tmp_path / "notckpt.pth")
    torch.save({"pos_embed": torch.randn(1, 1 + 2 * 6, 8)}, tmp_path / "ambiguous.pth")  # 13, 12, 11 rows
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocked.pth").mkdir()  # the target name is taken by a folder: the final rename fails
    torch.save(vit_state(5), tmp_path / "blocked.pth")
    report = tmp_path / "report.json"
    code = main(["resize", str(tmp_path), "missing-*.pth", "--grid", "6", "--out", str(out),
                 "--json", str(report)])
    assert code == 1
    captured = capsys.readouterr()
    rows = {os.path.basename(r["input"]): r for r in json.load(open(report))["files"]}
    assert rows["good.pth"]["status"] == "ok" and (out / "good.pth").is_file()
    failure_lines = captured.err.splitlines()  # one line on stderr for each failure
    for name in ("corrupt.pth", "truncated.pth", "notckpt.pth", "ambiguous.pth", "blocked.pth",
                 "missing-*.pth"):
        assert rows[name]["status"] == "failed" and rows[name]["reason"], name
        assert f"[failed] {rows[name]['input']}" in captured.out
        assert sum(line.startswith("posext resize: failed: ") and name in line for line in failure_lines) == 1
    assert len(failure_lines) == 6 and "Traceback" not in captured.err
    assert "not a checkpoint" in rows["notckpt.pth"]["reason"]
    ambiguous = rows["ambiguous.pth"]["reason"]
    assert "pos_embed" in ambiguous and "13" in ambiguous
    # from the command line the message names the flags that settle it, not the library's keywords
    assert "--old-size" in ambiguous and "--prefix-tokens" in ambiguous and "old_size=" not in ambiguous
    assert sorted(os.listdir(out)) == ["blocked.pth", "good.pth"] and no_temp_files(out)
    assert (out / "blocked.pth").is_dir()


def test_atomic_write_leaves_nothing_on_interrupt(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")

    def half_then_interrupt(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ckpt_io.atomic_write(str(target), half_then_interrupt)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["t.bin"]


def test_ctrl_c_during_a_batch_exits_130(tmp_path, monkeypatch, capsys):
    from posext.checkpoint import file_job

    torch.save(vit_state(), tmp_path / "a.pth")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(file_job, "resize_file", interrupted)
    assert main(["resize", str(tmp_path / "a.pth"), "--grid", "6"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["a.pth"]


def test_workers_give_the_same_bytes_as_one_process(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(20):
        if i % 2:
            from safetensors.torch import save_file

            save_file(vit_state(i), src / f"c{i:02d}.safetensors", metadata={"format": "pt"})
        else:
            torch.save({"model": vit_state(i), "epoch": i}, src / f"c{i:02d}.pth")
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        result = subprocess.run([sys.executable, "-m", "posext.cli", "resize", str(src), "--grid", "6x6",
                                 "--out", str(out), "--workers", str(workers)], cwd=ROOT, capture_output=True,
                                text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "summary: 20 ok" in result.stdout
        assert "resizing" not in result.stderr  # no progress bar in a pipe
        outs.append({name: sha(out / name) for name in sorted(os.listdir(out))})
    assert len(outs[0]) == 20 and outs[0] == outs[1]


def test_inspect_lists_findings(tmp_path, capsys):
    torch.save({"state_dict": vit_state()}, tmp_path / "i.pth")
    (tmp_path / "bad.pth").write_bytes(b"nope")
    report = tmp_path / "inspect.json"
    assert main(["inspect", str(tmp_path / "i.pth"), str(tmp_path / "bad.pth"), "--json", str(report)]) == 1
    printed = capsys.readouterr().out
    assert "pos_embed" in printed and "4x4" in printed and "ERROR" in printed
    data = {os.path.basename(entry["input"]): entry for entry in json.load(open(report))}
    assert "error" in data["bad.pth"]
    finding = data["i.pth"]["findings"][0]
    assert (finding["key"] == "pos_embed" and finding["num_prefix_tokens"] == 1
            and finding["wrapper"] == "state_dict")


def test_end_to_end_timm_and_hf_files_load_strictly_at_the_new_size(tmp_path):
    timm = pytest.importorskip("timm")
    transformers = pytest.importorskip("transformers")
    kw = dict(patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=3)
    old = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, **kw)  # grid 4x4
    torch.save({"model": old.state_dict(), "model_ema": old.state_dict()}, tmp_path / "timm.pth")
    cfg = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=8)
    transformers.ViTModel(transformers.ViTConfig(image_size=32, **cfg)).save_pretrained(tmp_path / "hf")
    out = tmp_path / "out"
    assert main(["resize", str(tmp_path / "timm.pth"), str(tmp_path / "hf" / "model.safetensors"),
                 "--image-size", "48", "--patch-size", "8", "--out", str(out)]) == 0
    new = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=48, **kw)
    ckpt = torch.load(out / "timm.pth", weights_only=True)
    new.load_state_dict(ckpt["model"], strict=True)
    new.load_state_dict(ckpt["model_ema"], strict=True)
    assert new(torch.randn(1, 3, 48, 48)).shape == (1, 3)
    # the new size's config beside the weights
    transformers.ViTConfig(image_size=48, **cfg).save_pretrained(out)
    hf_new, info = transformers.ViTModel.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert hf_new(pixel_values=torch.randn(1, 3, 48, 48)).last_hidden_state.shape == (1, 1 + 36, 32)


@pytest.mark.skipif(not __import__("shutil").which("script"), reason="needs util-linux `script` for a TTY")
def test_progress_bar_on_a_tty(tmp_path):
    torch.save(vit_state(), tmp_path / "a.pth")
    command = f"{sys.executable} -m posext.cli resize {tmp_path / 'a.pth'} --grid 6 --out {tmp_path / 'o'}"
    result = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stdout
    assert "resizing" in result.stdout and "1/1" in result.stdout  # rich's bar, drawn on the terminal


def test_bad_command_lines_exit_with_a_message(tmp_path, capsys):
    torch.save(vit_state(), tmp_path / "a.pth")
    for argv, words in [(["--grid", "0"], "positive"), (["--grid", "6", "--workers", "0"], "--workers"),
                        (["--grid", "6", "--patch-size", "8"], "--image-size"), ([], "--image-size"),
                        (["--frames", "0"], "--frames")]:
        with pytest.raises(SystemExit) as info:
            main(["resize", str(tmp_path / "a.pth"), *argv])
        assert words in str(info.value) + capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            main(["resize", str(tmp_path / "a.pth"), "--grid", "6", "--device", "cuda"])


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal_counts_finished_files(tmp_path):
    """On a TTY stderr shows a bar fed by finished files (here: 3 of 3); in a pipe nothing of it."""
    pytest.importorskip("rich")
    (tmp_path / "in").mkdir()
    for i in range(3):
        torch.save(vit_state(i), tmp_path / "in" / f"m{i}.pth")
    master, slave = os.openpty()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "posext.cli", "resize", str(tmp_path / "in"), "--grid", "6", "--out",
           str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, cwd=root,
                            env={**os.environ, "PYTHONPATH": root, "COLUMNS": "120"})
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    assert b"resizing" in shown and b"3/3" in shown
    piped = subprocess.run(cmd[:-1] + [str(tmp_path / "out2")], capture_output=True, cwd=root,
                           env={**os.environ, "PYTHONPATH": root})
    assert piped.returncode == 0 and b"resizing" not in piped.stderr
