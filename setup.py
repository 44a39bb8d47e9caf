"""Build posext._C: CPU kernels always; CUDA kernels where a GPU is visible, or when forced.

Environment switches (read when the extension is built):
  POSEXT_FORCE_CUDA=1     build the CUDA kernels with no GPU visible (CI does: CUDA compile errors fail it).
  POSEXT_SKIP_CUDA=1      never build them (also replaces an earlier CUDA build in this tree by a CPU one).
  POSEXT_CUDA_LINEINFO=1  nvcc -lineinfo: kernel source lines in compute-sanitizer and profiler reports.
  POSEXT_DEBUG_INFO=1     keep the host compiler's debug info (-g from Python's CFLAGS); dropped by default.
  TORCH_CUDA_ARCH_LIST    respected; with no GPU visible it defaults to the previous build's, else "8.0;9.0".

A rebuild does not silently turn a CUDA build into a CPU-only one: each in-place build (`pip install -e .`,
`setup.py build_ext --inplace`) records what it contained in posext/_C.build.json, beside the extension.
When that record says CUDA kernels and no GPU is visible now, they are built again (the toolkit is there)
or, where they cannot be (no toolkit, or a CPU build of torch), the build stops and names POSEXT_SKIP_CUDA.
"""
import glob
import json
import os
import sys
import sysconfig

import torch
from setuptools import find_packages, setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0"  # A100, H100/H200: what CI compiles for, where no GPU says which
CPP_SOURCES = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
CUDA_SOURCES = sorted(glob.glob("csrc/cuda/*.cu"))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def previous_build(root=ROOT):
    """The record of the extension now in `root`/posext, or None (never built there, or no record)."""
    record = os.path.join(root, "posext", "_C.build.json")
    if not glob.glob(os.path.join(root, "posext", "_C*.so")) or not os.path.exists(record):
        return None
    try:
        with open(record) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class CudaPlan:
    """Whether this build compiles the CUDA kernels, why (for the build log), for which arches, and an error
    that stops the build. `previous` is the record of the last in-place build (see previous_build).

    Decided when setup.py runs, but `error` is raised only when the extension is built: making an sdist or
    reading the metadata must not depend on the toolkit."""

    def __init__(self, previous):
        self.build, self.reason, self.error = False, "", None
        self.arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")  # None: torch takes the visible GPUs' arches
        had_cuda = bool(previous and previous.get("cuda_kernels"))
        toolkit_missing = None
        if torch.version.cuda is None:
            toolkit_missing = f"torch {torch.__version__} is a CPU build"
        elif cpp_extension.CUDA_HOME is None:
            toolkit_missing = "no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)"
        if _flag("POSEXT_SKIP_CUDA"):
            self.reason = "POSEXT_SKIP_CUDA=1"
        elif _flag("POSEXT_FORCE_CUDA"):
            if toolkit_missing:
                self.error = (f"POSEXT_FORCE_CUDA=1 but {toolkit_missing} "
                              f"(CUDA_HOME={cpp_extension.CUDA_HOME})")
            self.build, self.reason = True, "POSEXT_FORCE_CUDA=1"
        elif toolkit_missing:
            self.reason = toolkit_missing
            if had_cuda:
                self.error = (
                    "the posext._C in this tree was built with CUDA kernels (posext/_C.build.json), but "
                    f"this build cannot compile them: {toolkit_missing}. Set POSEXT_SKIP_CUDA=1 to replace "
                    "it with a CPU-only build on purpose, or build with a CUDA torch and a toolkit "
                    "(POSEXT_FORCE_CUDA=1 compiles the kernels with no GPU visible).")
        elif torch.cuda.is_available():
            self.build, self.reason = True, f"{torch.cuda.device_count()} GPU(s) visible"
        elif had_cuda:
            self.build = True
            self.reason = ("no GPU is visible, but the previous build in this tree had them "
                           "(posext/_C.build.json); POSEXT_SKIP_CUDA=1 builds CPU-only")
            self.arch_list = self.arch_list or previous.get("torch_cuda_arch_list")
        else:
            self.reason = ("no GPU is visible (torch.cuda.is_available() is False); "
                           "POSEXT_FORCE_CUDA=1 builds them anyway")
        if self.build and not self.arch_list and not torch.cuda.is_available():
            self.arch_list = DEFAULT_ARCH_LIST  # torch would take the visible GPUs' arches: there are none
        self.lineinfo = self.build and _flag("POSEXT_CUDA_LINEINFO")

    def summary(self):
        if not self.build:
            return f"CPU kernels only ({len(CPP_SOURCES)} C++ files); CUDA kernels skipped: {self.reason}"
        return (f"CPU kernels ({len(CPP_SOURCES)} C++ files) and CUDA kernels "
                f"({len(CUDA_SOURCES)} .cu files, "
                f"TORCH_CUDA_ARCH_LIST={self.arch_list or 'the visible GPUs'}, "
                f"-lineinfo {'on' if self.lineinfo else 'off'}): {self.reason}")


