"""posext resize --cluster: a real dask.distributed LocalCluster (2 worker processes) resizing 40 checkpoints
gives the same bytes, report and exit code as --workers 1; a worker killed mid-file costs nothing (the task is
rerun, the target written once, no temp file left); bad addresses and a missing dask are refused clearly."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from posext.cli import main
from tests.test_checkpoint_safety import snapshot, vit_state

pytest.importorskip("distributed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMP_PREFIX = ".posext-tmp-"

# The first torch.save of a file named POSEXT_TEST_SLOW_NAME marks its writer's PID and then sleeps, so the
# test can kill that worker mid-file; the rerun on another worker finds the flag and saves at full speed.
SLOW_ONCE = textwrap.dedent("""
    import os
    flags = os.environ.get("POSEXT_TEST_SLOW_ONCE")
    if flags:
        import time, torch
        real_save = torch.save
        def slow_save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            first = os.path.join(flags, "first")
            if os.environ["POSEXT_TEST_SLOW_NAME"] in str(f) and not os.path.exists(first):
                with open(first + ".tmp", "w") as m:
                    m.write(str(os.getpid()))
                os.replace(first + ".tmp", first)
                time.sleep(120)
        torch.save = slow_save
""")


def inputs(tmp_path, count=40, bad=True):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(count):
        torch.save(vit_state(i, grid=4 + i % 2), folder / f"m{i:02d}.pth")
    if bad:
        (folder / "zz_bad.pth").write_bytes(b"not a checkpoint")
    return folder


def report_rows(path):
    rows = json.load(open(path))["files"]
    return [{k: v for k, v in r.items() if k not in ("seconds", "output")} for r in rows]


def test_local_cluster_equals_one_worker(tmp_path):
    src = inputs(tmp_path)
    before = snapshot(src)
    ref, out = tmp_path / "ref", tmp_path / "out"
    code_ref = main(["resize", str(src), "--grid", "6", "--out", str(ref),
                     "--json", str(tmp_path / "r.json")])
    code = main(["resize", str(src), "--grid", "6", "--out", str(out), "--cluster", "local:2",
                 "--json", str(tmp_path / "c.json")])
    assert code == code_ref == 1  # the bad file fails in both
    assert snapshot(out) == snapshot(ref) and len(os.listdir(out)) == 40
    assert report_rows(tmp_path / "c.json") == report_rows(tmp_path / "r.json")
    assert snapshot(src) == before


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")
def test_a_worker_killed_mid_file_is_rerun_and_the_run_completes(tmp_path):
    src = inputs(tmp_path, count=12, bad=False)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["resize", str(src), "--grid", "6", "--out", str(ref)]) == 0
    hook, flags = tmp_path / "hook", tmp_path / "flags"
    hook.mkdir()
    flags.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_ONCE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), ROOT]),
           "POSEXT_TEST_SLOW_ONCE": str(flags), "POSEXT_TEST_SLOW_NAME": "m05.pth"}
    proc = subprocess.Popen([sys.executable, "-m", "posext.cli", "resize", str(src), "--grid", "6", "--out",
                             str(out), "--cluster", "local:2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(flags / "first"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow write never started"
        time.sleep(0.05)
    assert [n for n in os.listdir(out) if n.startswith(TEMP_PREFIX)]  # m05's write is in flight
    os.kill(int((flags / "first").read_text()), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    assert "12 ok" in stdout
    assert snapshot(out) == snapshot(ref)  # every target once, whole; no temp folder left


def test_cluster_arguments_are_refused_before_any_work(tmp_path, monkeypatch):
    src = inputs(tmp_path, count=1, bad=False)
    out = tmp_path / "out"
    for address, message in [("scheduler:8786", "scheduler address"), ("local:0", "N >= 1"),
                             ("local:two", "N >= 1")]:
        with pytest.raises(SystemExit, match=message):
            main(["resize", str(src), "--grid", "6", "--out", str(out), "--cluster", address])
    with pytest.raises(SystemExit, match="drop --workers"):
        main(["resize", str(src), "--grid", "6", "--out", str(out), "--cluster", "local", "--workers", "2"])
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask.distributed were not installed
    with pytest.raises(SystemExit, match=r"pip install 'posext\[cluster\]'"):
        main(["resize", str(src), "--grid", "6", "--out", str(out), "--cluster", "local:1"])
    assert not out.exists() or not os.listdir(out)
