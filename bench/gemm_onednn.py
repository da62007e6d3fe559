#!/usr/bin/env python3
"""oneDNN's f32 inner products on BM_Gemm's eight products: how near the FMA peak Intel's own library
gets on this machine (Debian's python3-torch 1.13 carries oneDNN 2.6 and reaches it through torch's
mkldnn ops), measured beside BM_Gemm and bench/gemm_torch.py in one sitting.

    python3 bench/gemm_onednn.py [THREADS ...]   (default: 1 2)

Each product runs on resblocks' own storage (column-major C = op(A)·op(B) is a row-major torch
tensor Cᵀ), as the inner-product pass whose operands those are:
    NN  C = A·B   backward data:    diff_src (n × m) = diff_dst (n × k) · W (k × m)
    TN  C = Aᵀ·B  forward:          dst (n × m) = src (n × k) · Wᵀ,  W (m × k)
    NT  C = A·Bᵀ  backward weights: diff_W (n × m) = diff_dst (k × n)ᵀ · src (k × m)
The forward pass runs on W reordered once into oneDNN's blocked layout (prepacked: the reorder is
not timed), the backward passes on the plain tensors. Times are the primitive's own (oneDNN's
verbose exec_time: no Python, no reorders); GFLOP/s = 2·m·n·k over the median and the best of 40
runs after 10 warm-up runs. Prints one line per product and thread count, in BM_Gemm's names.
"""
import os
import subprocess
import sys

from gemm_torch import PRODUCTS

RUNS, WARMUP = 40, 10


def run_products(threads):
    """The child: every product's passes, each run preceded by a marker line for the parent."""
    import torch

    if not torch.backends.mkldnn.is_available():
        sys.exit("this torch is built without oneDNN (mkldnn): nothing to measure")
    torch.set_num_threads(threads)
    aten = torch.ops.aten
    for op, m, n, k in PRODUCTS:
        if op == "NN":
            dy, w = torch.rand(n, k).to_mkldnn(), torch.rand(k, m)
            run = lambda: aten.mkldnn_linear_backward_input([n, m], dy, w)  # noqa: E731
        elif op == "TN":
            x, w = torch.rand(n, k).to_mkldnn(), torch.rand(m, k).to_mkldnn()
            run = lambda: torch._C._nn.mkldnn_linear(x, w, None)  # noqa: E731
        else:  # NT
            dy, x, w = torch.rand(k, n).to_mkldnn(), torch.rand(k, m).to_mkldnn(), torch.rand(n, m)
            run = lambda: aten.mkldnn_linear_backward_weights(dy, x, w, False)  # noqa: E731
        print(f"product {op} {m} {n} {k}", flush=True)
        for _ in range(WARMUP + RUNS):
            run()
        sys.stdout.flush()


def measure(threads):
    env = dict(os.environ, DNNL_VERBOSE="1", ONEDNN_VERBOSE="1", OMP_NUM_THREADS=str(threads))
    child = subprocess.run([sys.executable, __file__, "--child", str(threads)], env=env, capture_output=True,
                           text=True)
    if child.returncode != 0:
        sys.exit(f"the measuring process failed:\n{child.stderr.strip()}")
    out = child.stdout
    results, current, isa = [], None, "?"
    for line in out.splitlines():
        fields = line.split(",")
        if line.startswith("product "):
            current = line.split()[1:]
            results.append((current, []))
        elif len(fields) > 3 and fields[1] == "info" and fields[2] == "cpu" and fields[3].startswith("isa:"):
            isa = fields[3][4:]
        elif current and len(fields) > 5 and fields[1] == "exec" and fields[3] == "inner_product":
            results[-1][1].append((fields[4], float(fields[-1])))  # (implementation, ms)
    return isa, results


def main():
    if sys.argv[1:2] == ["--child"]:
        run_products(int(sys.argv[2]))
        return
    threads = [int(t) for t in sys.argv[1:]] or [1, 2]
    for t in threads:
        isa, results = measure(t)
        if len(results) != len(PRODUCTS):
            sys.exit(f"oneDNN logged {len(results)} of {len(PRODUCTS)} products: is DNNL_VERBOSE honoured here?")
        if t == threads[0]:
            print(f"oneDNN ISA: {isa}")
        for (op, m, n, k), runs in results:
            if len(runs) < WARMUP + RUNS:
                sys.exit(f"oneDNN ran {len(runs)} inner products for {op} {m} {n} {k}, expected {WARMUP + RUNS}")
            times = sorted(ms for _, ms in runs[WARMUP:])
            flop = 2.0 * int(m) * int(n) * int(k)
            print(f"onednn_Gemm/{op}/{m}/{n}/{k}/{t}  GFLOP/s median {flop / times[len(times) // 2] * 1e-6:6.1f}"
                  f"  best {flop / times[0] * 1e-6:6.1f}  ({runs[-1][0]})")


if __name__ == "__main__":
    main()
