// No heap allocation in a steady-state training or inference step. This executable replaces
// malloc and friends (glibc) to count every allocation, whoever makes it: Eigen, the standard
// library, OpenMP or resblocks.
#include "support/helpers.hpp"

#include <resblocks/core/thread_pool.hpp>
#include <resblocks/resblocks.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <vector>
// After the other headers: it replaces malloc, which they declare.
#include "support/allocation_counter.hpp"

#if defined(__GLIBC__)

using namespace resblocks;

namespace {
template <class Net>
void train_step(Net& net, const typename Net::Input& x, const typename Net::Output& g) {
  net.zero_grad();
  net.forward(x);
  net.backward(g);
  net.for_each_parameter([](std::string_view, auto& value, const auto& grad) { value -= 1e-3f * grad; });
}

template <class Net>
void require_no_allocation(Net& net, const typename Net::Input& x) {
  // Threads as asked in the measured steps, whatever else runs beside this test (ctest -j2).
  detail::ThreadPool& pool = detail::ThreadPool::instance();
  pool.set_alone_when_preempted(false);
  detail::run_on_threads(num_threads(), [](int, int) {});  // the pool's workers exist (starting one allocates)
  const typename Net::Output g = net.forward(x) * 1e-3f;
  typename Net::Workspace ws;
  {
    // The warm-up (buffers, packing space) runs alone, as it may beside a co-tenant: every thread's part on
    // the calling thread. The workers must then find their parts' scratch sized (part_local).
    const rbtest::PoolAlone scope;
    for (int i = 0; i < 2; ++i) {
      train_step(net, x, g);
      net.infer(x, ws);
    }
  }
  pool.set_alone_when_preempted(false);  // (the scope's end turned the automatic mode back on)
  const long train = allocations_in([&] {
    for (int i = 0; i < 3; ++i) train_step(net, x, g);
  });
  const long infer = allocations_in([&] {
    for (int i = 0; i < 3; ++i) net.infer(x, ws);
  });
  CHECK(train == 0);
  CHECK(infer == 0);
  // The same steps while the pool runs its regions alone again.
  long alone = 0;
  {
    const rbtest::PoolAlone scope;
    alone = allocations_in([&] {
      for (int i = 0; i < 2; ++i) {
        train_step(net, x, g);
        net.infer(x, ws);
      }
    });
  }
  CHECK(alone == 0);
}
}  // namespace

TEST_CASE("allocation counter sees allocations (the check below can fail)", "[allocation]") {
  const long n = allocations_in([] {
    std::vector<int> v(1000);
    Eigen::MatrixXf m(100, 100);
    v[0] = static_cast<int>(m.size());
  });
  REQUIRE(n >= 2);
}

TEST_CASE("no allocation in steady-state steps: static residual MLP (64/32)", "[allocation]") {
  using Block = Residual<Sequential<Linear<float, 64, 64>, ReLU<float, 64>, Linear<float, 64, 64>>>;
  Sequential<Linear<float, 16, 64>, Repeat<Block>, Linear<float, 64, 10>> net(Linear<float, 16, 64>(), Repeat<Block>(3),
                                                                              Linear<float, 64, 10>());
  require_no_allocation(net, rbtest::random_batch<Batch<float, 16>>(16, 32, 101));
}

TEST_CASE("no allocation in steady-state steps: dynamic residual blocks on the threaded GEMM path", "[allocation]") {
  using Body = Sequential<Linear<float>, GELU<float>, Linear<float>>;
  Residual<Body, Projection<float>> net(Body(Linear<float>(256, 384), GELU<float>(), Linear<float>(384, 192)),
                                        Projection<float>(256, 192));
  require_no_allocation(net, rbtest::random_batch<Eigen::MatrixXf>(256, 256, 102));
}

TEST_CASE("no allocation in steady-state steps: tiny block, batch of one", "[allocation]") {
  Residual<Sequential<Linear<float, 32, 32>, ReLU<float, 32>, Linear<float, 32, 32>>> net;
  require_no_allocation(net, rbtest::random_batch<Batch<float, 32>>(32, 1, 103));
}
TEST_CASE("no allocation in steady-state steps: ResNet basic blocks (train and eval mode)", "[allocation][resnet]") {
  // c = 32 on 12x12, batch 8: the convolutions run in two parts side by side (both threads).
  Sequential<BasicBlock<float>, BasicBlock<float>> net(BasicBlock<float>(32, 32), BasicBlock<float>(32, 64, 2));
  net.set_image_size({12, 12});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(32, 8 * 144, 104);
  require_no_allocation(net, x);
  net.set_training(false);
  require_no_allocation(net, x);
}

