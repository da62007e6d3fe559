#!/usr/bin/env python3
"""Side-by-side comparison of resblocks' MLP-block benchmarks with the PyTorch and dlib anchors.

Runs, in one sitting: resblocks_bench (BM_Mlp*), the PyTorch anchor (blocks_torch.py THREADS mlp)
and the dlib anchor (blocks_dlib.cpp, compiled on first use), then prints a Markdown table of
train-step times and ratios. The machine is shared and noisy: only ratios from one run mean much.

Usage: bench/compare_anchors.py BUILD_DIR [--anchors DIR] [--threads 2] [--repetitions 3]
  BUILD_DIR  a Release build with resblocks_bench (e.g. `cmake --preset dev && cmake --build --preset dev`)
  --anchors  the anchors folder (default: ../shared/anchors beside the repository)
Needs: python3-torch (run the anchor with /usr/bin/python3), libdlib-dev, libopenblas0-openmp.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

CONFIGS = [(32, 1), (64, 32), (256, 256), (512, 256), (1024, 128)]


def run(cmd, env=None):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def resblocks_times(build, reps, threads):
    exe = os.path.join(build, "bench", "resblocks_bench")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run([exe, "--benchmark_filter=BM_Mlp", "--benchmark_format=json",
               f"--benchmark_repetitions={reps}", "--benchmark_report_aggregates_only=true"], env)
    times = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        m = re.match(r"(BM_\w+)/(\d+)/(\d+)", b["run_name"])
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
        times[(m.group(1), int(m.group(2)), int(m.group(3)))] = b["real_time"] * scale  # microseconds
    return times


def anchor_times(text):
    times = {}
    for line in text.splitlines():
        m = re.match(r"mlp d=(\d+) n=(\d+): train_step ([\d.]+) us .*infer ([\d.]+) us", line)
        if m:
            times[(int(m.group(1)), int(m.group(2)))] = (float(m.group(3)), float(m.group(4)))
    return times


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--anchors", default=os.path.join(here, "..", "..", "shared", "anchors"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=3)
    args = ap.parse_args()
    anchors = os.path.abspath(args.anchors)

    ours = resblocks_times(args.build, args.repetitions, args.threads)
    torch = anchor_times(run(["/usr/bin/python3", os.path.join(anchors, "blocks_torch.py"), str(args.threads), "mlp"]))
    dlib_exe = os.path.join(args.build, "blocks_dlib")
    if not os.path.exists(dlib_exe):
        libs = run(["pkg-config", "--libs", "dlib-1"]).split()
        run(["g++", "-O3", "-march=native", "-DNDEBUG", os.path.join(anchors, "blocks_dlib.cpp"), "-o", dlib_exe] + libs)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    dlib = anchor_times(run([dlib_exe], env))
    ours2 = resblocks_times(args.build, args.repetitions, args.threads)  # again, after the peers: drift check

    print(f"\nMLP block train step (forward + backward), {args.threads} threads, times in µs; "
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