def _wheel_cuda_includes():
    """cuBLAS/cuSPARSE headers shipped inside the nvidia-* wheels (torch's CUDA headers include them)."""
    try:
        import nvidia
    except ImportError:
        return []
    found = []
    for base in nvidia.__path__:
        found += [d for d in glob.glob(os.path.join(base, "*", "include")) if os.path.isdir(d)]
    return sorted(set(found))


def extensions(plan):
    cxx = ["-O3"]  # the C++ standard comes from torch (C++17 before 2.10, C++20 after)
    if not _flag("POSEXT_DEBUG_INFO"):
        # Python's CFLAGS usually carry -g: debug info for torch's templates roughly doubles each object's
        # compile time.
        cxx.append("-g0")
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc")])
    if sys.platform.startswith("linux"):
        # at::parallel_for is header code: without OpenMP here it silently runs on one thread.
        cxx.append("-fopenmp")
        kwargs["extra_link_args"] = ["-fopenmp"]
    if plan.build:
        nvcc = ["-O3", "--expt-relaxed-constexpr"] + (["-lineinfo"] if plan.lineinfo else [])
        kwargs["include_dirs"] += _wheel_cuda_includes()
        return [cpp_extension.CUDAExtension(
            "posext._C", CPP_SOURCES + CUDA_SOURCES, define_macros=[("POSEXT_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)]
    return [cpp_extension.CppExtension("posext._C", CPP_SOURCES, extra_compile_args={"cxx": cxx}, **kwargs)]


class BuildExtension(cpp_extension.BuildExtension):
    """torch's ninja build, plus: a lasting object folder for in-place builds, a log line saying what is
    built, and the build record beside an in-place extension."""

    plan = None  # the CudaPlan the extensions were made for

    def finalize_options(self):
        super().finalize_options()
        if self.inplace:  # also set for `pip install -e .` (setuptools' editable mode)
            # pip's editable builds otherwise compile in a fresh temporary folder: every file, every time.
            # This is the folder `setup.py build_ext --inplace` uses: both share ninja's incremental state.
            tag = f"{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
            self.build_temp = os.path.join(ROOT, "build", f"temp.{tag}")

    def run(self):
        plan = self.plan
        if plan.error:
            raise SystemExit(f"posext build: {plan.error}")
        if plan.build and plan.arch_list:
            os.environ["TORCH_CUDA_ARCH_LIST"] = plan.arch_list  # read by torch when it writes nvcc's flags
        print(f"posext build: posext._C with {plan.summary()}", flush=True)
        super().run()
        if self.inplace:
            record = {"cuda_kernels": plan.build,
                      "torch_cuda_arch_list": plan.arch_list if plan.build else None,
                      "cuda_lineinfo": plan.lineinfo, "torch": torch.__version__}
            with open(os.path.join(ROOT, "posext", "_C.build.json"), "w") as f:
                json.dump(record, f, indent=1)
                f.write("\n")


if __name__ == "__main__":  # as under pip and `python -m build`: setuptools runs this file as __main__
    PLAN = CudaPlan(previous_build())
    BuildExtension.plan = PLAN
    setup(
        packages=find_packages(include=["posext", "posext.*"]),
        ext_modules=extensions(PLAN),
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    )
