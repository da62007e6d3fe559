// This file replaces malloc and friends (glibc) for the whole dense_tests executable, to count the
// allocations of a training step; the replacements forward to glibc's own.
#include "blocks/dense_test_support.hpp"

#include <resblocks/blocks/dense_block.hpp>
#include <resblocks/blocks/dense_net.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// After the other headers: it replaces malloc, which they declare.
#include "support/allocation_counter.hpp"

using namespace resblocks;

namespace {

/// The textbook DenseBlock: each layer (built from the stock layers) gets a freshly concatenated
/// input, the output is one more concatenation, backward slices the gradient per layer. The
/// independent reference for DenseBlock's shared buffer.
struct NaiveDenseBlock {
  Index c0, k;
  std::vector<rbtest::StockDenseLayer<double>> layers;
  std::vector<Eigen::MatrixXd> inputs;  // inputs[i]: layer i's input, inputs[L]: the output

  NaiveDenseBlock(Index c0_, Index k_, Index count) : c0(c0_), k(k_), inputs(std::size_t(count + 1)) {
    for (Index i = 0; i < count; ++i) layers.push_back(rbtest::stock_dense_layer<double>(c0 + i * k, k));
  }
  const Eigen::MatrixXd& forward(const Eigen::MatrixXd& x) {
    inputs[0] = x;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const Eigen::MatrixXd& f = layers[i].forward(inputs[i]);
      Eigen::MatrixXd cat(inputs[i].rows() + f.rows(), x.cols());
      cat << inputs[i], f;
      inputs[i + 1] = cat;
    }
    return inputs.back();
  }
  Eigen::MatrixXd backward(const Eigen::MatrixXd& dy) {
    Eigen::MatrixXd g = dy;
    for (std::size_t i = layers.size(); i-- > 0;) {
      const Index c = c0 + Index(i) * k;
      const Eigen::MatrixXd dout = g.middleRows(c, k);
      g.topRows(c) += layers[i].backward(dout);
    }
    return g.topRows(c0);
  }
};

}  // namespace

TEST_CASE("DenseBlock: gradients in train and eval mode (c0 3, k 2, 3 layers, 5x4, batch 2)", "[dense][gradient]") {
  for (bool training : {true, false}) {
    INFO("training " << training);
    DenseBlock<double> block(3, 2, 3);
    rbtest::randomise_norms(block, 51);
    block.set_image_size({5, 4});
    block.set_training(training);
    rbtest::require_gradients(block, rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 20, 52));
  }
}

TEST_CASE("DenseBlock: equals concatenating stock layers, train steps then eval", "[dense]") {
  const Index c0 = 4, k = 3, count = 4;
  DenseBlock<double> block(c0, k, count);
  NaiveDenseBlock naive(c0, k, count);
  rbtest::randomise_norms(block, 61);
  for (Index i = 0; i < count; ++i) rbtest::copy_by_name(block.layer(i), naive.layers[std::size_t(i)]);
  block.set_image_size({6, 5});
  for (auto& l : naive.layers) l.set_image_size({6, 5});
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(c0, 3 * 30, 62);
  const Eigen::MatrixXd dy = rbtest::random_batch<Eigen::MatrixXd>(c0 + count * k, 3 * 30, 63);
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    const Eigen::MatrixXd& y = block.forward(x);
    CHECK(y.topRows(c0) == x);
    CHECK(rbtest::rel_diff(y, naive.forward(x)) <= 1e-13);
    CHECK(rbtest::rel_diff(block.backward(dy), naive.backward(dy)) <= 1e-13);
  }
  for (Index i = 0; i < count; ++i) {
    INFO("layer " << i);
    rbtest::require_same(rbtest::gradients_by_name(block.layer(i)),
                         rbtest::gradients_by_name(naive.layers[std::size_t(i)]), 1e-13);
    rbtest::require_same(rbtest::buffers_by_name(block.layer(i)), rbtest::buffers_by_name(naive.layers[std::size_t(i)]),
                         1e-14);
  }
  block.set_training(false);
  for (auto& l : naive.layers) l.set_training(false);
  CHECK(rbtest::rel_diff(block.forward(x), naive.forward(x)) <= 1e-13);
  CHECK(rbtest::rel_diff(block.backward(dy), naive.backward(dy)) <= 1e-13);
}

TEST_CASE("DenseBlock: PyTorch parity with torchvision's _DenseBlock (double and float)", "[dense][parity]") {
  DenseBlock<double> d(4, 3, 3);
  rbtest::check_against_fixture(d, "dense_block.txt");
  DenseBlock<float> f(4, 3, 3);
  rbtest::check_against_fixture(f, "dense_block.txt");
}

