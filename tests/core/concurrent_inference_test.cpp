// A trained network is run by two threads at once, each with its own workspace: the results
// equal the single-thread ones bit for bit.
#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <atomic>
#include <thread>

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
  Repeat<Residual<Body>> net(2, [](Index) { return Residual<Body>(Body(Linear<float>(256, 512), GELU<float>(), Linear<float>(512, 256))); });
  require_concurrent_infer_exact(net, rbtest::random_batch<Eigen::MatrixXf>(256, 200, 113),
                                 rbtest::random_batch<Eigen::MatrixXf>(256, 200, 114));
}
