#!/usr/bin/env bash
# Speed beside a co-tenant: one ResNet-20 training step (BM_CifarResNetTrain/20/128, 2 threads) on a
# quiet machine and while two busy loops run in ANOTHER session (setsid: the kernel's autogroup
# scheduling then shares the CPUs between the sessions, as with a compile in another terminal), for
#   pool    resblocks' own thread pool (the default: bounded spin, then sleep)
#   omp     the same code on OpenMP parallel regions (-DRESBLOCKS_OPENMP_REGIONS; libgomp's default
#           wait policy) and, as "omp-passive", with OMP_WAIT_POLICY=passive
#   torch   PyTorch's twin (bench/cifar_resnet_torch.py; Debian's python3-torch), when installed
# and prints each median and the loaded/quiet ratios.
#
#   bench/cotenant.sh [work-dir]      (builds its two benchmark programs there; default /tmp/resblocks-cotenant)
#
# Needs g++, Eigen (pkg-config eigen3) and Google Benchmark (libbenchmark-dev). Takes ~5 minutes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/resblocks-cotenant}"
mkdir -p "$work"
threads=2
reps=7

flags=(-std=c++20 -O3 -march=native -fopenmp -DNDEBUG -I"$root/include" $(pkg-config --cflags eigen3))
libs=(-lbenchmark_main -lbenchmark -lpthread)
if [ ! -x "$work/pool" ] || [ "$root/include" -nt "$work/pool" ]; then
  echo "building the benchmark programs in $work ..." >&2
  g++ "${flags[@]}" "$root/bench/cifar_resnet_bench.cpp" "${libs[@]}" -o "$work/pool" &
  g++ "${flags[@]}" -DRESBLOCKS_OPENMP_REGIONS "$root/bench/cifar_resnet_bench.cpp" "${libs[@]}" -o "$work/omp"
  wait
fi

load_pgid=""
start_load() {  # two busy loops in ONE new session (as `make -j2` in another terminal)
  setsid bash -c 'while :; do :; done & while :; do :; done' </dev/null >/dev/null 2>&1 &
  load_pgid=$!
  sleep 1
}
stop_load() {
  [ -n "$load_pgid" ] || return 0
  kill -- "-$load_pgid" 2>/dev/null || true
  load_pgid=""
}
load_cpu_seconds() {  # CPU time the load has used so far
  ps -o cputimes= -s "$load_pgid" 2>/dev/null | awk '{s += $1} END {print s + 0}'
}
trap stop_load EXIT

# Median step time in ms of one configuration.
ours() {  # program, extra env
  env OMP_NUM_THREADS=$threads "${@:2}" "$work/$1" --benchmark_filter='BM_CifarResNetTrain/20/128' \
    --benchmark_min_warmup_time=1 --benchmark_repetitions=$reps --benchmark_report_aggregates_only=true \
    --benchmark_format=csv 2>/dev/null | awk -F, '/_median"/ {printf "%.1f", $3}'
}
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
torch_ms() {
  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$root/bench/cifar_resnet_torch.py" $threads 2>/dev/null |
    sed 's/.*ms://' | tr ' ' '\n' | grep -E '^[0-9]' | sort -g | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]}'
}

declare -A quiet loaded
measure_all() {  # into the array named $1
  local -n out=$1
  out[pool]=$(ours pool)
  out[omp]=$(ours omp)
  out[omp-passive]=$(ours omp OMP_WAIT_POLICY=passive)
  if [ $have_torch = 1 ]; then out[torch]=$(torch_ms); fi
}

measure_all quiet
start_load
t0=$SECONDS
measure_all loaded
load_used=$(load_cpu_seconds)
wall=$((SECONDS - t0))
stop_load
printf 'the load used %s CPU seconds in the %s s of the loaded measurements (its fair share: %s)\n' \
  "$load_used" "$wall" "$wall" >&2

printf '\n%-12s %12s %12s %14s\n' "engine" "quiet (ms)" "loaded (ms)" "loaded/quiet"
for k in pool omp omp-passive torch; do
  [ -n "${quiet[$k]:-}" ] || continue
  printf '%-12s %12s %12s %14s\n' "$k" "${quiet[$k]}" "${loaded[$k]}" \
    "$(awk -v a="${loaded[$k]}" -v b="${quiet[$k]}" 'BEGIN {printf "%.2fx", a / b}')"
done
if [ -n "${loaded[torch]:-}" ]; then
  printf '\nloaded, PyTorch / resblocks (pool): %s\n' \
    "$(awk -v a="${loaded[torch]}" -v b="${loaded[pool]}" 'BEGIN {printf "%.2fx", a / b}')"
fi
