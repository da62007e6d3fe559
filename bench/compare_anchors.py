#!/usr/bin/env python3
"""Side-by-side comparison of resblocks' block benchmarks with the PyTorch and dlib anchors.

Runs, in one sitting: resblocks_bench (BM_Mlp* or BM_BasicBlock*), the PyTorch anchor
(blocks_torch.py THREADS mlp|conv) and the dlib anchor (blocks_dlib.cpp, compiled on first use), then
prints a Markdown table of train-step times and ratios. The machine is shared and noisy: only ratios
from one run mean much.

Usage: bench/compare_anchors.py BUILD_DIR [--kind mlp|conv] [--anchors DIR] [--threads 2] [--repetitions 3]
                                [--peak GFLOPS]
  BUILD_DIR  a Release build with resblocks_bench (e.g. `cmake --preset dev && cmake --build --preset dev`)
  --anchors  the anchors folder (default: ../shared/anchors beside the repository)
  --peak     the FMA peak of --threads cores in GFLOP/s, for the "% of peak" column (default: measured in the
             same sitting by the anchors' peak_fma.cpp, compiled on first use: its widest vector unit)
Needs: python3-torch (run the anchor with /usr/bin/python3), libdlib-dev, libopenblas0-openmp.

The peers get their best BLAS kernel: Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and
falls back to its SSE3 "Prescott" kernels (about 56 GFLOP/s instead of 190 on 512^3 here), so unless
OPENBLAS_CORETYPE is already set, the peers run with OPENBLAS_CORETYPE=SkylakeX on AVX-512 machines.
"""
import argparse
import json
import os
import re
import subprocess
import sys

CONFIGS = [(32, 1), (64, 32), (256, 256), (512, 256), (1024, 128)]
CONV_CONFIGS = [(16, 28, 32), (64, 16, 32), (64, 56, 8)]


def run(cmd, env=None):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def resblocks_times(build, reps, threads, pattern="BM_Mlp"):
    """Best (minimum) real time of `reps` interleaved repetitions, in µs: noise on a shared machine
    only ever adds time, so the minimum is the steadiest estimate, Block and Body alike.
    Keys: (benchmark, size, size[, size])."""
    exe = os.path.join(build, "bench", "resblocks_bench")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run([exe, f"--benchmark_filter={pattern}", "--benchmark_format=json", f"--benchmark_repetitions={reps}",
               "--benchmark_enable_random_interleaving=true"], env)
    times = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        parts = b["run_name"].split("/")
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
        key = (parts[0],) + tuple(int(p) for p in parts[1:] if p.isdigit())
        times[key] = min(times.get(key, float("inf")), b["real_time"] * scale)
    return times


def anchor_times(text, kind="mlp"):
    """{sizes: (train µs, infer µs)} from an anchor's output lines."""
    times = {}
    pattern = (r"mlp d=(\d+) n=(\d+)" if kind == "mlp" else r"conv c=(\d+) hw=(\d+) n=(\d+)") + \
        r": train_step ([\d.]+) us .*infer ([\d.]+) us"
    for line in text.splitlines():
        m = re.match(pattern, line)
        if m:
            g = m.groups()
            times[tuple(int(v) for v in g[:-2])] = (float(g[-2]), float(g[-1]))
    return times


def measured_peak(build, anchors, threads):
    """FP32 FMA peak of `threads` cores (1 or 2), GFLOP/s, from peak_fma.cpp: the best of two runs of its
    widest vector unit (lines "avx512: 1 core X GFLOP/s, 2 cores Y GFLOP/s")."""
    exe = os.path.join(build, "peak_fma")
    if not os.path.exists(exe):
        run(["g++", "-O3", "-march=native", "-pthread", os.path.join(anchors, "peak_fma.cpp"), "-o", exe])
    best = {}
    for _ in range(2):
        for line in run([exe]).splitlines():
            m = re.match(r"(\w+): 1 core ([\d.]+) GFLOP/s, 2 cores ([\d.]+) GFLOP/s", line)
            if m:
                value = float(m.group(2 if threads == 1 else 3))
                best[m.group(1)] = max(best.get(m.group(1), 0.0), value)
    if not best:
        sys.exit("compare_anchors.py: peak_fma printed no peak; pass --peak")
    return max(best.values())