TEST_CASE("DenseBlock: names as torchvision's _DenseBlock", "[dense]") {
  DenseBlock<float> block(5, 2, 3);
  std::vector<std::string> names, buffers;
  block.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  block.for_each_buffer([&](std::string_view n, const auto&) { buffers.emplace_back(n); });
  REQUIRE(names.size() == 18);
  CHECK(std::vector<std::string>(names.begin(), names.begin() + 7) ==
        std::vector<std::string>{"denselayer1.norm1.weight", "denselayer1.norm1.bias", "denselayer1.conv1.weight",
                                 "denselayer1.norm2.weight", "denselayer1.norm2.bias", "denselayer1.conv2.weight",
                                 "denselayer2.norm1.weight"});
  CHECK(names.back() == "denselayer3.conv2.weight");
  REQUIRE(buffers.size() == 18);
  CHECK(buffers.front() == "denselayer1.norm1.running_mean");
  CHECK(buffers.back() == "denselayer3.norm2.num_batches_tracked");
  CHECK(block.in_features() == 5);
  CHECK(block.out_features() == 11);
  CHECK(block.layer(2).in_features() == 9);
  CHECK(parameter_count(block) == parameter_count(DenseLayer<float>(5, 2)) + parameter_count(DenseLayer<float>(7, 2)) +
                                      parameter_count(DenseLayer<float>(9, 2)));
}

TEST_CASE("DenseBlock: one feature buffer, shared layer buffers (the memory claim)", "[dense][memory]") {
  // c0 = 3, k = 2, L = 3 on 2 samples of 5x4: P = 40 columns (one chunk), widest layer input c_max = 7.
  const Index c0 = 3, k = 2, L = 3, P = 40, c_max = c0 + (L - 1) * k, b = 4 * k;
  DenseBlock<float> block(c0, k, L);
  block.set_image_size({5, 4});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(c0, P, 71);
  const Eigen::MatrixXf dy = rbtest::random_batch<Eigen::MatrixXf>(c0 + L * k, P, 72);
  const Eigen::MatrixXf& y = block.forward(x);
  DenseBlockMemory m = block.memory();
  CHECK(m.features == (c0 + L * k) * P);  // the output is the only concatenation
  CHECK(m.bottlenecks == L * b * P);      // conv1's outputs, one per layer
  CHECK(m.shared == b * P + k * P);       // relu(norm2(.)) and conv2's output: one each for all layers
  // relu(norm1(.)) only as one chunk of the widest input; the moments of norm2 (4k x 2 doubles)
  CHECK(m.chunks == c_max * P + 2 * (2 * b));
  CHECK(m.gradients == 0);
  block.backward(dy);
  m = block.memory();
  // dL/d(features) of the last layer's input rows, dL/dx, dL/dz2 and dL/dout
  CHECK(m.gradients == c_max * P + c0 * P + b * P + k * P);
  // chunks now also: dL/dz1 (c_max x P), dL/dh (4k x P), conv1's partial dL/dW (4k x c_max) and the
  // sums (2·c_max doubles)
  CHECK(m.chunks == 2 * c_max * P + b * P + b * c_max + 2 * std::max(2 * b, 2 * c_max));
  // A concatenating block keeps Σ (c0 + i·k)·P input scalars plus the output's (c0 + L·k)·P; this one
  // keeps only the latter (and no normalised copy of any input).
  CHECK(DenseBlock<float>::concatenated_inputs(c0, k, L, P) == (3 + 5 + 7) * P);
  CHECK(m.features < DenseBlock<float>::concatenated_inputs(c0, k, L, P) + (c0 + L * k) * P);
  // The layers' outputs are written into the buffer itself, steps reuse every buffer.
  const float* y_data = y.data();
  const float* dx_data = block.backward(dy).data();
  for (int i = 0; i < 3; ++i) {
    CHECK(block.forward(x).data() == y_data);
    CHECK(block.backward(dy).data() == dx_data);
  }
  const DenseBlockMemory after = block.memory();
  CHECK(after.total() == m.total());
}

TEST_CASE("DenseBlock: infer equals forward bit for bit, float smoke", "[dense]") {
  DenseBlock<float> block(8, 4, 3);
  rbtest::randomise_norms(block, 81);
  block.set_image_size({7, 6});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(8, 4 * 42, 82);
  const Eigen::MatrixXf dy = rbtest::random_batch<Eigen::MatrixXf>(20, 4 * 42, 83);
  DenseBlock<float>::Workspace ws;
  for (bool training : {true, false}) {
    INFO("training " << training);
    block.set_training(training);
    const Eigen::MatrixXf y = block.forward(x);
    REQUIRE(y.allFinite());
    CHECK(block.infer(x, ws) == y);
    CHECK(block.infer(x, ws) == y);
    REQUIRE(block.backward(dy).allFinite());
  }
  DenseBlock<float> empty(3, 2, 0);  // no layers: the identity
  empty.set_image_size({2, 2});
  const Eigen::MatrixXf e = rbtest::random_batch<Eigen::MatrixXf>(3, 8, 84);
  CHECK(empty.forward(e) == e);
  CHECK(empty.backward(e) == e);
}

