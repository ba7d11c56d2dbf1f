"""The machine's peak, measured once and cached: FMA GFLOP/s and copy bandwidth GB/s.

A small generated C benchmark, built with kiln's own toolchain flags (so it gets the same
-march=native code generation as the models): 12 independent FMA chains per thread over the widest
vector the CPU has (the FMA latency is hidden, the loop is bound by FMA throughput), and a parallel
copy of two buffers much larger than the last-level cache (bytes read + bytes written, as STREAM
counts a copy). Each figure is the best of a few repetitions: interference from other processes
only ever slows a run down. The FMA peak is measured on one thread and multiplied by the thread
count (FMA units are per core, and one thread finds a free core on a shared machine where a
parallel loop would wait for its slowest thread); the copy runs on every thread, in chunks.

The result is cached as JSON in the kiln cache dir (`peak.json`), one entry per (toolchain, CPU,
threads), so `kiln profile` and `kiln report` measure it once per machine.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass

from ..backend.toolchain import ToolchainError, cache_dir, find_toolchain

PEAK_C = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
typedef float vec __attribute__((vector_size(4 * VW)));
#if defined(__x86_64__)
#define KEEP(a, b, c, d) __asm__ volatile("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d))
#elif defined(__aarch64__)
#define KEEP(a, b, c, d) __asm__ volatile("" : "+w"(a), "+w"(b), "+w"(c), "+w"(d))
#else
#define KEEP(a, b, c, d)
#endif

int kiln_peak_threads(int n) {
#ifdef _OPENMP
  return n > 0 ? n : omp_get_max_threads();
#else
  (void)n; return 1;
#endif
}

/* FLOPs done: `iters` rounds of 12 independent vector FMAs (2 FLOPs per lane) per thread */
double kiln_peak_fma(int64_t iters, float x, int threads) {
  double total = 0;
  #pragma omp parallel num_threads(kiln_peak_threads(threads)) reduction(+:total)
  {
    vec a0 = (vec){0} + 0.f, a1 = (vec){0} + 1.f, a2 = (vec){0} + 2.f, a3 = (vec){0} + 3.f;
    vec a4 = (vec){0} + 4.f, a5 = (vec){0} + 5.f, a6 = (vec){0} + 6.f, a7 = (vec){0} + 7.f;
    vec a8 = (vec){0} + 8.f, a9 = (vec){0} + 9.f, a10 = (vec){0} + 10.f, a11 = (vec){0} + 11.f;
    vec m = (vec){0} + x, s = (vec){0} + 1e-7f;
    for (int64_t i = 0; i < iters; ++i) {
      a0 = a0 * m + s; a1 = a1 * m + s; a2 = a2 * m + s; a3 = a3 * m + s;
      a4 = a4 * m + s; a5 = a5 * m + s; a6 = a6 * m + s; a7 = a7 * m + s;
      a8 = a8 * m + s; a9 = a9 * m + s; a10 = a10 * m + s; a11 = a11 * m + s;
      KEEP(a0, a1, a2, a3); KEEP(a4, a5, a6, a7); KEEP(a8, a9, a10, a11);
    }
    vec t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    total = (double)(t[0] != t[0]) + (double)iters * 12 * VW * 2;
  }
  return total;
}

/* one parallel copy of n floats src -> dst, in chunks handed to whichever thread is free */
void kiln_peak_copy(float* restrict dst, const float* restrict src, int64_t n, int threads) {
  #pragma omp parallel for schedule(dynamic, 1) num_threads(kiln_peak_threads(threads))
  for (int64_t c = 0; c < n; c += 65536) {
    int64_t e = c + 65536 < n ? c + 65536 : n;
    memcpy(dst + c, src + c, (size_t)(e - c) * sizeof(float));
  }
}

void kiln_peak_fill(float* restrict dst, int64_t n, int threads) {
  #pragma omp parallel for schedule(static) num_threads(kiln_peak_threads(threads))
  for (int64_t i = 0; i < n; ++i) dst[i] = (float)(i & 1023);
}
"""

COPY_BYTES = 128 << 20         # each of the two buffers: well past any last-level cache here
FMA_ITERS = 10_000_000
REPEATS = 12


