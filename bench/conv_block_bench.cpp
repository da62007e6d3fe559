// ResNet v1 basic block, identity skip, BN in training mode: c channels, hw×hw images, batch n.
//   BM_BasicBlockTrain/c/hw/n  one zero_grad + forward + backward (6·2·c²·9·hw²·n FLOP)
//   BM_BasicBlockInfer/c/hw/n  one const inference pass (BN still in training mode: batch statistics,
//                              as the PyTorch anchor's `torch.no_grad()` pass of a train-mode module)
//   BM_BasicBlockInferEval/c/hw/n  inference in evaluation mode (running statistics)
//   BM_Conv3x3Train/c/hw/n     the 3×3 convolution alone, forward + backward (what the block is made of)
#include <resblocks/resblocks.hpp>

#include <benchmark/benchmark.h>

#include "timed_steps.hpp"

#include <array>
#include <cstdio>
#include <string>

using namespace resblocks;
using resblocks_bench::time_steps;

namespace {
namespace conv_block_bench {  // its own names: resblocks_bench can build as one translation unit

void set_counters(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

double conv_flops(Index c, Index hw, Index n) { return 2.0 * double(c) * double(c) * 9.0 * double(hw * hw * n); }

Eigen::MatrixXf random_images(Index c, Index hw, Index n, std::uint64_t seed) {
  Generator g(seed);
  Eigen::MatrixXf x(c, hw * hw * n);
  fill_uniform(x, 1.0, g);
  return x;
}

void BM_BasicBlockTrain(benchmark::State& state, Index c, Index hw, Index n) {
  BasicBlock<float> block(c, c);
  block.set_image_size({hw, hw});
  const Eigen::MatrixXf x = random_images(c, hw, n, 1), dy = random_images(c, hw, n, 2);
  time_steps(state, [&] {
    block.zero_grad();
    benchmark::DoNotOptimize(block.forward(x).data());
    benchmark::DoNotOptimize(block.backward(dy).data());
  });
  set_counters(state, 6.0 * conv_flops(c, hw, n));
}

void BM_BasicBlockInfer(benchmark::State& state, Index c, Index hw, Index n, bool eval) {
  BasicBlock<float> block(c, c);
  block.set_image_size({hw, hw});
  block.set_training(!eval);
  const Eigen::MatrixXf x = random_images(c, hw, n, 1);
  BasicBlock<float>::Workspace ws;
  time_steps(state, [&] { benchmark::DoNotOptimize(block.infer(x, ws).data()); });
  set_counters(state, 2.0 * conv_flops(c, hw, n));
}

void BM_Conv3x3Train(benchmark::State& state, Index c, Index hw, Index n) {
  Conv2d<float> conv(c, c, 3, {.padding = 1, .bias = false});
  conv.set_image_size({hw, hw});
  const Eigen::MatrixXf x = random_images(c, hw, n, 1), dy = random_images(c, hw, n, 2);
  time_steps(state, [&] {
    conv.zero_grad();
    benchmark::DoNotOptimize(conv.forward(x).data());
    benchmark::DoNotOptimize(conv.backward(dy).data());
  });
  set_counters(state, 3.0 * conv_flops(c, hw, n));
}

// "base/c/hw/n" (snprintf: GCC 12 warns falsely, -Wrestrict, on chained std::string + at -O3).
std::string bench_name(const char* base, Index c, Index hw, Index n) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "%s/%ld/%ld/%ld", base, long(c), long(hw), long(n));
  return buffer;
}

const bool registered = [] {
  for (auto [c, hw, n] : {std::array<Index, 3>{16, 28, 32}, {64, 16, 32}, {64, 56, 8}}) {
    benchmark::RegisterBenchmark(bench_name("BM_BasicBlockTrain", c, hw, n).c_str(), BM_BasicBlockTrain, c, hw, n)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(bench_name("BM_BasicBlockInfer", c, hw, n).c_str(), BM_BasicBlockInfer, c, hw, n,
                                 false)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(bench_name("BM_BasicBlockInferEval", c, hw, n).c_str(), BM_BasicBlockInfer, c, hw, n,
                                 true)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(bench_name("BM_Conv3x3Train", c, hw, n).c_str(), BM_Conv3x3Train, c, hw, n)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace conv_block_bench
}  // namespace
