"""posext resize --manifest / --skip-existing: one fsync'd JSON line per finished file; a stopped run resumes
where it stopped (complete targets untouched, the rest written to the same bytes as one uninterrupted run);
changed settings or a changed target are redone; the journal's unterminated last line is tolerated."""
import json
import os
import signal

import pytest
import torch

from posext.cli import main
from tests import test_checkpoint_signals as signal_cases
from tests.test_checkpoint_safety import snapshot, vit_state
from tests.test_checkpoint_signals import start_resize, wait_for_writers

slow = signal_cases.slow  # the fixture slow_c builds on

NAMES = ("a.pth", "b.pth", "c.pth", "d.pth")


def inputs(tmp_path, names=NAMES):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(names):
        torch.save(vit_state(seed), folder / name)
    return folder


def lines(path):
    return [json.loads(line) for line in open(path, "rb").read().splitlines() if line.strip()]


def stats(folder):
    return {n: os.stat(folder / n).st_mtime_ns for n in sorted(os.listdir(folder))}


def test_manifest_has_one_line_per_finished_file(tmp_path):
    src = inputs(tmp_path)
    (src / "bad.pth").write_bytes(b"not a checkpoint")
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    assert main(["resize", str(src), "--grid", "6", "--out", str(out), "--manifest", str(manifest)]) == 1
    entries = lines(manifest)
    assert sorted(os.path.basename(e["input"]) for e in entries) == sorted(NAMES + ("bad.pth",))
    by_name = {os.path.basename(e["input"]): e for e in entries}
    assert by_name["bad.pth"]["status"] == "failed"
    for name in NAMES:
        e = by_name[name]
        target = os.stat(e["output"])
        assert e["status"] == "ok" and e["target_stat"] == [target.st_size, target.st_mtime_ns]
    assert len({e["settings"] for e in entries}) == 1


def test_resume_skips_complete_targets_and_writes_the_rest(tmp_path):
    src = inputs(tmp_path)
    ref = tmp_path / "ref"
    assert main(["resize", str(src), "--grid", "6", "--out", str(ref)]) == 0
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    args = ["resize", str(src), "--grid", "6", "--out", str(out), "--manifest", str(manifest)]
    assert main(args) == 0
    kept = open(manifest, "rb").read().splitlines(keepends=True)[:2]  # as if stopped after two files ...
    with open(manifest, "wb") as f:
        f.write(b"".join(kept) + b'{"input": "' + str(src / "c.pth").encode())  # ... mid-line
    for name in ("c.pth", "d.pth"):
        os.remove(out / name)
    before = stats(out)
    assert main(args + ["--skip-existing"]) == 0
    after = stats(out)
    assert all(after[n] == t for n, t in before.items())  # complete targets were not rewritten
    assert snapshot(out) == snapshot(ref)
    raw = open(manifest, "rb").read().splitlines()
    assert raw[2].startswith(b'{"input": "') and not raw[2].endswith(b"}")  # the torn line, kept apart
    assert [json.loads(r)["status"] for r in raw[3:]] == ["ok", "ok"]


def test_changed_settings_or_targets_are_redone(tmp_path):
    src = inputs(tmp_path, NAMES[:2])
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    args = ["resize", str(src), "--grid", "6", "--out", str(out), "--manifest", str(manifest),
            "--skip-existing"]
    assert main(args) == 0
    first = stats(out)
    assert main(args) == 0 and stats(out) == first  # nothing to do
    torch.save({"other": torch.zeros(1)}, out / "a.pth")  # someone changed a target since
    assert main(args) == 0
    assert lines(manifest)[-1]["input"].endswith("a.pth") and stats(out)["b.pth"] == first["b.pth"]
    assert main(args[:-1] + ["--mode", "bilinear", "--skip-existing"]) == 0  # other settings: both redone
    assert {os.path.basename(e["input"]) for e in lines(manifest)[-2:]} == {"a.pth", "b.pth"}


def test_bad_manifest_arguments_are_refused_before_any_work(tmp_path, capsys):
    src = inputs(tmp_path, NAMES[:1])
    before = snapshot(src)
    with pytest.raises(SystemExit, match="--skip-existing needs --manifest"):
        main(["resize", str(src), "--grid", "6", "--out", str(tmp_path / "o"), "--skip-existing"])
    assert main(["resize", str(src), "--grid", "6", "--in-place", "--manifest", str(src / "a.pth")]) == 1
    assert "--manifest" in capsys.readouterr().err and snapshot(src) == before
    with pytest.raises(SystemExit, match="--manifest .* is a folder"):
        main(["resize", str(src), "--grid", "6", "--out", str(tmp_path / "o"), "--manifest", str(tmp_path)])


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_a_killed_run_resumes_where_it_stopped(tmp_path, slow_c):
    env, markers = slow_c
    src = inputs(tmp_path)
    ref = tmp_path / "ref"
    assert main(["resize", str(src), "--grid", "6", "--out", str(ref)]) == 0
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    args = [str(src), "--grid", "6", "--out", str(out), "--manifest", str(manifest)]
    proc = start_resize(args, env)
    wait_for_writers(markers, 1, proc)  # c.pth's write is in flight: a and b are done
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert [os.path.basename(e["input"]) for e in lines(manifest)] == ["a.pth", "b.pth"]
    assert sorted(os.listdir(out)) == ["a.pth", "b.pth"]
    done = stats(out)
    assert main(["resize", *args, "--skip-existing"]) == 0
    assert all(stats(out)[n] == t for n, t in done.items())
    assert snapshot(out) == snapshot(ref)


@pytest.fixture
def slow_c(slow):
    env, markers = slow
    return {**env, "POSEXT_TEST_SLOW_NAME": "c.pth"}, markers
