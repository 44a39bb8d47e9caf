#pragma once
// POSEXT_HD marks the index/weight math that CPU and CUDA kernels share, so both compute one formula.
#if defined(__CUDACC__)
#define POSEXT_HD __host__ __device__ __forceinline__
#else
#define POSEXT_HD inline
#endif
