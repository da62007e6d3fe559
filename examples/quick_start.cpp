// Train a small residual MLP to fit t = sin(3 x0) cos(2 x1), then run it for inference.
#include <resblocks/resblocks.hpp>

#include <cmath>
#include <cstdio>

using namespace resblocks;

int main() {
  std::printf("%s\n", build_info().c_str());  // version, Eigen, SIMD instruction sets, threads
  constexpr int D = 32;
  // One residual block: y = x + W2 relu(W1 x + b1) + b2.
  using Block = Residual<Sequential<Linear<float, D, D>, ReLU<float, D>, Linear<float, D, D>>>;
  using Net = Sequential<Linear<float, 2, D>, Repeat<Block>, Linear<float, D, 1>>;

  manual_seed(42);
  // Braces: the layers are built (and draw their initial weights) left to right with every compiler.
  Net net{Linear<float, 2, D>(), Repeat<Block>(4), Linear<float, D, 1>()};

  // A batch is a matrix: rows are features, columns are samples.
  const Index n = 256;
  Batch<float, 2> x = Batch<float, 2>::Random(2, n);
  Batch<float, 1> t(1, n), dL_dy(1, n);
  for (Index j = 0; j < n; ++j) t(0, j) = std::sin(3 * x(0, j)) * std::cos(2 * x(1, j));

  const float lr = 0.02f;
  for (int step = 0; step <= 1000; ++step) {
    const Batch<float, 1>& y = net.forward(x);  // training pass, caches what backward needs
    dL_dy = (y - t) * (2.0f / n);               // gradient of the mean squared error
    const float loss = (y - t).squaredNorm() / n;
    net.zero_grad();
    net.backward(dL_dy);  // dL/dx, and adds dL/dθ to every gradient
    net.for_each_parameter([&](std::string_view, auto& value, const auto& grad) { value -= lr * grad; });
    if (step % 200 == 0) std::printf("step %3d  loss %.5f\n", step, loss);
  }

  // Inference is const and re-entrant: each thread brings its own workspace.
  Net::Workspace ws;
  const Batch<float, 1>& y = net.infer(x, ws);
  std::printf("final mse %.5f with %ld parameters\n", (y - t).squaredNorm() / n,
              static_cast<long>(parameter_count(net)));
  return 0;
}
