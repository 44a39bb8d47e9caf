"""posext resize / inspect never overwrite inputs, never hang, refuse absurd sizes, fail one line at a time.

Every test snapshots the files it starts with (hash, link target or kind for each entry) and checks them
byte-identical afterwards, besides the behaviour it is about. All run in this process; a FIFO test would hang
it, so those run under an alarm that turns a hang into a failure.
"""
import contextlib
import hashlib
import json
import os
import signal
import stat
import time

import pytest
import torch

from posext.checkpoint import file_job
from posext.cli import main


def vit_state(seed=0, grid=4, dim=8):
    gen = torch.Generator().manual_seed(seed)
    return {"cls_token": torch.randn(1, 1, dim, generator=gen),
            "pos_embed": torch.randn(1, 1 + grid * grid, dim, generator=gen),
            "patch_embed.proj.weight": torch.randn(dim, 3, 2, 2, generator=gen)}


def snapshot(folder):
    """Every entry below ``folder``, symlinks not followed: relative path -> content hash, link or kind."""
    entries = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "link -> " + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(open(path, "rb").read()).hexdigest()
            else:
                what = "dir" if stat.S_ISDIR(st.st_mode) else "fifo" if stat.S_ISFIFO(st.st_mode) else "other"
            entries[os.path.relpath(path, folder)] = what
    return entries


@contextlib.contextmanager
def no_hang(seconds=30):
    def hung(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the command hangs")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refusal_lines(err):
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("posext resize: refused, nothing written: ") for line in lines), err
    return lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_same_base_name_from_two_folders_is_refused(tmp_path, capsys, workers):
    for sub, seed in (("a", 0), ("b", 1)):
        (tmp_path / sub).mkdir()
        torch.save(vit_state(seed), tmp_path / sub / "m.pth")
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    argv = ["resize", str(tmp_path / "a" / "m.pth"), str(tmp_path / "b" / "m.pth"), "--grid", "6",
            "--out", str(out), "--workers", workers]
    assert main(argv) == 1
    (line,) = refusal_lines(capsys.readouterr().err)
    assert str(tmp_path / "a" / "m.pth") in line and str(tmp_path / "b" / "m.pth") in line
    assert str(out / "m.pth") in line
    assert snapshot(tmp_path) == before and not out.exists()


def test_grid_suffix_target_that_is_another_input_is_refused(tmp_path, capsys):
    torch.save(vit_state(0), tmp_path / "m.pth")
    torch.save(vit_state(1), tmp_path / "m_6x6.pth")  # an input whose name is m.pth's default target
    before = snapshot(tmp_path)
    assert main(["resize", str(tmp_path), "--grid", "6"]) == 1
    (line,) = refusal_lines(capsys.readouterr().err)
    assert str(tmp_path / "m.pth") in line and str(tmp_path / "m_6x6.pth") in line
    assert snapshot(tmp_path) == before  # m_6x6_6x6.pth is not written either: the whole batch is refused


def test_out_that_resolves_to_the_input_folder_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    torch.save(vit_state(0), data / "m.pth")
    os.symlink(data, tmp_path / "link")
    before = snapshot(tmp_path)
    for out in (tmp_path / "link", data):  # a symlink to the input folder, and the folder itself
        assert main(["resize", str(data / "m.pth"), "--grid", "6", "--out", str(out)]) == 1
        (line,) = refusal_lines(capsys.readouterr().err)
        assert "--out" in line and str(data / "m.pth") in line
    assert main(["resize", str(data / "m.pth"), "--grid", "6", "--suffix", ""]) == 1  # target = input
    assert "--in-place" in refusal_lines(capsys.readouterr().err)[0]
    assert snapshot(tmp_path) == before


def test_json_report_never_overwrites_an_input_or_a_result(tmp_path, capsys):
    torch.save(vit_state(0), tmp_path / "m.pth")
    before = snapshot(tmp_path)
    assert main(["resize", str(tmp_path / "m.pth"), "--grid", "6", "--json", str(tmp_path / "m.pth")]) == 1
    assert "--json" in refusal_lines(capsys.readouterr().err)[0]
    assert main(["resize", str(tmp_path / "m.pth"), "--grid", "6",
                 "--json", str(tmp_path / "m_6x6.pth")]) == 1
    assert "result of" in refusal_lines(capsys.readouterr().err)[0]
    assert main(["inspect", str(tmp_path / "m.pth"), "--json", str(tmp_path / "m.pth")]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["resize", "inspect"])
