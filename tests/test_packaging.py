"""Packaging: the sdist carries everything a build and the test suite need and no build outputs; the metadata
says what the package needs; setup.py builds the CUDA kernels only where a GPU is visible, where forced, or
where the previous build in the tree had them (and refuses to drop them silently)."""
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import setuptools
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from posext import _backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what the sdist must carry beside the git-tracked files of these folders
TOP_LEVEL_FILES = {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in", "Makefile",
                   "requirements-dev.txt"}
SDIST_FOLDERS = ("csrc", "posext", "tests", "scripts")

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _requirement_names(lines):
    return {Requirement(line).name.lower().replace("_", "-") for line in lines}


def _dev_requirements():
    with open(os.path.join(ROOT, "requirements-dev.txt")) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _git(*args):
    if not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout (an unpacked sdist has nothing to compare with)")
    listed = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    return {f for f in listed if os.path.isfile(os.path.join(ROOT, f))}  # minus files deleted, not committed


def git_tracked(*folders):
    """The git-tracked files under `folders` that exist on disk (skips outside a git checkout)."""
    return _git("ls-files", "--", *folders)


# what an in-place build and a test run leave in a tree, none of which belongs in an sdist
BUILD_OUTPUTS = ("posext/_C.cpython-311-x86_64-linux-gnu.so", "posext/_C.build.json", "build/temp/csrc/ops.o",
                 "posext/__pycache__/cli.cpython-311.pyc", "tests/__pycache__/conftest.cpython-311.pyc",
                 "scripts/__pycache__/gpu_report.cpython-311.pyc", "csrc/cpu/resample_cpu.o")


def source_tree(dest):
    """A copy of this checkout's files (tracked, or new and not ignored) with build outputs planted in it.

    A copy, because setuptools adds the files listed in an old posext.egg-info/SOURCES.txt of the tree it
    packs (left by an earlier sdist) to the new sdist, which would hide a file missing from MANIFEST.in."""
    for name in _git("ls-files", "--cached", "--others", "--exclude-standard"):
        os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), os.path.join(dest, name))
    for name in BUILD_OUTPUTS:
        os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(dest, name), "w") as f:
            f.write('{"cuda_kernels": false}' if name.endswith(".json") else "")
    return str(dest)


def build_sdist(out_dir, source):
    """`python -m build --sdist --no-isolation` of `source` -> (path of the .tar.gz, the build's output)."""
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
                             str(out_dir), source], capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    (sdist,) = glob.glob(os.path.join(str(out_dir), "posext-*.tar.gz"))
    return sdist, output


def sdist_members(sdist):
    """File names inside the sdist, relative to its top folder (posext-<version>/)."""
    with tarfile.open(sdist) as tar:
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile() and "/" in m.name}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    source = source_tree(tmp_path_factory.mktemp("tree"))
    path, output = build_sdist(tmp_path_factory.mktemp("sdist"), source)
    return path, output, sdist_members(path)


def test_sdist_holds_every_source_header_test_helper_and_license(sdist):
    _, _, members = sdist
    expected = git_tracked(*SDIST_FOLDERS) | TOP_LEVEL_FILES
    # the files whose absence broke builds from the sdist, named so an empty git listing cannot pass
    assert {"csrc/resample_op.h", "csrc/checks.h", "csrc/cpu/cpu_isa.h", "csrc/cuda/resample_cuda.cu",
            "tests/reference.py", "tests/reference_resample.py", "tests/conftest.py"} <= expected
    assert sorted(expected - members) == []


def test_sdist_leaves_out_build_outputs(sdist):
    _, _, members = sdist
    assert sorted(members & set(BUILD_OUTPUTS)) == []
    assert [m for m in members if re.search(r"\.(so|o|pyc)$|^build/", m)] == []


