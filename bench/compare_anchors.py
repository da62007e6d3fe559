#!/usr/bin/env python3
"""Side-by-side comparison of resblocks' MLP-block benchmarks with the PyTorch and dlib anchors.

Runs, in one sitting: resblocks_bench (BM_Mlp*), the PyTorch anchor (blocks_torch.py THREADS mlp)
and the dlib anchor (blocks_dlib.cpp, compiled on first use), then prints a Markdown table of
train-step times and ratios. The machine is shared and noisy: only ratios from one run mean much.

Usage: bench/compare_anchors.py BUILD_DIR [--anchors DIR] [--threads 2] [--repetitions 3]
  BUILD_DIR  a Release build with resblocks_bench (e.g. `cmake --preset dev && cmake --build --preset dev`)
  --anchors  the anchors folder (default: ../shared/anchors beside the repository)
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


def run(cmd, env=None):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def resblocks_times(build, reps, threads):
    """Best (minimum) real time of `reps` interleaved repetitions, in µs: noise on a shared machine
    only ever adds time, so the minimum is the steadiest estimate, Block and Body alike."""
    exe = os.path.join(build, "bench", "resblocks_bench")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run([exe, "--benchmark_filter=BM_Mlp", "--benchmark_format=json", f"--benchmark_repetitions={reps}",
               "--benchmark_enable_random_interleaving=true"], env)
    times = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        m = re.match(r"(BM_\w+)/(\d+)/(\d+)", b["run_name"])
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
        key = (m.group(1), int(m.group(2)), int(m.group(3)))
        times[key] = min(times.get(key, float("inf")), b["real_time"] * scale)
    return times


def anchor_times(text):
    times = {}
    for line in text.splitlines():
        m = re.match(r"mlp d=(\d+) n=(\d+): train_step ([\d.]+) us .*infer ([\d.]+) us", line)
        if m:
            times[(int(m.group(1)), int(m.group(2)))] = (float(m.group(3)), float(m.group(4)))
    return times


def best_of(a, b):
    return {k: tuple(min(x, y) for x, y in zip(a[k], b.get(k, a[k]))) for k in a}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--anchors", default=os.path.join(here, "..", "..", "shared", "anchors"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=3)
    args = ap.parse_args()
    anchors = os.path.abspath(args.anchors)
    peer_env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    if "OPENBLAS_CORETYPE" not in peer_env and "avx512f" in open("/proc/cpuinfo").read():
        peer_env["OPENBLAS_CORETYPE"] = "SkylakeX"
    print("peers run with OPENBLAS_CORETYPE=" + peer_env.get("OPENBLAS_CORETYPE", "(auto)"), file=sys.stderr)

    ours = resblocks_times(args.build, args.repetitions, args.threads)
    torch_cmd = ["/usr/bin/python3", os.path.join(anchors, "blocks_torch.py"), str(args.threads), "mlp"]
    torch = anchor_times(run(torch_cmd, peer_env))
    dlib_exe = os.path.join(args.build, "blocks_dlib")
    if not os.path.exists(dlib_exe):
        libs = run(["pkg-config", "--libs", "dlib-1"]).split()
        run(["g++", "-O3", "-march=native", "-DNDEBUG", os.path.join(anchors, "blocks_dlib.cpp"), "-o", dlib_exe] + libs)
    dlib = anchor_times(run([dlib_exe], peer_env))
    ours2 = resblocks_times(args.build, args.repetitions, args.threads)  # again, after the peers: drift check
    # The peers run twice as well, and keep their better time: everyone gets the same benefit of the doubt.
    torch = best_of(torch, anchor_times(run(torch_cmd, peer_env)))
    dlib = best_of(dlib, anchor_times(run([dlib_exe], peer_env)))

    print(f"\nMLP block train step (forward + backward), {args.threads} threads, times in µs "
          f"(resblocks: best of {args.repetitions} interleaved repetitions, in each of two runs; peers: better of two runs of their scripts); "
          "ratio > 1: resblocks faster\n")
    print("| d/n | Block | Body | skip cost | Block (2nd run) | PyTorch | dlib | vs PyTorch | vs dlib | GFLOP/s | % of 231 peak | Infer | PyTorch infer |")
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
              f"{t / best:.2f}x | {dl / best:.2f}x | {gflops:.0f} | {100 * gflops / 231:.0f}% | {inf:.1f} | {ti:.1f} |")


if __name__ == "__main__":
    main()
