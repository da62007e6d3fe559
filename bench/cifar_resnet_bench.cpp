// One training step of the Fashion-MNIST main job's network: CIFAR-style ResNet-(6n+2), 1×28×28
// inputs, projection shortcuts, batch n — forward, cross-entropy, zero_grad, backward, SGD (Nesterov,
// weight decay), as examples/fashion_mnist.cpp runs it, minus the data loading.
//   BM_CifarResNetTrain/depth/n   PyTorch's twin: ../shared/anchors/fmnist_torch.py (per epoch;
//                                 469 steps of batch 128 per Fashion-MNIST epoch)
//   BM_CifarResNetInfer/depth/n   evaluation-mode inference of a batch
#include <resblocks/resblocks.hpp>

#include <benchmark/benchmark.h>

#include "timed_steps.hpp"

#include <vector>

using namespace resblocks;
using resblocks_bench::time_steps;

namespace {
namespace cifar_resnet_bench {  // its own names: resblocks_bench can build as one translation unit

CifarResNet<float> make_net(Index depth) {
  manual_seed(1);
  return CifarResNet<float>({.depth = depth,
                             .in_channels = 1,
                             .classes = 10,
                             .width = 16,
                             .image = {28, 28},
                             .downsample = ShortcutKind::projection,
                             .input_gradient = false});
}

Eigen::MatrixXf random_images(Index n) {
  Generator g(7);
  Eigen::MatrixXf x(1, 28 * 28 * n);
  fill_uniform(x, 1.0, g);
  return x;
}

void BM_CifarResNetTrain(benchmark::State& state) {
  const Index depth = state.range(0), n = state.range(1);
  CifarResNet<float> net = make_net(depth);
  const Eigen::MatrixXf x = random_images(n);
  std::vector<int> labels(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % 10);
  CrossEntropyLoss<float> loss;
  Sgd opt(net, {.lr = 0.01, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
  time_steps(state, [&] {
    benchmark::DoNotOptimize(loss.forward(net.forward(x), labels));
    net.zero_grad();
    net.backward(loss.backward());
    opt.step(net);
  });
  state.counters["img/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_CifarResNetInfer(benchmark::State& state) {
  const Index depth = state.range(0), n = state.range(1);
  CifarResNet<float> net = make_net(depth);
  net.set_training(false);
  const Eigen::MatrixXf x = random_images(n);
  CifarResNet<float>::Workspace ws;
  time_steps(state, [&] { benchmark::DoNotOptimize(net.infer(x, ws).data()); });
  state.counters["img/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_CifarResNetTrain)->Args({20, 128})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CifarResNetInfer)->Args({20, 250})->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace cifar_resnet_bench
}  // namespace
