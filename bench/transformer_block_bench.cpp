// Pre-LN Transformer encoder block (TransformerBlock, float, non-causal, no mask), as the PyTorch anchor's
// nn.TransformerEncoderLayer(d, heads, ff, dropout=0, activation="gelu", norm_first=True, batch_first=True).
//   BM_TransformerBlockTrain/d/heads/ff/seq/batch  one zero_grad + forward + backward
//   BM_TransformerBlockInfer/d/heads/ff/seq/batch  one const inference pass
// FLOP count as the anchor's: 3 · (2·tokens·(4d² + 2d·ff) + 2·2·batch·seq²·d) for training, a third for inference.
#include <resblocks/blocks/transformer_block.hpp>
#include <resblocks/core/random.hpp>

#include <benchmark/benchmark.h>

#include "timed_steps.hpp"

#include <array>
#include <cstdio>
#include <string>

using namespace resblocks;
using resblocks_bench::time_steps;

namespace {
namespace transformer_block_bench {  // its own names: resblocks_bench can build as one translation unit

double forward_flops(Index d, Index ff, Index seq, Index batch) {
  const double tokens = double(seq * batch);
  return 2.0 * tokens * (4.0 * double(d * d) + 2.0 * double(d * ff)) +
         4.0 * double(batch) * double(seq * seq) * double(d);
}

void set_counters(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

Eigen::MatrixXf random_tokens(Index d, Index columns, std::uint64_t seed) {
  Generator g(seed);
  Eigen::MatrixXf x(d, columns);
  fill_uniform(x, 1.0, g);
  return x;
}

void BM_TransformerBlockTrain(benchmark::State& state, Index d, Index heads, Index ff, Index seq, Index batch) {
  TransformerBlock<float> block(d, heads, ff);
  block.set_sequence_length(seq);
  const Eigen::MatrixXf x = random_tokens(d, seq * batch, 1), dy = random_tokens(d, seq * batch, 2);
  time_steps(state, [&] {
    block.zero_grad();
    benchmark::DoNotOptimize(block.forward(x).data());
    benchmark::DoNotOptimize(block.backward(dy).data());
  });
  set_counters(state, 3.0 * forward_flops(d, ff, seq, batch));
}

void BM_TransformerBlockInfer(benchmark::State& state, Index d, Index heads, Index ff, Index seq, Index batch) {
  TransformerBlock<float> block(d, heads, ff);
  block.set_sequence_length(seq);
  const Eigen::MatrixXf x = random_tokens(d, seq * batch, 1);
  TransformerBlock<float>::Workspace ws;
  time_steps(state, [&] { benchmark::DoNotOptimize(block.infer(x, ws).data()); });
  set_counters(state, forward_flops(d, ff, seq, batch));
}

// "base/d/heads/ff/seq/batch" (snprintf: GCC 12 warns falsely, -Wrestrict, on chained std::string + at -O3).
std::string bench_name(const char* base, const std::array<Index, 5>& s) {
  char buffer[128];
  std::snprintf(buffer, sizeof buffer, "%s/%ld/%ld/%ld/%ld/%ld", base, long(s[0]), long(s[1]), long(s[2]), long(s[3]),
                long(s[4]));
  return buffer;
}

const bool registered = [] {
  for (const auto& s : {std::array<Index, 5>{256, 4, 1024, 128, 8}, {64, 4, 256, 32, 16}}) {
    benchmark::RegisterBenchmark(bench_name("BM_TransformerBlockTrain", s).c_str(), BM_TransformerBlockTrain, s[0],
                                 s[1], s[2], s[3], s[4])
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(bench_name("BM_TransformerBlockInfer", s).c_str(), BM_TransformerBlockInfer, s[0],
                                 s[1], s[2], s[3], s[4])
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace transformer_block_bench
}  // namespace
