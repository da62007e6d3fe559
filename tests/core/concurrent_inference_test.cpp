// A trained network is run by two threads at once, each with its own workspace: the results
// equal the single-thread ones bit for bit.
#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <atomic>
#include <thread>
#include <vector>

using namespace resblocks;

namespace {
template <class Net>
void require_concurrent_infer_exact(Net& net, const typename Net::Input& x1, const typename Net::Input& x2) {
  // Train it a little, so the weights are not the freshly initialised ones.
  for (int i = 0; i < 3; ++i) {
    net.zero_grad();
    const typename Net::Output g = net.forward(x1) * 1e-2f;
    net.backward(g);
    net.for_each_parameter([](std::string_view, auto& v, const auto& d) { v -= 0.1f * d; });
  }
  typename Net::Workspace ws;
  const typename Net::Output y1 = net.infer(x1, ws);
  const typename Net::Output y2 = net.infer(x2, ws);
  REQUIRE(y1 != y2);
  REQUIRE(y1 == net.forward(x1));

  std::atomic<int> mismatches{0};
  auto worker = [&](const typename Net::Input& x, const typename Net::Output& expected) {
    typename Net::Workspace own;
    for (int i = 0; i < 40; ++i)
      if (net.infer(x, own) != expected) ++mismatches;
  };
  const Net& shared = net;  // only the const interface is used by the threads
  (void)shared;
  std::thread a(worker, std::cref(x1), std::cref(y1));
  std::thread b(worker, std::cref(x2), std::cref(y2));
  a.join();
  b.join();
  REQUIRE(mismatches.load() == 0);
}
}  // namespace

TEST_CASE("two threads infer with one network: static residual MLP", "[concurrency]") {
  using Block = Residual<Sequential<Linear<float, 32, 64>, ReLU<float, 64>, Linear<float, 64, 32>>>;
  Sequential<Linear<float, 8, 32>, Repeat<Block>, Linear<float, 32, 4>> net(Linear<float, 8, 32>(), Repeat<Block>(4),
                                                                            Linear<float, 32, 4>());
  require_concurrent_infer_exact(net, rbtest::random_batch<Batch<float, 8>>(8, 16, 111),
                                 rbtest::random_batch<Batch<float, 8>>(8, 16, 112));
}

TEST_CASE("two threads infer with one network: large dynamic block on the threaded GEMM path", "[concurrency]") {
  using Body = Sequential<Linear<float>, GELU<float>, Linear<float>>;
  Repeat<Residual<Body>> net(
      2, [](Index) { return Residual<Body>(Body(Linear<float>(256, 512), GELU<float>(), Linear<float>(512, 256))); });
  require_concurrent_infer_exact(net, rbtest::random_batch<Eigen::MatrixXf>(256, 200, 113),
                                 rbtest::random_batch<Eigen::MatrixXf>(256, 200, 114));
}

TEST_CASE("two threads infer with one network: CIFAR ResNet-8 in evaluation mode", "[concurrency][resnet]") {
  CifarResNet<float> net({.depth = 8, .in_channels = 1, .image = {12, 12}});
  const Eigen::MatrixXf warm = rbtest::random_batch<Eigen::MatrixXf>(1, 8 * 144, 115);
  net.forward(warm);  // running statistics away from their initial values
  net.set_training(false);
  require_concurrent_infer_exact(net, rbtest::random_batch<Eigen::MatrixXf>(1, 8 * 144, 116),
                                 rbtest::random_batch<Eigen::MatrixXf>(1, 8 * 144, 117));
}

TEST_CASE("BasicBlock training step: the same bits with 1 and 2 threads", "[concurrency][resnet][determinism]") {
  // Large enough for every kernel to split (convolution parts, BN partitions, GEMM blocks).
  auto step = [](int threads, Eigen::MatrixXf& y, Eigen::MatrixXf& dx, std::vector<Eigen::MatrixXf>& grads,
                 std::vector<Eigen::MatrixXf>& stats) {
    set_num_threads(threads);
    manual_seed(5);
    Sequential<BasicBlock<float>, BasicBlock<float>> net(BasicBlock<float>(32, 32), BasicBlock<float>(32, 48, 2));
    net.set_image_size({14, 14});
    const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(32, 6 * 196, 118);
    y = net.forward(x);
    const Eigen::MatrixXf g = rbtest::random_batch<Eigen::MatrixXf>(y.rows(), y.cols(), 119);
    dx = net.backward(g);
    net.for_each_parameter([&](std::string_view, const auto&, const auto& grad) { grads.emplace_back(grad); });
    net.for_each_buffer([&](std::string_view, const auto& value) {
      if constexpr (requires { value.rows(); }) stats.emplace_back(value);
    });
  };
  Eigen::MatrixXf y1, dx1, y2, dx2;
  std::vector<Eigen::MatrixXf> g1, g2, s1, s2;
  step(1, y1, dx1, g1, s1);
  step(2, y2, dx2, g2, s2);
  set_num_threads(2);
  REQUIRE(y1 == y2);
  REQUIRE(dx1 == dx2);
  REQUIRE(g1 == g2);
  REQUIRE(s1 == s2);
}