TEST_CASE("DenseBlock: the same bits with 1 and 2 threads", "[dense][threads]") {
  // P = 4096 columns: three chunks of the 32-channel input, parallel convolutions and passes.
  const int saved = num_threads();
  DenseBlock<float> block(32, 4, 2);
  rbtest::randomise_norms(block, 95);
  block.set_image_size({16, 16});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(32, 16 * 256, 96);
  const Eigen::MatrixXf dy = rbtest::random_batch<Eigen::MatrixXf>(40, 16 * 256, 97);
  std::vector<Eigen::MatrixXf> results;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    DenseBlock<float> b = block;
    results.push_back(b.forward(x));
    results.push_back(b.backward(dy));
    for (const auto& [name, g] : rbtest::gradients_by_name(b)) results.push_back(g.cast<float>());
  }
  set_num_threads(saved);
  REQUIRE(results.size() % 2 == 0);
  const std::size_t half = results.size() / 2;
  for (std::size_t i = 0; i < half; ++i) {
    INFO("result " << i);
    CHECK(results[i] == results[half + i]);
  }
}

#if defined(__GLIBC__)
namespace {
/// Allocations of three training steps (zero_grad, forward, backward, an SGD update) and of three
/// inferences, after two warm-up rounds.
template <class Net>
std::pair<long, long> steady_state_allocations(Net& net, const Eigen::MatrixXf& x) {
  const Eigen::MatrixXf g = net.forward(x) * 1e-3f;
  typename Net::Workspace ws;
  auto step = [&] {
    net.zero_grad();
    net.forward(x);
    net.backward(g);
    net.for_each_parameter([](std::string_view, auto& value, const auto& grad) { value -= 1e-3f * grad; });
  };
  for (int i = 0; i < 2; ++i) {
    step();
    net.infer(x, ws);
  }
  const long train = allocations_in([&] {
    for (int i = 0; i < 3; ++i) step();
  });
  const long infer = allocations_in([&] {
    for (int i = 0; i < 3; ++i) net.infer(x, ws);
  });
  return {train, infer};
}
}  // namespace

TEST_CASE("DenseBlock and DenseNet: no allocation in steady-state steps", "[dense][allocation]") {
  REQUIRE(allocations_in([] {
            Eigen::MatrixXf m(10, 10);
            m.setZero();
          }) >= 1);  // the counter counts
  // 4 x 16x16 images: several column chunks per layer, convolutions in parts side by side.
  DenseBlock<float> block(16, 8, 3);
  block.set_image_size({16, 16});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(16, 4 * 256, 171);
  for (bool training : {true, false}) {
    INFO("training " << training);
    block.set_training(training);
    const auto [train, infer] = steady_state_allocations(block, x);
    CHECK(train == 0);
    CHECK(infer == 0);
  }
  DenseNet<float> net({.block_layers = {2, 2, 2}, .growth_rate = 6, .image = {16, 16}});
  const auto [train, infer] = steady_state_allocations(net, rbtest::random_batch<Eigen::MatrixXf>(3, 4 * 256, 172));
  CHECK(train == 0);
  CHECK(infer == 0);
}
#endif

TEST_CASE("DenseBlock: errors name the block and the shapes", "[dense][errors]") {
  CHECK_THROWS_WITH(DenseBlock<float>(0, 2, 3),
                    rbtest::contains("DenseBlock: in_channels and growth_rate must be >= 1"));
  CHECK_THROWS_WITH(DenseBlock<float>(3, 2, -1), rbtest::contains("layers >= 0"));
  DenseBlock<float> block(3, 2, 2);
  block.set_image_size({5, 4});
  CHECK_THROWS_WITH(block.backward(Eigen::MatrixXf::Zero(7, 40)),
                    rbtest::contains("DenseBlock: backward() called before forward()"));
  const Eigen::MatrixXf wrong = rbtest::random_batch<Eigen::MatrixXf>(4, 40, 91);
  CHECK_THROWS_WITH(block.forward(wrong),
                    rbtest::contains("DenseBlock: input is 4x40") && rbtest::contains("expected 3"));
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(3, 40, 92);
  block.forward(x);
  CHECK_THROWS_WITH(block.backward(Eigen::MatrixXf::Zero(5, 40)),
                    rbtest::contains("DenseBlock: output gradient is 5x40, expected 7x40"));
  DenseBlock<float> unsized(3, 2, 2);
  CHECK_THROWS_WITH(unsized.forward(x), rbtest::contains("DenseBlock: image size not set"));
}
