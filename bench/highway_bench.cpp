// Highway block y = T ⊙ relu(W_H x + b_H) + (1 − T) ⊙ x, T = σ(W_T x + b_T), width d, batch n (the
// PyTorch anchor's `Highway`, shared/anchors/blocks_torch.py), and LayerNorm on its own.
//   BM_HighwayTrain/d/n    one zero_grad + forward + backward of Highway<Sequential<Linear, ReLU>>
//   BM_HighwayInfer/d/n    one const inference pass
//   BM_LayerNormTrain/d/n  one zero_grad + forward + backward of LayerNorm(d) on n columns
//   BM_LayerNormInfer/d/n  one const inference pass of it
// Dynamic feature counts, float.
#include <resblocks/blocks/highway.hpp>
#include <resblocks/blocks/sequential.hpp>
#include <resblocks/core/random.hpp>
#include <resblocks/layers/layer_norm.hpp>
#include <resblocks/layers/linear.hpp>
#include <resblocks/layers/relu.hpp>

#include <benchmark/benchmark.h>

#include "timed_steps.hpp"

#include <string>

using namespace resblocks;
using resblocks_bench::time_steps;

namespace {
namespace highway_bench {  // its own names: resblocks_bench can build as one translation unit

using Body = Sequential<Linear<float>, ReLU<float>>;
using Block = Highway<Body>;

Block make_block(Index d) { return Block(Body(Linear<float>(d, d), ReLU<float>())); }

void set_counters(benchmark::State& state, Index d, Index n, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["d"] = static_cast<double>(d);
  state.counters["n"] = static_cast<double>(n);
}

template <class Net>
void train(benchmark::State& state, Net& net, Index d, Index n, double flops) {
  Generator g(1);
  Eigen::MatrixXf x(d, n), dy(d, n);
  fill_uniform(x, 1.0, g);
  fill_uniform(dy, 1.0, g);
  time_steps(state, [&] {
    net.zero_grad();
    benchmark::DoNotOptimize(net.forward(x).data());
    benchmark::DoNotOptimize(net.backward(dy).data());
  });
  set_counters(state, d, n, flops);
}

template <class Net>
void infer(benchmark::State& state, const Net& net, Index d, Index n, double flops) {
  Generator g(2);
  Eigen::MatrixXf x(d, n);
  fill_uniform(x, 1.0, g);
  typename Net::Workspace ws;
  time_steps(state, [&] { benchmark::DoNotOptimize(net.infer(x, ws).data()); });
  set_counters(state, d, n, flops);
}

// FLOPs as the anchor counts them: two d×d GEMMs forward, four backward.
void BM_HighwayTrain(benchmark::State& state, Index d, Index n) {
  Block net = make_block(d);
  train(state, net, d, n, 12.0 * double(d) * double(d) * double(n));
}

void BM_HighwayInfer(benchmark::State& state, Index d, Index n) {
  const Block net = make_block(d);
  infer(state, net, d, n, 4.0 * double(d) * double(d) * double(n));
}

void BM_LayerNormTrain(benchmark::State& state, Index d, Index n) {
  LayerNorm<float> net(d);
  train(state, net, d, n, 0.0);
}

void BM_LayerNormInfer(benchmark::State& state, Index d, Index n) {
  const LayerNorm<float> net(d);
  infer(state, net, d, n, 0.0);
}

const bool registered = [] {
  const auto suffix = [](Index d, Index n) { return "/" + std::to_string(d) + "/" + std::to_string(n); };
  benchmark::RegisterBenchmark(("BM_HighwayTrain" + suffix(256, 256)).c_str(), BM_HighwayTrain, 256, 256)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("BM_HighwayInfer" + suffix(256, 256)).c_str(), BM_HighwayInfer, 256, 256)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("BM_LayerNormTrain" + suffix(256, 1024)).c_str(), BM_LayerNormTrain, 256, 1024)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("BM_LayerNormInfer" + suffix(256, 1024)).c_str(), BM_LayerNormInfer, 256, 1024)
      ->UseRealTime();
  return true;
}();

}  // namespace highway_bench
}  // namespace