@dataclass(frozen=True)
class Peak:
    gflops: float              # fp32 FMA peak, GFLOP/s
    gbps: float                # copy bandwidth, GB/s (read + write)
    threads: int
    vector_bits: int

    def roof(self, intensity: float) -> float:
        """The roofline: attainable GFLOP/s at `intensity` FLOP/byte."""
        return min(self.gflops, intensity * self.gbps)


def _vector_width() -> int:
    """Floats per vector register: AVX-512 16, AVX2 8, NEON 4, else 4."""
    from ..runtime.artifact import cpu_flags
    flags = cpu_flags()
    if "avx512f" in flags:
        return 16
    if "avx" in flags or "avx2" in flags:
        return 8
    return 4


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _library(vw: int):
    """PEAK_C built with kiln's toolchain flags for `vw`-float vectors, loaded, signatures set."""
    tc = find_toolchain()
    with tempfile.TemporaryDirectory() as d:
        src, lib_path = os.path.join(d, "peak.c"), os.path.join(d, "peak.so")
        with open(src, "w") as f:
            f.write(PEAK_C.replace("VW", str(vw)))
        r = subprocess.run([tc.cc, *tc.flags, "-shared", src, "-o", lib_path], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise ToolchainError(f"the peak benchmark failed to compile:\n{r.stderr[-2000:]}")
        lib = ctypes.CDLL(lib_path)
    lib.kiln_peak_threads.argtypes, lib.kiln_peak_threads.restype = [ctypes.c_int], ctypes.c_int
    fma = lib.kiln_peak_fma
    fma.argtypes, fma.restype = [ctypes.c_int64, ctypes.c_float, ctypes.c_int], ctypes.c_double
    lib.kiln_peak_copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.kiln_peak_fill.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    return lib


def fma_gflops(threads: int, vw: int | None = None, repeats: int = REPEATS) -> float:
    """FMA GFLOP/s with `threads` threads all running at once (best of `repeats`), measured now:
    for a benchmark that reports the peak of its own run (benchmarks/bench_gemm.py)."""
    fma = _library(vw or _vector_width()).kiln_peak_fma
    fma(FMA_ITERS // 10, 0.999999, threads)                  # ramp the clock
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        flops = fma(FMA_ITERS, 0.999999, threads)
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return best


def measure(threads: int | None = None) -> Peak:
    """Run the benchmark now (about a second)."""
    import numpy as np
    vw = _vector_width()
    lib = _library(vw)
    n_threads = int(threads or 0)
    fma = lib.kiln_peak_fma
    copy, fill = lib.kiln_peak_copy, lib.kiln_peak_fill
    gflops = 0.0
    fma(FMA_ITERS // 10, 0.999999, 1)                        # ramp the clock
    for _ in range(REPEATS):
        t = time.perf_counter()
        flops = fma(FMA_ITERS, 0.999999, 1)
        gflops = max(gflops, flops / (time.perf_counter() - t) / 1e9)
    gflops *= lib.kiln_peak_threads(n_threads)
    n = COPY_BYTES // 4
    a, b = np.empty(n, np.float32), np.empty(n, np.float32)
    fill(a.ctypes.data, n, n_threads)
    fill(b.ctypes.data, n, n_threads)
    gbps = 0.0
    for _ in range(REPEATS):
        t = time.perf_counter()
        copy(b.ctypes.data, a.ctypes.data, n, n_threads)
        gbps = max(gbps, 2 * COPY_BYTES / (time.perf_counter() - t) / 1e9)
    return Peak(round(gflops, 1), round(gbps, 1), lib.kiln_peak_threads(n_threads), 32 * vw)


def machine_peak(threads: int | None = None, refresh: bool = False) -> Peak:
    """The cached peak for this machine, toolchain and thread count (measured on first use)."""
    key = f"{find_toolchain().key()}|{_cpu_name()}|threads={threads or 0}"
    path = os.path.join(cache_dir(), "peak.json")
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, ValueError):
        table = {}
    if key in table and not refresh:
        return Peak(**table[key])
    peak = measure(threads)
    table[key] = asdict(peak)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(table, f, indent=1)
    os.replace(tmp, path)
    return peak