def test_sdist_metadata_license_and_dependencies(sdist):
    path, output, _ = sdist
    with tarfile.open(path) as tar:
        (pkg_info,) = [m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")]
        meta = tar.extractfile(pkg_info).read().decode()
    assert "License-Expression: BSD-3-Clause" in meta.splitlines()
    assert "License-File: LICENSE" in meta.splitlines()
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    core = {Requirement(r).name for r in requires if "extra ==" not in r}
    assert {"torch", "numpy", "safetensors"} <= core and "matplotlib" not in core
    assert 'matplotlib; extra == "plot"' in requires and 'matplotlib; extra == "bench"' in requires
    # setuptools' warnings (the license table, license classifiers) say "deprecated"
    assert "deprecat" not in output.lower(), output[-4000:]


def test_license_is_bsd_3_clause():
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, the posext authors" in text
    assert "3. Neither the name of the copyright holder nor the names of its" in text


def test_build_requirements_need_setuptools_77_and_no_wheel():
    """setuptools reads the SPDX license string from 77 on; builds run with --no-build-isolation, so the
    installed setuptools is the one that builds."""
    build_requires = _pyproject()["build-system"]["requires"]
    assert "wheel" not in _requirement_names(build_requires)
    for lines in (build_requires, _dev_requirements()):
        (setuptools_req,) = [Requirement(r) for r in lines if Requirement(r).name == "setuptools"]
        assert not setuptools_req.specifier.contains("76.9") and setuptools_req.specifier.contains("77.0")
    assert Version(setuptools.__version__) >= Version("77")


def test_package_dependencies_are_in_the_dev_requirements():
    """The quickstart installs requirements-dev.txt, then posext into the same environment."""
    dev = _requirement_names(_dev_requirements())
    project = _pyproject()["project"]
    assert _requirement_names(project["dependencies"]) <= dev
    for extra, lines in project["optional-dependencies"].items():
        assert _requirement_names(lines) <= dev, extra


# ------------------------------------------------------------------------------ setup.py's choice of kernels

@pytest.fixture(scope="module")
def setup_py():
    """setup.py as a module: its setup() call runs only as __main__."""
    spec = importlib.util.spec_from_file_location("posext_setup_py", os.path.join(ROOT, "setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def machine(monkeypatch, setup_py):
    """A machine with a CUDA torch and a toolkit but no GPU, and no build switch set; `gpus` sets the
    count."""
    for name in ("POSEXT_FORCE_CUDA", "POSEXT_SKIP_CUDA", "POSEXT_CUDA_LINEINFO", "POSEXT_DEBUG_INFO",
                 "TORCH_CUDA_ARCH_LIST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(setup_py.cpp_extension, "CUDA_HOME", "/opt/cuda")

    class Machine:
        def gpus(self, count):
            monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
            monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    m = Machine()
    m.gpus(0)
    return m


CUDA_BUILD = {"cuda_kernels": True, "torch_cuda_arch_list": "8.6", "cuda_lineinfo": False, "torch": "2.14.1"}
CPU_BUILD = {"cuda_kernels": False, "torch_cuda_arch_list": None, "cuda_lineinfo": False, "torch": "2.14.1"}


def test_no_gpu_builds_cpu_only_and_says_how_to_force(setup_py, machine):
    for previous in (None, CPU_BUILD):
        plan = setup_py.CudaPlan(previous)
        assert not plan.build and plan.error is None
        assert "no GPU is visible" in plan.summary() and "POSEXT_FORCE_CUDA=1" in plan.summary()


def test_a_visible_gpu_builds_cuda_for_its_arch(setup_py, machine):
    machine.gpus(1)
    plan = setup_py.CudaPlan(None)
    assert plan.build and plan.arch_list is None and "1 GPU(s) visible" in plan.summary()


def test_force_builds_cuda_without_a_gpu_for_the_default_or_given_arches(setup_py, machine, monkeypatch):
    monkeypatch.setenv("POSEXT_FORCE_CUDA", "1")
    assert setup_py.CudaPlan(None).build and setup_py.CudaPlan(None).arch_list == "8.0;9.0"
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    assert setup_py.CudaPlan(CUDA_BUILD).arch_list == "9.0"
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "POSEXT_FORCE_CUDA=1 but torch" in setup_py.CudaPlan(None).error


def test_rebuild_without_a_gpu_keeps_the_cuda_kernels_of_the_previous_build(setup_py, machine):
    plan = setup_py.CudaPlan(CUDA_BUILD)
    assert plan.build and plan.error is None and plan.arch_list == "8.6"
    assert "previous build" in plan.summary() and "POSEXT_SKIP_CUDA=1" in plan.summary()


def test_skip_drops_the_cuda_kernels_of_the_previous_build(setup_py, machine, monkeypatch):
    monkeypatch.setenv("POSEXT_SKIP_CUDA", "1")
    plan = setup_py.CudaPlan(CUDA_BUILD)
    assert not plan.build and plan.error is None


def test_rebuild_that_cannot_keep_the_cuda_kernels_stops_before_compiling(setup_py, machine, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)  # torch replaced by a CPU build since
    assert setup_py.CudaPlan(CPU_BUILD).error is None
    plan = setup_py.CudaPlan(CUDA_BUILD)
    assert not plan.build and "POSEXT_SKIP_CUDA=1" in plan.error and "POSEXT_FORCE_CUDA=1" in plan.error
    from setuptools.dist import Distribution

    command = setup_py.BuildExtension(Distribution({"name": "posext"}))
    command.plan = plan
    with pytest.raises(SystemExit, match="built with CUDA kernels"):
        command.run()  # would compile (and fail on the missing sources) if the plan did not stop it first


def test_previous_build_needs_the_extension_beside_its_record(setup_py, tmp_path):
    (tmp_path / "posext").mkdir()
    record = tmp_path / "posext" / "_C.build.json"
    record.write_text('{"cuda_kernels": true}')
    assert setup_py.previous_build(str(tmp_path)) is None  # no extension: nothing a rebuild could replace
    (tmp_path / "posext" / "_C.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert setup_py.previous_build(str(tmp_path)) == {"cuda_kernels": True}
    record.write_text("{not json")
    assert setup_py.previous_build(str(tmp_path)) is None


def test_build_flags_no_host_debug_info_and_lineinfo_only_on_request(setup_py, machine, monkeypatch):
    monkeypatch.setenv("POSEXT_FORCE_CUDA", "1")

    def flags():
        (ext,) = setup_py.extensions(setup_py.CudaPlan(None))
        return ext.extra_compile_args["cxx"], ext.extra_compile_args["nvcc"]

    cxx, nvcc = flags()
    assert "-g0" in cxx and "-lineinfo" not in nvcc and "-fopenmp" in cxx
    monkeypatch.setenv("POSEXT_CUDA_LINEINFO", "1")
    monkeypatch.setenv("POSEXT_DEBUG_INFO", "1")
    cxx, nvcc = flags()
    assert "-g0" not in cxx and "-lineinfo" in nvcc


def test_in_place_build_recorded_what_it_contained(setup_py):
    """The extension loaded here was built in place: its record says whether it has the CUDA kernels."""
    if _backend._C is None or \
            os.path.dirname(os.path.abspath(_backend._C.__file__)) != os.path.join(ROOT, "posext"):
        pytest.skip("no extension built in place in this tree")
    record = setup_py.previous_build()
    assert record is not None and record["cuda_kernels"] == bool(_backend._C.cuda_built)
    assert record["torch"] == torch.__version__
