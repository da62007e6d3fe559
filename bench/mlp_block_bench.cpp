// Residual MLP block y = x + W2 relu(W1 x + b1) + b2, width d, batch n.
//   BM_MlpBlockTrain/d/n  one zero_grad + forward + backward of Residual<Sequential<Linear, ReLU, Linear>>
//   BM_MlpBodyTrain/d/n   the same body without the skip (what the skip costs = Block / Body - 1)
//   BM_MlpBlockInfer/d/n  one const inference pass
// Static feature counts for (32, 1) and (64, 32), Dynamic for the rest.
#include <resblocks/resblocks.hpp>

#include <benchmark/benchmark.h>

#include "timed_steps.hpp"

#include <string>

using namespace resblocks;
using resblocks_bench::time_steps;

namespace {
namespace mlp_block_bench {  // its own names: resblocks_bench can build as one translation unit

template <int D>
using Body = Sequential<Linear<float, D, D>, ReLU<float, D>, Linear<float, D, D>>;
template <int D>
using Block = Residual<Body<D>>;

template <int D>
Body<D> make_body(Index d) {
  if constexpr (D == Dynamic)
    return Body<D>(Linear<float>(d, d), ReLU<float>(), Linear<float>(d, d));
  else
    return Body<D>();
}

void set_counters(benchmark::State& state, Index d, Index n, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["d"] = static_cast<double>(d);
  state.counters["n"] = static_cast<double>(n);
}

template <class Net>
void train(benchmark::State& state, Net& net, Index d, Index n) {
  using Input = typename Net::Input;
  Generator g(1);
  Input x(d, n), dy(d, n);
  fill_uniform(x, 1.0, g);
  fill_uniform(dy, 1.0, g);
  time_steps(state, [&] {
    net.zero_grad();
    benchmark::DoNotOptimize(net.forward(x).data());
    benchmark::DoNotOptimize(net.backward(dy).data());
  });
  set_counters(state, d, n, 12.0 * double(d) * double(d) * double(n));
}

template <int D>
void BM_MlpBlockTrain(benchmark::State& state, Index d, Index n) {
  Block<D> net(make_body<D>(d));
  train(state, net, d, n);
}

template <int D>
void BM_MlpBodyTrain(benchmark::State& state, Index d, Index n) {
  Body<D> net = make_body<D>(d);
  train(state, net, d, n);
}

template <int D>
void BM_MlpBlockInfer(benchmark::State& state, Index d, Index n) {
  const Block<D> net(make_body<D>(d));
  typename Block<D>::Input x(d, n);
  Generator g(2);
  fill_uniform(x, 1.0, g);
  typename Block<D>::Workspace ws;
  time_steps(state, [&] { benchmark::DoNotOptimize(net.infer(x, ws).data()); });
  set_counters(state, d, n, 4.0 * double(d) * double(d) * double(n));
}

template <int D>
void register_size(Index d, Index n) {
  const std::string suffix = "/" + std::to_string(d) + "/" + std::to_string(n);
  benchmark::RegisterBenchmark(("BM_MlpBlockTrain" + suffix).c_str(), BM_MlpBlockTrain<D>, d, n)->UseRealTime();
  benchmark::RegisterBenchmark(("BM_MlpBodyTrain" + suffix).c_str(), BM_MlpBodyTrain<D>, d, n)->UseRealTime();
  benchmark::RegisterBenchmark(("BM_MlpBlockInfer" + suffix).c_str(), BM_MlpBlockInfer<D>, d, n)->UseRealTime();
}

const bool registered = [] {
  register_size<32>(32, 1);
  register_size<64>(64, 32);
  register_size<Dynamic>(256, 256);
  register_size<Dynamic>(512, 256);
  register_size<Dynamic>(1024, 128);
  return true;
}();

}  // namespace mlp_block_bench
}  // namespace