def test_bad_json_paths_are_one_line_before_any_work(tmp_path, capsys, command):
    torch.save(vit_state(0), tmp_path / "m.pth")
    before = snapshot(tmp_path)
    extra = ["--grid", "6"] if command == "resize" else []
    for report, words in ((tmp_path / "missing" / "r.json", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(SystemExit) as info:
            main([command, str(tmp_path / "m.pth"), *extra, "--json", str(report)])
        message = str(info.value)
        assert message.startswith(f"posext {command}: --json") and words in message and "\n" not in message
    assert snapshot(tmp_path) == before  # refused before any work: no result either


def test_out_that_is_a_file_or_cannot_be_created(tmp_path):
    torch.save(vit_state(0), tmp_path / "m.pth")
    (tmp_path / "afile").write_text("x")
    if os.geteuid() == 0:  # root writes through permissions; sysfs refuses new folders even to root
        unwritable = "/sys/posext-read-only/sub"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        unwritable = str(ro / "sub")
    before = snapshot(tmp_path)
    for out, words in ((tmp_path / "afile", "is not a folder"),
                       (tmp_path / "afile" / "sub", "Not a directory"),
                       (unwritable, "cannot create the folder")):
        with pytest.raises(SystemExit) as info:
            main(["resize", str(tmp_path / "m.pth"), "--grid", "6", "--out", str(out)])
        assert str(info.value).startswith("posext resize: --out") and words in str(info.value), info.value
    assert snapshot(tmp_path) == before


def test_symlink_loop_and_dangling_symlink_fail_alone(tmp_path, capsys):
    torch.save(vit_state(0), tmp_path / "good.pth")
    os.symlink("loop.pth", tmp_path / "loop.pth")
    os.symlink("nowhere.pth", tmp_path / "dangling.pth")
    before = snapshot(tmp_path)
    for command in (["resize", "--grid", "6"], ["inspect"]):
        assert main([command[0], str(tmp_path), *command[1:]]) == 1
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 2 and "Traceback" not in captured.err, captured.err
        assert any("loop.pth" in line and "symlink loop" in line for line in lines)
        assert any("dangling.pth" in line and "dangling symlink" in line for line in lines)
    assert torch.load(tmp_path / "good_6x6.pth", weights_only=True)["pos_embed"].shape == (1, 37, 8)
    after = snapshot(tmp_path)
    assert after.pop("good_6x6.pth") and after == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_in_a_folder_or_as_an_argument_does_not_hang(tmp_path, capsys):
    torch.save(vit_state(0), tmp_path / "good.pth")
    os.mkfifo(tmp_path / "pipe.pth")
    before = snapshot(tmp_path)
    with no_hang():
        for argv in (["inspect", str(tmp_path / "pipe.pth")],
                     ["resize", str(tmp_path / "pipe.pth"), "--grid", "6"],
                     ["inspect", str(tmp_path)], ["resize", str(tmp_path), "--grid", "6", "--suffix", "_r"]):
            assert main(argv) == 1
            (line,) = capsys.readouterr().err.strip().splitlines()
            assert "pipe.pth" in line and "FIFO" in line
    after = snapshot(tmp_path)
    assert after.pop("good_r.pth") and after == before


def test_absurd_grids_are_refused_at_parsing(tmp_path, capsys):
    torch.save(vit_state(0), tmp_path / "m.pth")
    before = snapshot(tmp_path)
    start = time.perf_counter()
    for argv in (["--grid", "4294967296x4294967296"], ["--grid", "5000x5000"],
                 ["--grid", "6", "--old-size", "2**40"], ["--grid", "6", "--old-size", "8192x8192"]):
        with pytest.raises(SystemExit) as info:
            main(["resize", str(tmp_path / "m.pth"), *argv])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert ("--grid" in err or "--old-size" in err) and "Traceback" not in err
    assert "16777216" in err or "expected N or HxW" in err
    with pytest.raises(SystemExit, match="4096x4096"):
        main(["resize", str(tmp_path / "m.pth"), "--image-size", "4294967296", "--patch-size", "1"])
    with pytest.raises(SystemExit):
        main(["inspect", str(tmp_path / "m.pth"), "--prefix-tokens", "-1"])
    assert "--prefix-tokens" in capsys.readouterr().err
    assert time.perf_counter() - start < 5  # refused at once, not after trying to allocate
    assert snapshot(tmp_path) == before


def test_tables_too_big_for_memory_fail_that_file_only(tmp_path, capsys, monkeypatch):
    torch.save(vit_state(0), tmp_path / "m.pth")
    before = snapshot(tmp_path)
    monkeypatch.setattr(file_job, "_physical_memory", lambda: 2 ** 16)  # a 64 KiB machine
    assert main(["resize", str(tmp_path / "m.pth"), "--grid", "64"]) == 1  # 4097 x 8 fp32 rows = 128 KiB
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "pos_embed" in line and "GiB of memory" in line
    assert snapshot(tmp_path) == before


def test_cli_errors_name_the_flags(tmp_path, capsys):
    torch.save({"pos_embed": torch.randn(1, 1 + 2 * 6, 8)}, tmp_path / "ambiguous.pth")  # 13 rows: no square
    torch.save(vit_state(0), tmp_path / "vit.pth")
    before = snapshot(tmp_path)
    assert main(["inspect", str(tmp_path / "ambiguous.pth")]) == 1
    err = capsys.readouterr().err
    assert "--old-size HxW" in err and "--prefix-tokens P" in err and "old_size=" not in err
    assert main(["resize", str(tmp_path / "vit.pth"), "--grid", "6", "--old-size", "3x3", "--dry-run"]) == 1
    err = capsys.readouterr().err  # 17 rows = 3x3 + 8: contradicts the cls_token evidence
    assert "--old-size 3x3" in err and "--prefix-tokens 8" in err and "num_prefix_tokens" not in err
    assert snapshot(tmp_path) == before


def test_inspect_reads_values_only_where_the_action_depends_on_them(tmp_path, capsys):
    """Shape-only reading still tells MAE's fixed sin-cos table and stale position_ids from learned tensors,
    in every format (their values are read on demand), and maps legacy non-zip pickles it cannot
    memory-map."""
    import numpy as np
    from safetensors.torch import save_file

    import posext

    mae = {"cls_token": torch.zeros(1, 1, 16),
           "pos_embed": posext.sincos_2d(16, 4, num_prefix_tokens=1)[None],
           "decoder_pos_embed": torch.randn(1, 17, 8)}
    clip = {"vision_model.embeddings.class_embedding": torch.randn(8),
            "vision_model.embeddings.position_embedding.weight": torch.randn(17, 8),
            "vision_model.embeddings.position_ids": torch.arange(17)[None]}
    save_file({**mae, **clip}, tmp_path / "m.safetensors")
    np.savez(tmp_path / "m.npz", **{k: v.numpy() for k, v in {**mae, **clip}.items()})
    torch.save({**mae, **clip}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"model": {**mae, **clip}}, tmp_path / "zip.pth")
    before = snapshot(tmp_path)
    report = tmp_path / "r.json"
    assert main(["inspect", str(tmp_path), "--json", str(report)]) == 0
    capsys.readouterr()
    entries = json.load(open(report))
    assert len(entries) == 4
    for entry in entries:
        actions = {f["key"]: (f["action"], f["shape"]) for f in entry["findings"]}
        assert actions == {"pos_embed": ("regenerate_sincos", [1, 17, 16]),
                           "decoder_pos_embed": ("resample", [1, 17, 8]),
                           "vision_model.embeddings.position_embedding.weight": ("resample", [17, 8]),
                           "vision_model.embeddings.position_ids": ("regenerate_position_ids", [1, 17])}, \
            entry["input"]
    after = snapshot(tmp_path)
    assert after.pop("r.json") and after == before
