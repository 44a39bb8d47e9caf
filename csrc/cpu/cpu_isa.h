#pragma once
// Extensions are compiled for the baseline x86-64 ISA (SSE2). Hot float loops are built a second time for
// x86-64-v3 (AVX2 + FMA) and the better clone is picked once at load time.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define POSEXT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define POSEXT_CPU_CLONES
#endif
