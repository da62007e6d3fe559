#!/usr/bin/env python3
"""PyTorch's twin of bench/gemm_bench.cpp: the same eight products (C += op(A)·op(B), float), timed
through torch.addmm, so that its BLAS (Debian's python3-torch: OpenBLAS; run with
OPENBLAS_CORETYPE=SkylakeX for its AVX-512 kernels) is measured beside BM_Gemm in one sitting.

    OPENBLAS_CORETYPE=SkylakeX python3 bench/gemm_torch.py [THREADS ...]   (default: 1 2)

Prints one line per product and thread count, in BM_Gemm's names, with GFLOP/s (2·m·n·k per product):
the median and the best of 5 runs of at least 0.4 s each, after 20 warm-up products.
"""
import os
import sys
import time

import torch

# (op, m, n, k): the products of BM_MlpBlockTrain/1024/128 and BM_TransformerBlockTrain/256/4/1024/128/8.
PRODUCTS = [
    ("NN", 1024, 128, 1024),
    ("NT", 1024, 1024, 128),
    ("TN", 1024, 128, 1024),
    ("NN", 768, 1024, 256),
    ("NN", 1024, 1024, 256),
    ("NN", 256, 1024, 1024),
    ("NT", 1024, 256, 1024),
    ("TN", 256, 1024, 1024),
]


def gflops(op, m, n, k):
    # Column-major C (m×n) = op(A) op(B) is row-major Cᵀ (n×m) = op(B)ᵀ op(A)ᵀ: torch sees the
    # transposes of resblocks' column-major operands, stored as resblocks stores them.
    ta, tb = op[0] == "T", op[1] == "T"
    a = torch.rand(m, k) if ta else torch.rand(k, m)  # storage of A (k×m stored m-major when TN)
    b = torch.rand(k, n) if tb else torch.rand(n, k)
    a_t = a.t() if ta else a  # (k×m)ᵀ view as torch's right operand Aᵀ
    b_t = b.t() if tb else b
    c = torch.zeros(n, m)
    for _ in range(20):
        torch.addmm(c, b_t, a_t, out=c)
    rates = []
    for _ in range(5):
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < 0.4:
            torch.addmm(c, b_t, a_t, out=c)
            reps += 1
        rates.append(2e-9 * m * n * k * reps / (time.perf_counter() - start))
    rates.sort()
    return rates[len(rates) // 2], rates[-1]


def loaded_blas():
    """The libblas.so.3 this process mapped (after a product): Debian's torch calls whichever the
    alternatives system points to, the reference BLAS (about 5 GFLOP/s here) unless an OpenBLAS is in."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "blas" in line.lower() and "/" in line}
    except OSError:
        return "unknown"
    return ", ".join(sorted(os.path.realpath(p) for p in paths)) or "none mapped"


def main():
    threads = [int(t) for t in sys.argv[1:]] or [1, 2]
    blas = [w.strip(" ,") for w in torch.__config__.show().split() if w.startswith("BLAS_INFO=")]
    # Debian's torch reports "generic": the libblas.so.3 alternative, OpenBLAS once libopenblas0-openmp is in.
    print(f"torch {torch.__version__}, {blas[0] if blas else 'BLAS_INFO unknown'}, BLAS: {loaded_blas()}")
    if "openblas" not in loaded_blas():
        print("warning: torch is not on OpenBLAS here, so these are not the anchor's numbers: "
              "apt-get install libopenblas0-openmp (and point the libblas.so.3 alternative at it)",
              file=sys.stderr)
    for op, m, n, k in PRODUCTS:
        for t in threads:
            torch.set_num_threads(t)
            median, best = gflops(op, m, n, k)
            print(f"torch_Gemm/{op}/{m}/{n}/{k}/{t}  GFLOP/s median {median:6.1f}  best {best:6.1f}")


if __name__ == "__main__":
    main()
