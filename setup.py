"""Build posext._C: CPU kernels always, CUDA kernels when a toolkit and a CUDA torch are present.

Environment switches:
  POSEXT_FORCE_CUDA=1  build the CUDA kernels even with no GPU visible (CI does this).
  POSEXT_SKIP_CUDA=1   never build them (quick local iterations).
  TORCH_CUDA_ARCH_LIST is respected; when CUDA is forced without a GPU it defaults to "8.0;9.0".
"""
import glob
import os
import sys

import torch
from setuptools import find_packages, setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _build_cuda():
    if _flag("POSEXT_SKIP_CUDA"):
        return False
    have_toolkit = cpp_extension.CUDA_HOME is not None and torch.version.cuda is not None
    if _flag("POSEXT_FORCE_CUDA"):
        if not have_toolkit:
            raise RuntimeError(
                "POSEXT_FORCE_CUDA=1 but no CUDA toolkit (CUDA_HOME) or torch is a CPU build "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={cpp_extension.CUDA_HOME})")
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        return True
    return have_toolkit and torch.cuda.is_available()


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


def extensions():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx = ["-O3"]  # the C++ standard comes from torch (C++17 before 2.10, C++20 after)
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc")])
    if sys.platform.startswith("linux"):
        # at::parallel_for is header code: without OpenMP here it silently runs on one thread.
        cxx.append("-fopenmp")
        kwargs["extra_link_args"] = ["-fopenmp"]
    if _build_cuda():
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        kwargs["include_dirs"] += _wheel_cuda_includes()
        return [cpp_extension.CUDAExtension(
            "posext._C", sources, define_macros=[("POSEXT_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)]
    return [cpp_extension.CppExtension("posext._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)]


setup(
    packages=find_packages(include=["posext", "posext.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
