"""The GPU proof kit (scripts/gpu_check.sh): its CPU dry run end to end, and the parts that decide its
verdict, fed with the failures they must catch (a failed or skipped CUDA test, a sanitizer error in a posext
kernel, a driver mismatch, an unwritten output, a tool that refuses the device)."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from posext import _backend
from posext.bench import device_timing as dt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _script("gpu_report")
driver = _script("kernel_driver")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_out")
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "POSEXT_COMMIT": "0123abc"}
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--dry-run"], env=env,
                            capture_output=True, text=True, timeout=600)
    return result, out


def test_dry_run_passes_and_writes_the_gpu_schema(dry_run):
    result, out = dry_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.load(open(out / "gpu_results.json"))
    report.validate(results)
    assert results["status"] == "pass" and results["dry_run"] and results["commit"] == "0123abc"
    assert all(s["status"] == "ok" for s in results["stages"].values()), results["stages"]
    assert results["tests"]["collected"] > 100  # the CUDA tests exist and collect
    for tool, entry in results["sanitizer"].items():
        assert entry["status"] == "dry-run" and entry["driver_checks"] > 150 \
            and entry["driver_failures"] == [], tool
    ops = {r["op"] for r in results["bench"]["rows"]}
    assert ops == {"copy", "resample", "add_pos_embed", "sincos_2d", "rope_2d", "factorized",
                   "resample_varlen"}
    assert all(r.get("posext_us", 0) > 0 for r in results["bench"]["rows"] if r["op"] != "copy")
    assert len(results["targets"]) == 7 and all(t["met"] is None for t in results["targets"])
    assert "PASS (dry run on CPU)" in result.stdout


def test_dry_run_output_fits_what_the_device_machine_returns(dry_run):
    """At most 8 plain files directly in $OUT, each named in letters, digits, '.', '_' and '-', none empty."""
    _, out = dry_run
    entries = sorted(os.listdir(out))
    assert 0 < len(entries) <= 8, entries
    for name in entries:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and os.path.isfile(out / name), name
        assert os.path.getsize(out / name) > 0 and os.path.getsize(out / name) < 16 << 20, name
    assert {"gpu_results.json", "build.log", "tests.log", "sanitizer.log", "bench.log",
            "kernels.png"} <= set(entries)


def test_require_cuda_turns_a_missing_gpu_into_an_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                             os.path.join(ROOT, "tests", "test_backend.py")], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "POSEXT_REQUIRE_CUDA": "1"}, timeout=300)
    assert result.returncode != 0 and "POSEXT_REQUIRE_CUDA=1" in result.stdout + result.stderr


# ------------------------------------------------------------------------------ the verdict

MEMCHECK_CLEAN = """========= COMPUTE-SANITIZER
kernel_driver cuda: resample: 77 checks, 0 failed
========= ERROR SUMMARY: 0 errors
"""
MEMCHECK_OURS = """========= COMPUTE-SANITIZER
========= Invalid __global__ write of size 4 bytes
=========     at void posext::(anonymous namespace)::resample_forward_kernel<float, float>(const T1 *, \
T1 *)+0x270
=========     by thread (64,0,0) in block (3,0,0)
=========     Address 0x7f0000000400 is out of bounds
=========
========= ERROR SUMMARY: 1 error
"""
INITCHECK_FOREIGN = """========= COMPUTE-SANITIZER
========= Uninitialized __global__ memory read of size 4 bytes
=========     at void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>(T3)+0x1a0
=========     by thread (0,0,0) in block (0,0,0)
=========
========= ERROR SUMMARY: 1 error
"""
RACECHECK_OURS = """========= COMPUTE-SANITIZER
========= Error: Race reported between Write access at void \
posext::(anonymous namespace)::rope_2d_freqs_backward_kernel<float, float>(...)+0x3f0
=========     and Read access at void \
posext::(anonymous namespace)::rope_2d_freqs_backward_kernel<float, float>(...)+0x410 [512 hazards]
=========
========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)
========= ERROR SUMMARY: 1 error
"""


@pytest.mark.parametrize("log,errors,ours,foreign", [(MEMCHECK_CLEAN, 0, 0, 0), (MEMCHECK_OURS, 1, 1, 0),
                                                      (INITCHECK_FOREIGN, 1, 0, 1), (RACECHECK_OURS, 1, 1, 0),
                                                      ("Traceback: killed\n", None, None, 0)])
def test_sanitizer_logs_are_attributed(log, errors, ours, foreign):
    got = report.sanitizer_summary(log)
    assert (got["errors"], got["posext_errors"], got["foreign_errors"]) == (errors, ours, foreign)


def test_unattributed_sanitizer_errors_count_as_ours():
    got = report.sanitizer_summary("========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 3 errors\n")
    assert got["posext_errors"] == 3


def _work_dir(tmp_path, logs, junit=None, sanitizer_rc=0, driver_failures=()):
    work = tmp_path / "work"
    work.mkdir()
    lines = [f"{name}\tok\t0\t1.0\t{name}.log" for name in report.STAGES]
    (work / "stages.tsv").write_text("\n".join(lines) + "\n")
    for tool in report.TOOLS:
        (work / f"sanitizer_{tool}.log").write_text(logs.get(tool, MEMCHECK_CLEAN))
        (work / f"sanitizer_{tool}.rc").write_text(f"{sanitizer_rc}\n")
        (work / f"driver_{tool}.json").write_text(json.dumps({"calls": {"resample": 5},
                                                               "failures": list(driver_failures)}))
    cases = junit if junit is not None else '<testcase classname="tests.test_resample" name="test_a[cuda]"/>'
    (work / "junit.xml").write_text(f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    (work / "bench").mkdir()
    (work / "bench" / "kernels.json").write_text(json.dumps({"rows": [{"op": "copy", "copy_GBps": 4000.0}]}))
    return work


@pytest.mark.parametrize("change,status", [
    ({}, "pass"),
    ({"logs": {"memcheck": MEMCHECK_OURS}}, "fail"),
    ({"logs": {"racecheck": RACECHECK_OURS}}, "fail"),
    ({"logs": {"initcheck": INITCHECK_FOREIGN}}, "pass"),  # torch's own kernels: reported, not ours
    ({"logs": {"synccheck": "========= Error: Device not supported\n"}}, "incomplete"),
    ({"logs": {"memcheck": "Segmentation fault\n"}, "sanitizer_rc": 139}, "fail"),
    ({"driver_failures": ["resample [bicubic]: AssertionError: 3 unwritten (NaN) elements"]}, "fail"),
    ({"junit": '<testcase classname="t" name="a[cuda]"><failure message="boom"/></testcase>'}, "fail"),
    ({"junit": '<testcase classname="t" name="a[cuda]"><skipped message="no CUDA device"/></testcase>'},
     "fail"),
    ({"junit": ""}, "incomplete"),
])
def test_verdict_catches_each_kind_of_failure(tmp_path, change, status):
    work = _work_dir(tmp_path, change.get("logs", {}), change.get("junit"), change.get("sanitizer_rc", 0),
                     change.get("driver_failures", ()))
    results = report.assemble(str(work), str(tmp_path / "out"), dry_run=False)
    report.validate(results)
    assert results["status"] == status, report.summary(results)


def test_a_timed_out_stage_fails_and_a_skipped_one_is_incomplete(tmp_path):
    work = _work_dir(tmp_path, {})
    (work / "stages.tsv").write_text("build\tok\t0\t1\tbuild.log\ntests\ttimeout\t124\t240\ttests.log\n")
    assert report.assemble(str(work), str(tmp_path / "o1"), dry_run=False)["status"] == "fail"
    (work / "stages.tsv").write_text("build\tok\t0\t1\tbuild.log\nbench\tskipped\t0\t0\tbench.log\n")
    assert report.assemble(str(work), str(tmp_path / "o2"), dry_run=False)["status"] == "incomplete"


def test_validate_rejects_a_broken_file(dry_run):
    results = json.load(open(dry_run[1] / "gpu_results.json"))
    del results["targets"]
    results["stages"]["build"].pop("rc")
    with pytest.raises(ValueError, match="targets.*stage build"):
        report.validate(results)


def test_split_writes_one_file_per_op_and_refuses_dry_runs(dry_run, tmp_path):
    path = dry_run[1] / "gpu_results.json"
    with pytest.raises(SystemExit, match="dry run"):
        report.split(str(path), str(tmp_path))
    results = json.load(open(path))
    results.update(dry_run=False, environment={**results["environment"], "device": {"name": "NVIDIA H200"}})
    fake = tmp_path / "gpu_results.json"
    fake.write_text(json.dumps(results))
    written = report.split(str(fake), str(tmp_path))
    assert sorted(os.path.basename(w) for w in written) == [
        f"{op}_cuda_h200.json"
        for op in ("add_pos_embed", "factorized", "resample", "resample_varlen", "rope_2d", "sincos_2d")]
    assert json.load(open(written[0]))["rows"]


# ------------------------------------------------------------------------------ the sanitizer driver

def test_driver_reports_a_mismatch_and_an_unwritten_output():
    d = driver.Driver("cpu")
    x = d.randn(2, 5, 3)
    # the reference runs with the fallback: a function that differs between the two must be caught
    d.check("op", "mismatch", lambda x, device: x * (2.0 if _backend.use_extension("cpu") else 1.0), x)
    d.check("op", "unwritten", lambda x, device: x.clone().fill_(float("nan")), x)
    d.check("op", "agrees", lambda x, device: x * 3.0, x, wrt=(0,))
    assert d.calls["op"] == 3 and len(d.failures) == 2
    assert "mismatch" in d.failures[0] and "unwritten (NaN)" in d.failures[1]


def test_driver_strided_inputs_have_the_strides_asked_for():
    x = driver.Driver("cpu").randn(2, 7, 5, stride_c=2, stride_t=3)
    assert x.shape == (2, 7, 5) and x.stride()[1:] == (30, 2)


# ------------------------------------------------------------------------------ device timing helpers

def test_rotation_covers_the_cache_within_bounds():
    cpu = torch.device("cpu")
    assert dt.rotation_sets(1 << 30, cpu) == 2
    assert dt.rotation_sets(1 << 20, cpu) == min(dt.MAX_SETS, 4 * dt.cache_bytes(cpu) // (1 << 20))
    assert dt.rotation_sets(1, cpu) == dt.MAX_SETS
    assert dt.tensor_bytes(torch.zeros(3, 4), (torch.zeros(2, dtype=torch.bfloat16), [torch.zeros(1)]),
                           7) == 56
    assert dt.launches_per_call(lambda: None, (), cpu) is None