def best_of(a, b):
    return {k: tuple(min(x, y) for x, y in zip(a[k], b.get(k, a[k]))) for k in a}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--anchors", default=os.path.join(here, "..", "..", "shared", "anchors"))
    ap.add_argument("--kind", choices=["mlp", "conv"], default="mlp")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--peak", type=float, default=None)
    args = ap.parse_args()
    anchors = os.path.abspath(args.anchors)
    peer_env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    if "OPENBLAS_CORETYPE" not in peer_env and "avx512f" in open("/proc/cpuinfo").read():
        peer_env["OPENBLAS_CORETYPE"] = "SkylakeX"
    print("peers run with OPENBLAS_CORETYPE=" + peer_env.get("OPENBLAS_CORETYPE", "(auto)"), file=sys.stderr)

    if args.peak is None:
        if args.threads > 2:
            sys.exit("compare_anchors.py: peak_fma measures 1 or 2 cores; pass --peak for more threads")
        args.peak = measured_peak(args.build, anchors, args.threads)
    print(f"FMA peak on {args.threads} thread(s): {args.peak:.0f} GFLOP/s", file=sys.stderr)

    pattern = "BM_Mlp" if args.kind == "mlp" else "BM_BasicBlock"
    ours = resblocks_times(args.build, args.repetitions, args.threads, pattern)
    torch_cmd = ["/usr/bin/python3", os.path.join(anchors, "blocks_torch.py"), str(args.threads), args.kind]
    torch = anchor_times(run(torch_cmd, peer_env), args.kind)
    dlib_exe = os.path.join(args.build, "blocks_dlib")
    if not os.path.exists(dlib_exe):
        libs = run(["pkg-config", "--libs", "dlib-1"]).split()
        run(["g++", "-O3", "-march=native", "-DNDEBUG", os.path.join(anchors, "blocks_dlib.cpp"), "-o", dlib_exe] + libs)
    dlib = anchor_times(run([dlib_exe], peer_env), args.kind)
    ours2 = resblocks_times(args.build, args.repetitions, args.threads, pattern)  # again, after the peers: drift check
    # The peers run twice as well, and keep their better time: everyone gets the same benefit of the doubt.
    torch = best_of(torch, anchor_times(run(torch_cmd, peer_env), args.kind))
    dlib = best_of(dlib, anchor_times(run([dlib_exe], peer_env), args.kind))
    if args.kind == "conv":
        conv_table(args, ours, ours2, torch, dlib)
        return

    print(f"\nMLP block train step (forward + backward), {args.threads} threads, times in µs "
          f"(resblocks: best of {args.repetitions} interleaved repetitions, in each of two runs; peers: better of two runs of their scripts); "
          f"ratio > 1: resblocks faster; % of the {args.peak:.0f} GFLOP/s FMA peak of {args.threads} cores\n")
    print("| d/n | Block | Body | skip cost | Block (2nd run) | PyTorch | dlib | vs PyTorch | vs dlib | GFLOP/s | % of peak | Infer | PyTorch infer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for d, n in CONFIGS:
        blk = ours[("BM_MlpBlockTrain", d, n)]
        body = ours[("BM_MlpBodyTrain", d, n)]
        blk2 = ours2[("BM_MlpBlockTrain", d, n)]
        best = min(blk, blk2)
        inf = ours[("BM_MlpBlockInfer", d, n)]
        t, ti = torch.get((d, n), (float("nan"), float("nan")))
        dl = dlib.get((d, n), (float("nan"),))[0]
        gflops = 12.0 * d * d * n / (best * 1e-6) / 1e9
        print(f"| {d}/{n} | {blk:.1f} | {body:.1f} | {100 * (blk / body - 1):+.1f}% | {blk2:.1f} | {t:.1f} | {dl:.1f} | "
              f"{t / best:.2f}x | {dl / best:.2f}x | {gflops:.0f} | {100 * gflops / args.peak:.0f}% | {inf:.1f} | {ti:.1f} |")


def conv_table(args, ours, ours2, torch, dlib):
    print(f"\nResNet basic block (v1, identity skip, BN in training mode) train step, {args.threads} threads, times in ms "
          f"(resblocks: best of {args.repetitions} interleaved repetitions in each of two runs; peers: better of two runs); "
          f"ratio > 1: resblocks faster; GFLOP/s = 6·2·c²·9·hw²·n per step, % of the {args.peak:.0f} GFLOP/s FMA peak of "
          f"{args.threads} cores\n")
    print("| c/hw/n | Train | Train (2nd run) | PyTorch | dlib | vs PyTorch | vs dlib | GFLOP/s | % of peak | Infer | PyTorch infer | dlib infer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c, hw, n in CONV_CONFIGS:
        tr, tr2 = ours[("BM_BasicBlockTrain", c, hw, n)] / 1e3, ours2[("BM_BasicBlockTrain", c, hw, n)] / 1e3
        best = min(tr, tr2)
        inf = min(ours[("BM_BasicBlockInfer", c, hw, n)], ours2[("BM_BasicBlockInfer", c, hw, n)]) / 1e3
        t, ti = (v / 1e3 for v in torch.get((c, hw, n), (float("nan"), float("nan"))))
        dl, dli = (v / 1e3 for v in dlib.get((c, hw, n), (float("nan"), float("nan"))))
        gflops = 12.0 * c * c * 9 * hw * hw * n / (best * 1e-3) / 1e9
        print(f"| {c}/{hw}/{n} | {tr:.2f} | {tr2:.2f} | {t:.2f} | {dl:.2f} | {t / best:.2f}x | {dl / best:.2f}x | "
              f"{gflops:.0f} | {100 * gflops / args.peak:.0f}% | {inf:.2f} | {ti:.2f} | {dli:.2f} |")


if __name__ == "__main__":
    main()