TEST_CASE("no allocation in steady-state steps: pre-activation bottleneck, CIFAR ResNet-8", "[allocation][resnet]") {
  PreActBottleneck<float> block(16, 8, 2);
  block.set_image_size({9, 9});
  require_no_allocation(block, rbtest::random_batch<Eigen::MatrixXf>(16, 4 * 81, 105));
  CifarResNet<float> cifar({.depth = 8, .in_channels = 1, .image = {12, 12}});
  require_no_allocation(cifar, rbtest::random_batch<Eigen::MatrixXf>(1, 16 * 144, 106));
}

TEST_CASE("no allocation in steady-state steps: Transformer blocks (masks, dropout), attention, Highway, Dropout",
          "[allocation][transformer]") {
  const Index d = 64, length = 16, sequences = 4;
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(d, length * sequences, 108);
  std::vector<unsigned char> mask(static_cast<std::size_t>(length * sequences), 0);
  for (Index t = 12; t < length; ++t) mask[static_cast<std::size_t>(t + length)] = 1;  // sequence 1 padded
  for (bool norm_first : {true, false}) {
    TransformerBlock<float> block(d, 4, 256, {.norm_first = norm_first, .causal = true});
    block.set_sequence_length(length);
    block.set_key_padding_mask(mask);
    require_no_allocation(block, x);
    // ReLU and the three Dropouts drawing masks (training mode, p > 0).
    TransformerBlock<float> dropping(
        d, 4, 256, {.norm_first = norm_first, .activation = FeedForwardActivation::relu, .dropout = 0.1});
    dropping.set_sequence_length(length);
    require_no_allocation(dropping, x);
  }
  Sequential<Linear<float>, Dropout<float>> dropout(Linear<float>(d, d), Dropout<float>(0.3));
  require_no_allocation(dropout, x);
  Highway<Sequential<Linear<float>, ReLU<float>>> highway(
      Sequential<Linear<float>, ReLU<float>>(Linear<float>(d, d), ReLU<float>()));
  require_no_allocation(highway, x);
}

namespace {
/// A whole training step as the examples run it: forward, cross-entropy, backward, clipping,
/// learning rate from a schedule, optimizer update.
template <class Net, class Optimizer>
long training_step_allocations(Net& net, Optimizer& opt, const Eigen::MatrixXf& x, const std::vector<int>& labels) {
  CrossEntropyLoss<float> loss({.label_smoothing = 0.1});
  const LinearWarmup schedule(CosineAnnealingLr(0.1, 100), 5, 0.1);
  long step = 0;
  auto train_step = [&] {
    opt.set_lr(schedule(step++));
    loss.forward(net.forward(x), labels);
    net.zero_grad();
    net.backward(loss.backward());
    clip_grad_norm(net, 5.0);
    opt.step(net);
  };
  for (int i = 0; i < 2; ++i) train_step();  // warm-up
  return allocations_in([&] {
    for (int i = 0; i < 3; ++i) train_step();
  });
}
}  // namespace

TEST_CASE("no allocation in steady-state training steps: loss, SGD, Adam, AdamW, clipping, schedule",
          "[allocation][train]") {
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(1, 16 * 144, 107);
  std::vector<int> labels(16);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % 10);
  CifarResNet<float> net({.depth = 8, .in_channels = 1, .image = {12, 12}, .downsample = ShortcutKind::projection});
  SECTION("SGD, Nesterov momentum, weight decay") {
    Sgd opt(net, {.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
    CHECK(training_step_allocations(net, opt, x, labels) == 0);
  }
  SECTION("Adam with amsgrad") {
    Adam opt(net, {.weight_decay = 1e-4, .amsgrad = true});
    CHECK(training_step_allocations(net, opt, x, labels) == 0);
  }
  SECTION("AdamW") {
    AdamW opt(net);
    CHECK(training_step_allocations(net, opt, x, labels) == 0);
  }
}

TEST_CASE("no allocation in steady-state training steps: the main job's network on 28x28 images",
          "[allocation][train]") {
  // 16, 32 and 64 channels at 28, 14 and 7 pixels: every direct convolution kernel, and the stem
  // without its input gradient, as examples/fashion_mnist.cpp trains it.
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(1, 4 * 784, 109);
  const std::vector<int> labels = {3, 1, 4, 1};
  CifarResNet<float> net({.depth = 8,
                          .in_channels = 1,
                          .image = {28, 28},
                          .downsample = ShortcutKind::projection,
                          .input_gradient = false});
  Sgd opt(net, {.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
  CHECK(training_step_allocations(net, opt, x, labels) == 0);
  CifarResNet<float>::Workspace ws;
  net.infer(x, ws);
  CHECK(allocations_in([&] { net.infer(x, ws); }) == 0);
}

#else
TEST_CASE("allocation test needs glibc", "[allocation][!mayfail]") { SUCCEED("skipped: not glibc"); }
#endif
