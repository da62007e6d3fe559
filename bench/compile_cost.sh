#!/usr/bin/env bash
# The build cost a user pays: CPU seconds and peak memory of one `g++ -c` of the main example and the
# quick start, in the header-only and the compiled-kernels mode, beside the floor (<Eigen/Dense> alone)
# and dlib's ResNet-20 trainer when libdlib-dev is installed. Run from anywhere:
#   bench/compile_cost.sh            # every row
#   CXX=clang++ bench/compile_cost.sh
# Prints a Markdown table (README, "Build cost"). Timings are CPU time (user + system), so a busy
# machine changes them less than wall time; run it on a quiet one all the same.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cxx="${CXX:-g++}"
eigen="$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
base=(-std=gnu++20 -fopenmp -DNDEBUG -I"$root/include" -I"$root/examples" $eigen)

# measure LABEL FLAGS... -- SOURCE: one compile, prints a table row.
measure() {
  local label="$1"; shift
  local flags=() source
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  source="$2"
  /usr/bin/time -f "%U %S %M" -o "$work/time" "$cxx" "${base[@]}" "${flags[@]}" -c "$source" -o "$work/out.o"
  read -r user sys rss < "$work/time"
  printf '| %s | `%s` | %.1f s | %d MB |\n' "$label" "${flags[*]}" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
    $((rss / 1024))
}

printf '| translation unit | flags | CPU time | peak memory |\n|---|---|---|---|\n'
measure "examples/fashion_mnist.cpp, header-only" -O2 -- "$root/examples/fashion_mnist.cpp"
measure "examples/fashion_mnist.cpp, compiled kernels" -O2 -DRESBLOCKS_COMPILED_KERNELS -- "$root/examples/fashion_mnist.cpp"
measure "examples/fashion_mnist.cpp, header-only" -O3 -march=native -- "$root/examples/fashion_mnist.cpp"
measure "examples/fashion_mnist.cpp, compiled kernels" -O3 -march=native -DRESBLOCKS_COMPILED_KERNELS -- "$root/examples/fashion_mnist.cpp"
measure "examples/quick_start.cpp, header-only" -O2 -- "$root/examples/quick_start.cpp"
total_user=0
for src in gemm conv2d_float conv2d_double layers; do
  /usr/bin/time -f "%U %S %M" -o "$work/time" "$cxx" "${base[@]}" -O2 -DRESBLOCKS_COMPILED_KERNELS \
    -c "$root/src/$src.cpp" -o "$work/$src.o"
  read -r user sys rss < "$work/time"
  total_user="$(awk -v t="$total_user" -v u="$user" -v s="$sys" 'BEGIN { print t + u + s }')"
done
printf '| the kernels library (4 files in src/, once per build) | `-O2` | %.1f s | |\n' "$total_user"
if pkg-config --exists dlib-1 2>/dev/null && [ -f "$root/../shared/anchors/resnet20_dlib.cpp" ]; then
  measure "dlib 19.24 ResNet-20 trainer (../shared/anchors/resnet20_dlib.cpp)" -O2 -- "$root/../shared/anchors/resnet20_dlib.cpp"
fi
printf '#include <Eigen/Dense>\nint main() {}\n' > "$work/floor.cpp"
measure "\`#include <Eigen/Dense>\` alone (floor)" -O2 -- "$work/floor.cpp"
