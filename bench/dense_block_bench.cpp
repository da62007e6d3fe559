// DenseNet-BC block, BatchNorm in training mode: c0 input channels, growth rate k, L layers,
// hw×hw images, batch n (the PyTorch anchor's `dense` case in the anchors' blocks_torch.py, ../shared/anchors beside
// the checkout).
//   BM_DenseBlockTrain/c0/k/L/hw/n  one zero_grad + forward + backward; GFLOP/s counts the
//                                   convolutions as the anchor does, 3·Σ_i 2·hw²·n·((c0 + i·k)·4k + 4k·k·9)
#include <resblocks/blocks/dense_block.hpp>
#include <resblocks/core/random.hpp>

#include <benchmark/benchmark.h>

#include "timed_steps.hpp"

#include <array>
#include <cstdio>
#include <string>

using namespace resblocks;
using resblocks_bench::time_steps;

namespace {
namespace dense_block_bench {  // its own names: resblocks_bench can build as one translation unit

double dense_flops(Index c0, Index k, Index layers, Index hw, Index n) {
  double f = 0;
  for (Index i = 0; i < layers; ++i)
    f += 2.0 * double(hw * hw * n) * (double(c0 + i * k) * double(4 * k) + double(4 * k) * double(k) * 9.0);
  return 3.0 * f;
}

Eigen::MatrixXf random_images(Index c, Index hw, Index n, std::uint64_t seed) {
  Generator g(seed);
  Eigen::MatrixXf x(c, hw * hw * n);
  fill_uniform(x, 1.0, g);
  return x;
}

void BM_DenseBlockTrain(benchmark::State& state, Index c0, Index k, Index layers, Index hw, Index n) {
  DenseBlock<float> block(c0, k, layers);
  block.set_image_size({hw, hw});
  const Eigen::MatrixXf x = random_images(c0, hw, n, 1), dy = random_images(c0 + layers * k, hw, n, 2);
  time_steps(state, [&] {
    block.zero_grad();
    benchmark::DoNotOptimize(block.forward(x).data());
    benchmark::DoNotOptimize(block.backward(dy).data());
  });
  state.counters["GFLOP/s"] =
      benchmark::Counter(dense_flops(c0, k, layers, hw, n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// "base/c0/k/L/hw/n" (snprintf: GCC 12 warns falsely, -Wrestrict, on chained std::string + at -O3).
std::string bench_name(const char* base, Index c0, Index k, Index layers, Index hw, Index n) {
  char buffer[128];
  std::snprintf(buffer, sizeof buffer, "%s/%ld/%ld/%ld/%ld/%ld", base, long(c0), long(k), long(layers), long(hw),
                long(n));
  return buffer;
}

const bool registered = [] {
  for (auto [c0, k, layers, hw, n] : {std::array<Index, 5>{32, 12, 6, 16, 32}}) {
    benchmark::RegisterBenchmark(bench_name("BM_DenseBlockTrain", c0, k, layers, hw, n).c_str(), BM_DenseBlockTrain, c0,
                                 k, layers, hw, n)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace dense_block_bench
}  // namespace
