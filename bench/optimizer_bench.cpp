// The optimizers' update alone, on the parameters of the residual MLP block of mlp_block_bench.cpp
// (two d × d Linear layers): one step of
//   BM_SgdStep/d    Sgd, Nesterov momentum and weight decay (reads p, g, the momentum; writes p, momentum)
//   BM_AdamWStep/d  AdamW (reads p, g, m, v; writes p, m, v)
//   BM_ClipGradNorm/d  clip_grad_norm to half the gradients' norm (reads g twice, writes it once)
// Memory-bound: large parameters run in ranges on the threads (OptimizerState::update, detail::lane_sum).
#include <resblocks/resblocks.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string_view>

#include "timed_steps.hpp"

using namespace resblocks;
using resblocks_bench::time_steps;

namespace {
namespace optimizer_bench {  // its own names: resblocks_bench can build as one translation unit

using Body = Sequential<Linear<float>, ReLU<float>, Linear<float>>;

Residual<Body> make_block(Index d) {
  return Residual<Body>(Body(Linear<float>(d, d), ReLU<float>(), Linear<float>(d, d)));
}

/// Bytes the step reads and writes: `streams` arrays of the block's parameter count.
void set_bytes(benchmark::State& state, Residual<Body>& net, int streams) {
  Index values = 0;
  net.for_each_parameter([&](std::string_view, const auto& value, const auto&) { values += value.size(); });
  state.SetBytesProcessed(std::int64_t(state.iterations()) * streams * values * std::int64_t(sizeof(float)));
}

void BM_SgdStep(benchmark::State& state) {
  Residual<Body> net = make_block(state.range(0));
  Sgd opt(net, {.lr = 0.01, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
  time_steps(state, [&] { opt.step(net); });
  set_bytes(state, net, 5);
}

void BM_AdamWStep(benchmark::State& state) {
  Residual<Body> net = make_block(state.range(0));
  AdamW opt(net);
  time_steps(state, [&] { opt.step(net); });
  set_bytes(state, net, 7);
}

void BM_ClipGradNorm(benchmark::State& state) {
  Residual<Body> net = make_block(state.range(0));
  Generator g(5);
  net.for_each_parameter([&](std::string_view, const auto&, auto& grad) { fill_uniform(grad, 1.0, g); });
  // Each call scales by 1/2: the gradients stay finite for the whole run.
  time_steps(state, [&] { benchmark::DoNotOptimize(clip_grad_norm(net, 0.5 * clip_grad_norm(net, 1e30))); });
  set_bytes(state, net, 5);
}

BENCHMARK(BM_SgdStep)->Arg(256)->Arg(1024)->UseRealTime();
BENCHMARK(BM_AdamWStep)->Arg(256)->Arg(1024)->UseRealTime();
BENCHMARK(BM_ClipGradNorm)->Arg(256)->Arg(1024)->UseRealTime();

}  // namespace optimizer_bench
}  // namespace
