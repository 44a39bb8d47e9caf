"""posext resize under signals, kills and dying workers; posext inspect memory. Each case runs the command in
a subprocess. Writes are made slow deterministically by a ``sitecustomize`` written for the test: its
``torch.save`` writes the real temp file, drops a marker naming the writer's PID, then sleeps, so a signal
always lands while a write is in flight (a ``sitecustomize`` also reaches the spawned worker processes)."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from posext.cli import main
from tests.test_checkpoint_safety import snapshot, vit_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMP_PREFIX = ".posext-tmp-"
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals and /proc")

SLOW_SAVE = textwrap.dedent("""
    import os, sys, time
    markers = os.environ.get("POSEXT_TEST_SLOW_SAVE")
    if markers and "resource_tracker" not in " ".join(sys.orig_argv):  # it never saves: spare it torch
        import torch
        real_save = torch.save
        def slow_save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)) and os.environ.get("POSEXT_TEST_SLOW_NAME", "") in str(f):
                with open(os.path.join(markers, str(os.getpid())), "w") as m:
                    m.write(str(f))
                for _ in range(1200):  # short sleeps: a signal handler runs between them
                    time.sleep(0.05)
        torch.save = slow_save
""")


@pytest.fixture
def slow(tmp_path):
    """(env for a subprocess whose torch.save writes, marks and sleeps; the marker folder)."""
    hook, markers = tmp_path / "hook", tmp_path / "markers"
    hook.mkdir()
    markers.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_SAVE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), ROOT]),
           "POSEXT_TEST_SLOW_SAVE": str(markers)}
    return env, markers


def start_resize(args, env, sigint_ignored=False):
    """``sigint_ignored``: start as a script's background job does (`posext resize ... &`), SIGINT ignored."""
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([sys.executable, "-m", "posext.cli", "resize", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ignore)


def wait_for_writers(markers, count, proc, timeout=60):
    """PIDs of the processes whose write is in flight, once ``count`` of them are."""
    deadline = time.monotonic() + timeout
    while len(os.listdir(markers)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no write started"
        time.sleep(0.02)
    return [int(name) for name in os.listdir(markers)]


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def temp_folders(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX))


def inputs_folder(tmp_path, names=("a.pth", "b.pth", "c.pth")):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(names):
        torch.save(vit_state(seed), folder / name)
    return folder


@pytest.mark.parametrize("signum,code,workers", [(signal.SIGINT, 130, "1"), (signal.SIGTERM, 143, "1"),
                                                  (signal.SIGINT, 130, "2")])  # SIGTERM with workers: below
def test_stop_signal_during_a_write_leaves_nothing(tmp_path, slow, signum, code, workers):
    env, markers = slow
    src = inputs_folder(tmp_path)
    before = snapshot(src)
    out = tmp_path / "out"
    proc = start_resize([str(src), "--grid", "6", "--out", str(out), "--workers", workers], env,
                        sigint_ignored=workers == "1")  # `kill -INT` still stops a background job
    writers = wait_for_writers(markers, int(workers), proc)
    assert temp_folders(out)  # the write is in flight
    os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C does: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "no partial file was left" in stderr and "Traceback" not in stderr
    assert os.listdir(out) == [] and snapshot(src) == before
    assert not any(running(pid) for pid in writers)


def test_sigterm_to_the_parent_alone_stops_its_workers(tmp_path, slow):
    env, markers = slow
    src = inputs_folder(tmp_path)
    before = snapshot(src)
    proc = start_resize([str(src), "--grid", "6", "--out", str(tmp_path / "out"), "--workers", "2"], env)
    writers = wait_for_writers(markers, 2, proc)
    os.kill(proc.pid, signal.SIGTERM)  # `kill PID`: the workers hear it from the parent
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    assert os.listdir(tmp_path / "out") == [] and snapshot(src) == before
    assert not any(running(pid) for pid in writers)


def test_workers_die_with_a_killed_parent_and_remove_their_temp_files(tmp_path, slow):
    env, markers = slow
    src = inputs_folder(tmp_path)
    before = snapshot(src)
    out = tmp_path / "out"
    proc = start_resize([str(src), "--grid", "6", "--out", str(out), "--workers", "2"], env)
    writers = wait_for_writers(markers, 2, proc)
    assert len(temp_folders(out)) == 2
    os.kill(proc.pid, signal.SIGKILL)  # the parent cannot clean up: each worker must stop by itself
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while any(running(pid) for pid in writers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(pid) for pid in writers), "workers outlived their parent"
    assert os.listdir(out) == [] and snapshot(src) == before


def test_a_worker_killed_mid_file_fails_that_file_only(tmp_path, slow):
    env, markers = slow
    src = inputs_folder(tmp_path, ("a.pth", "slow.pth", "c.pth"))
    before = snapshot(src)
    out = tmp_path / "out"
    proc = start_resize([str(src), "--grid", "6", "--out", str(out), "--workers", "2"],
                        {**env, "POSEXT_TEST_SLOW_NAME": "slow.pth"})
    (writer,) = wait_for_writers(markers, 1, proc)
    os.kill(writer, signal.SIGKILL)  # as the OOM killer would
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stdout + stderr
    (line,) = stderr.strip().splitlines()
    assert "slow.pth" in line and "SIGKILL" in line
    assert sorted(os.listdir(out)) == ["a.pth", "c.pth"]  # the dead worker's temp folder was removed
    assert snapshot(src) == before


def test_sigkill_leftover_is_ignored_then_cleaned_by_the_next_run(tmp_path, slow, capsys):
    env, markers = slow
    src = inputs_folder(tmp_path, ("m.pth",))
    proc = start_resize([str(src), "--grid", "6"], env)  # next to the input: the temp folder is in src
    wait_for_writers(markers, 1, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    (leftover,) = temp_folders(src)
    assert os.listdir(src / leftover) == ["m_6x6.pth"]  # a whole file that was never renamed into place
    # not ours to remove: a live owner (PID 1), and names that are not of the form .posext-tmp-<pid>-<random>
    for name in (f"{TEMP_PREFIX}1-keepme00", f"{TEMP_PREFIX}legacy"):
        (src / name).mkdir()
        torch.save(vit_state(9), src / name / "x.pth")
    before = snapshot(src)
    assert main(["inspect", str(src)]) == 0
    listed = capsys.readouterr().out
    assert "m.pth" in listed and "m_6x6.pth" not in listed and "x.pth" not in listed
    assert snapshot(src) == before  # inspect reads only
    assert main(["resize", str(src), "--grid", "6"]) == 0
    assert "summary: 1 ok" in capsys.readouterr().out  # the partial file was not taken for an input
    after = snapshot(src)
    assert after.pop("m_6x6.pth")
    assert after == {k: v for k, v in before.items() if not k.startswith(leftover)}  # only the leftover went


def test_inspect_reads_shapes_not_data(tmp_path):
    """A 1 MiB .npz holding 512 MiB of zeros and a 256 MiB pickle: inspect's peak memory barely grows."""
    import zipfile

    npz = tmp_path / "zeros.npz"
    with zipfile.ZipFile(npz, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("params/img/pos_embedding.npy", "w") as f:
            np.lib.format.write_array(f, np.ones((1, 16, 8), np.float32))
        with zf.open("params/img/embedding/kernel.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (2 ** 27,)})
            block = bytes(2 ** 24)
            for _ in range(2 ** 29 // len(block)):
                f.write(block)
    torch.save({**vit_state(0), "blocks.0.mlp.weight": torch.zeros(2 ** 26)}, tmp_path / "big.pth")
    before = {p: hashlib.sha256(open(tmp_path / p, "rb").read()).hexdigest()
              for p in ("zeros.npz", "big.pth")}
    probe = textwrap.dedent(f"""
        import resource, sys
        from posext.cli import main
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        code = main(["inspect", {str(npz)!r}, {str(tmp_path / 'big.pth')!r}])
        print("GROWTH_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start)
        sys.exit(code)
    """)
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "params/img/pos_embedding" in result.stdout and "pos_embed" in result.stdout
    growth_mib = int(result.stdout.split("GROWTH_KIB")[1]) / 1024
    assert growth_mib < 64, (f"inspect grew by {growth_mib:.0f} MiB for 768 MiB of tensors it only needs "
                             f"shapes of")
    assert before == {p: hashlib.sha256(open(tmp_path / p, "rb").read()).hexdigest() for p in before}
