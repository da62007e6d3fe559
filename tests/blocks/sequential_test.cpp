#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <vector>

using namespace resblocks;

TEST_CASE("Sequential: gradients (static sizes)", "[sequential][gradient]") {
  Sequential<Linear<double, 3, 5>, Tanh<double, 5>, Linear<double, 5, 2>> net;
  rbtest::require_gradients(net, rbtest::random_batch<Batch<double, 3>>(3, 4, 51));
}

TEST_CASE("Sequential: gradients (dynamic sizes, shape-polymorphic activations)", "[sequential][gradient]") {
  Sequential<Linear<double>, GELU<double>, Linear<double>, Sigmoid<double>> net(
      Linear<double>(4, 6), GELU<double>(), Linear<double>(6, 3), Sigmoid<double>());
  REQUIRE(net.in_features() == 4);
  REQUIRE(net.out_features() == 3);
  rbtest::require_gradients(net, rbtest::random_batch<Eigen::MatrixXd>(4, 2, 52));
}

TEST_CASE("Sequential: names by position, get<I>, and the layer order is the composition order", "[sequential]") {
  Sequential<Linear<double>, ReLU<double>, Linear<double>> net(Linear<double>(2, 3), ReLU<double>(),
                                                               Linear<double>(3, 1));
  std::vector<std::string> names;
  net.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(2, 3, 53);
  const Eigen::MatrixXd h = (net.get<0>().weight() * x).colwise() + net.get<0>().bias();
  const Eigen::MatrixXd expected = (net.get<2>().weight() * h.cwiseMax(0.0)).colwise() + net.get<2>().bias();
  REQUIRE(rbtest::rel_diff(net.forward(x), expected) < 1e-14);
}

TEST_CASE("Sequential: dynamic sizes that do not chain are rejected at construction", "[sequential][errors]") {
  using Net = Sequential<Linear<float>, ReLU<float>, Linear<float>>;
  try {
    Net net(Linear<float>(4, 8), ReLU<float>(), Linear<float>(6, 2));
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE(what.find("layer 2 (Linear) takes 6 features") != std::string::npos);
    REQUIRE(what.find("gives 8") != std::string::npos);
  }
  Net ok(Linear<float>(4, 8), ReLU<float>(), Linear<float>(8, 2));
  Eigen::MatrixXf bad(3, 2);
  REQUIRE_THROWS_AS(ok.forward(bad), std::invalid_argument);
}

TEST_CASE("Sequential: infer equals forward bit for bit", "[sequential][infer]") {
  Sequential<Linear<float, 16, 32>, GELU<float, 32>, Linear<float, 32, 4>> net;
  const auto x = rbtest::random_batch<Batch<float, 16>>(16, 10, 54);
  decltype(net)::Workspace ws;
  const Batch<float, 4> y = net.forward(x);
  REQUIRE(net.infer(x, ws) == y);
}

TEST_CASE("Sequential: fused Linear+activation equals the layers run one by one, bit for bit", "[sequential][fusion]") {
  using Net = Sequential<Linear<float>, GELU<float>, Linear<float>, ReLU<float>, Linear<float>>;
  Net net(Linear<float>(40, 300), GELU<float>(), Linear<float>(300, 200), ReLU<float>(), Linear<float>(200, 30));
  // The same layers, outside any Sequential: no fusion.
  auto l0 = net.get<0>();
  auto a1 = net.get<1>();
  auto l2 = net.get<2>();
  auto a3 = net.get<3>();
  auto l4 = net.get<4>();
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(40, 70, 55);
  const auto g = rbtest::random_batch<Eigen::MatrixXf>(30, 70, 56);

  const Eigen::MatrixXf y = net.forward(x);
  const Eigen::MatrixXf dx = net.backward(g);
  const auto& y_ref = l4.forward(a3.forward(l2.forward(a1.forward(l0.forward(x)))));
  REQUIRE(y == y_ref);
  const auto& dx_ref = l0.backward(a1.backward(l2.backward(a3.backward(l4.backward(g)))));
  REQUIRE(dx == dx_ref);
  REQUIRE(net.get<0>().weight_grad() == l0.weight_grad());
  REQUIRE(net.get<2>().bias_grad() == l2.bias_grad());
  Net::Workspace ws;
  REQUIRE(net.infer(x, ws) == y);
}

TEST_CASE("Sequential: activation-first bodies (pre-activation order), alone and under a Residual",
          "[sequential][gradient]") {
  using Pre = Sequential<Tanh<double, 4>, Linear<double, 4, 6>, GELU<double, 6>, Linear<double, 6, 4>>;
  Pre net;
  rbtest::require_gradients(net, rbtest::random_batch<Batch<double, 4>>(4, 3, 57));
  Residual<Pre> block;
  rbtest::require_gradients(block, rbtest::random_batch<Batch<double, 4>>(4, 3, 58));
  Residual<Sequential<ReLU<double>, Linear<double>>> two(
      Sequential<ReLU<double>, Linear<double>>(ReLU<double>(), Linear<double>(5, 5)));
  Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(5, 4, 59) * 2.0;
  rbtest::require_gradients(two, x);
}

TEST_CASE("Sequential: a convolution computes the BatchNorm2d's dL/dx after it as it reads it, bit for bit",
          "[sequential][fusion]") {
  using Branch = Sequential<Conv2d<float>, BatchNorm2d<float>, ReLU<float>, Conv2d<float>, BatchNorm2d<float>>;
  const int saved = num_threads();
  std::vector<Eigen::MatrixXf> by_threads;
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    for (const bool first_input_gradient : {true, false}) {
      for (const bool training : {true, false}) {
        manual_seed(7);  // the same weights for every thread count
        Branch net{Conv2d<float>(16, 16, 3, {.padding = 1, .bias = false}), BatchNorm2d<float>(16), ReLU<float>(),
                   Conv2d<float>(16, 16, 3, {.padding = 1, .bias = false}), BatchNorm2d<float>(16)};
        net.get<0>().set_input_gradient(first_input_gradient);
        net.set_image_size({6, 16});
        net.set_training(training);
        // The same layers outside any Sequential: each BatchNorm2d writes its dL/dx out.
        auto c0 = net.get<0>();
        auto n1 = net.get<1>();
        auto a2 = net.get<2>();
        auto c3 = net.get<3>();
        auto n4 = net.get<4>();
        INFO(threads << " threads, input gradient " << first_input_gradient << ", training " << training);
        REQUIRE(net.get<0>().takes_norm_gradient());  // else this test would compare the unfused path with itself
        REQUIRE(net.get<3>().takes_norm_gradient());
        const auto x = rbtest::random_batch<Eigen::MatrixXf>(16, 5 * 96, 61);
        // In training, each convolution's pass also sums the statistics of the BatchNorm2d after it.
        REQUIRE(net.get<1>().takes_sample_moments(net.get<0>().forward_sample_blocks(x)) == training);
        const auto g = rbtest::random_batch<Eigen::MatrixXf>(16, 5 * 96, 62);
        const auto skip = rbtest::random_batch<Eigen::MatrixXf>(16, 5 * 96, 63);

        REQUIRE(net.get<3>().takes_norm_input());
        REQUIRE(net.forward(x) == n4.forward(c3.forward(a2.forward(n1.forward(c0.forward(x))))));
        // The second convolution read its input from the first BatchNorm2d's (the ReLU's output never
        // written); the copies ran each layer on its own.
        REQUIRE(net.get<3>().read_norm_input());
        REQUIRE_FALSE(c3.read_norm_input());
        // The second convolution's backward pass sums the first BatchNorm2d's backward sums.
        REQUIRE(net.get<1>().takes_sample_gradient_sums(net.get<3>().backward_sample_blocks()));
        const Eigen::MatrixXf dx = net.backward(g);
        REQUIRE(dx == c0.backward(n1.backward(a2.backward(c3.backward(n4.backward(g))))));
        REQUIRE(net.get<0>().weight_grad() == c0.weight_grad());
        REQUIRE(net.get<1>().weight_grad() == n1.weight_grad());
        REQUIRE(net.get<1>().bias_grad() == n1.bias_grad());
        REQUIRE(net.get<3>().weight_grad() == c3.weight_grad());
        REQUIRE(net.get<4>().bias_grad() == n4.bias_grad());

        Eigen::MatrixXf dx_add;  // the residual's pass: dL/dx = skip_grad + the branch's
        net.backward_add(g, dx_add, skip);
        Eigen::MatrixXf dx_add_ref;
        c0.backward_add(n1.backward(a2.backward(c3.backward(n4.backward(g)))), dx_add_ref, skip);
        REQUIRE(dx_add == dx_add_ref);
        REQUIRE(net.get<0>().weight_grad() == c0.weight_grad());
        by_threads.push_back(dx_add);
        by_threads.push_back(net.get<3>().weight_grad());
      }
    }
  }
  set_num_threads(saved);
  REQUIRE(by_threads.size() == 16);
  for (std::size_t i = 0; i < 8; ++i) REQUIRE(by_threads[i] == by_threads[i + 8]);  // 1 and 2 threads
}

TEST_CASE("Sequential: a strided convolution's pass sums the BatchNorm2d before its activation, bit for bit",
          "[sequential][fusion]") {
  // The strided backward (im2col + GEMM) hands over each part's samples at once.
  using Net = Sequential<Conv2d<float>, BatchNorm2d<float>, ReLU<float>, Conv2d<float>>;
  const int saved = num_threads();
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    INFO(threads << " threads");
    manual_seed(9);
    Net net{Conv2d<float>(16, 16, 3, {.padding = 1, .bias = false}), BatchNorm2d<float>(16), ReLU<float>(),
            Conv2d<float>(16, 32, 3, {.stride = 2, .padding = 1, .bias = false})};
    net.set_image_size({8, 8});
    auto c0 = net.get<0>();
    auto n1 = net.get<1>();
    auto a2 = net.get<2>();
    auto c3 = net.get<3>();
    const auto x = rbtest::random_batch<Eigen::MatrixXf>(16, 5 * 64, 66);
    const auto g = rbtest::random_batch<Eigen::MatrixXf>(32, 5 * 16, 67);
    REQUIRE(net.forward(x) == c3.forward(a2.forward(n1.forward(c0.forward(x)))));
    REQUIRE_FALSE(net.get<3>().read_norm_input());  // a strided backward: the ReLU writes its output
    REQUIRE(net.get<3>().backward_sample_blocks().samples == 5);
    REQUIRE(net.get<1>().takes_sample_gradient_sums(net.get<3>().backward_sample_blocks()));
    REQUIRE(net.backward(g) == c0.backward(n1.backward(a2.backward(c3.backward(g)))));
    REQUIRE(net.get<0>().weight_grad() == c0.weight_grad());
    REQUIRE(net.get<1>().weight_grad() == n1.weight_grad());
    REQUIRE(net.get<1>().bias_grad() == n1.bias_grad());
    REQUIRE(net.get<3>().weight_grad() == c3.weight_grad());
  }
  set_num_threads(saved);
}

TEST_CASE(
    "Sequential: a ResNet's stem BatchNorm2d and a stage's last one sum their backward sums in the next "
    "stage's pass: bit for bit",
    "[sequential][fusion]") {
  // Stem, activation, two stages of v1 blocks: stage 3's first pass sums the stem's BatchNorm2d sums,
  // stage 4's first pass those of stage 3's last block's bn2, on each sample of the ReLU's dL/dx.
  using Stage = Repeat<BasicBlock<float>>;
  using Net = Sequential<Conv2d<float>, BatchNorm2d<float>, ReLU<float>, Stage, Stage>;
  const auto grads = [](auto&... layers) {
    std::vector<Eigen::MatrixXf> all;
    (layers.for_each_parameter([&](std::string_view, const auto&, const auto& grad) { all.emplace_back(grad); }), ...);
    return all;
  };
  const int saved = num_threads();
  std::vector<Eigen::MatrixXf> by_threads;
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    for (const Index stride : {1, 2}) {  // the next stage keeps the shape (identity skips), or halves it (projection)
      INFO(threads << " threads, stride " << stride);
      manual_seed(13);
      const Index wide = 16 * stride;
      Net net{Conv2d<float>(3, 16, 3, {.padding = 1, .bias = false}), BatchNorm2d<float>(16), ReLU<float>(),
              Stage(2, [](Index) { return BasicBlock<float>(16, 16); }), Stage(2, [&](Index i) {
                return i == 0 ? BasicBlock<float>(16, wide, stride) : BasicBlock<float>(wide, wide);
              })};
      net.set_image_size({16, 16});  // the direct backward (whole samples) on every build; not at 8x8 natively
      auto c0 = net.get<0>();
      auto n1 = net.get<1>();
      auto a2 = net.get<2>();
      auto r3 = net.get<3>();
      auto r4 = net.get<4>();
      const auto x = rbtest::random_batch<Eigen::MatrixXf>(3, 5 * 256, 68);
      const Eigen::MatrixXf y = net.forward(x);
      REQUIRE(y == r4.forward(r3.forward(a2.forward(n1.forward(c0.forward(x))))));
      // Else this test would compare the unfused path with itself.
      REQUIRE(net.get<1>().takes_sample_gradient_sums(net.get<3>().backward_sample_blocks()));
      REQUIRE(net.get<3>().before_last_layer().takes_sample_gradient_sums(net.get<4>().backward_sample_blocks()));
      const auto g = rbtest::random_batch<Eigen::MatrixXf>(y.rows(), y.cols(), 69);
      const Eigen::MatrixXf dx = net.backward(g);
      REQUIRE(dx == c0.backward(n1.backward(a2.backward(r3.backward(r4.backward(g))))));
      const std::vector<Eigen::MatrixXf> fused = grads(net), apart = grads(c0, n1, a2, r3, r4);
      REQUIRE(fused.size() == apart.size());
      for (std::size_t i = 0; i < fused.size(); ++i) REQUIRE(fused[i] == apart[i]);
      by_threads.push_back(dx);
      by_threads.push_back(fused[1]);  // the stem BatchNorm2d's dL/dγ
    }
  }
  set_num_threads(saved);
  REQUIRE(by_threads.size() == 8);
  for (std::size_t i = 0; i < 4; ++i) REQUIRE(by_threads[i] == by_threads[i + 4]);  // 1 and 2 threads
}

TEST_CASE("Sequential: Conv2d -> BatchNorm2d gradients where the convolution takes the normalisation's dL/dx",
          "[sequential][gradient]") {
  using Pair = Sequential<Conv2d<double>, BatchNorm2d<double>>;
  Pair net{Conv2d<double>(8, 8, 3, {.padding = 1, .bias = false}), BatchNorm2d<double>(8)};
  net.set_image_size({3, 16});
  REQUIRE(net.get<0>().takes_norm_gradient());
  rbtest::require_gradients(net, rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 48, 64));
  // With a bias (or on a GEMM path) the convolution does not take it: BatchNorm2d writes dL/dx out.
  Pair biased{Conv2d<double>(8, 8, 3, {.padding = 1}), BatchNorm2d<double>(8)};
  biased.set_image_size({3, 16});
  REQUIRE_FALSE(biased.get<0>().takes_norm_gradient());
  rbtest::require_gradients(biased, rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 48, 65));
  // Handed one anyway, it refuses rather than computing the bias gradient from the wrong dL/dy.
  auto& conv = biased.get<0>();
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 48, 66);
  const Eigen::MatrixXd& y = conv.forward(x);
  const Eigen::VectorXd ones = Eigen::VectorXd::Ones(8);
  conv.set_norm_gradient({y.data(), y.data(), ones.data(), ones.data(), ones.data(), 8});
  REQUIRE_THROWS_AS(conv.backward(y), std::logic_error);
  conv.set_norm_gradient({});
  REQUIRE(conv.backward(y).cols() == x.cols());
}

TEST_CASE("Sequential: BatchNorm2d -> ReLU -> Conv2d gradients where the convolution reads the normalised input",
          "[sequential][gradient]") {
  using Net = Sequential<Conv2d<double>, BatchNorm2d<double>, ReLU<double>, Conv2d<double>>;
  for (const bool fuse : {true, false}) {
    INFO("fused " << fuse);
    Net net{Conv2d<double>(8, 8, 3, {.padding = 1, .bias = false}), BatchNorm2d<double>(8), ReLU<double>(),
            Conv2d<double>(8, 8, 3, {.padding = 1, .bias = false})};
    net.set_image_size({3, 16});
    net.get<3>().set_fuse_norm_input(fuse);
    REQUIRE(net.get<3>().takes_norm_input() == fuse);
    const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 48, 70);
    net.forward(x);
    REQUIRE(net.get<3>().read_norm_input() == fuse);
    rbtest::require_gradients(net, x);
  }
}

TEST_CASE("Conv2d: a normalised input of another batch, or on a convolution that does not take it, is refused",
          "[sequential][errors]") {
  Conv2d<double> conv(8, 8, 3, {.padding = 1, .bias = false});
  conv.set_image_size({3, 16});
  BatchNorm2d<double> norm(8);
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 48, 71);
  const Eigen::MatrixXd other = x;
  {
    const detail::NormInputScope scope(conv, norm.forward_deferred(x));
    REQUIRE_THROWS_AS(conv.forward(other), std::logic_error);
    REQUIRE(conv.forward(x).cols() == x.cols());
  }
  REQUIRE(conv.read_norm_input());
  const Eigen::MatrixXd g = rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 48, 72);
  REQUIRE(conv.backward(g).cols() == x.cols());
  Eigen::MatrixXd dx;  // a skip gradient has no place in the ReLU's backward it runs
  REQUIRE_THROWS_AS(conv.backward_add(g, dx, g), std::logic_error);
  REQUIRE_FALSE(conv.forward(x).hasNaN());  // outside the scope it reads x itself
  REQUIRE_FALSE(conv.read_norm_input());
  Conv2d<double> strided(8, 8, 3, {.stride = 2, .padding = 1, .bias = false});
  strided.set_image_size({3, 16});
  REQUIRE_FALSE(strided.takes_norm_input());
  const detail::NormInputScope scope(strided, norm.forward_deferred(x));
  REQUIRE_THROWS_AS(strided.forward(x), std::logic_error);
}

TEST_CASE(
    "Sequential: infer reads the BatchNorm2d -> ReLU before a convolution from the normalisation's input, "
    "bit for bit",
    "[sequential][fusion][infer]") {
  using Branch = Sequential<Conv2d<float>, BatchNorm2d<float>, ReLU<float>, Conv2d<float>, BatchNorm2d<float>>;
  for (const bool training : {true, false}) {
    for (const bool fuse : {true, false}) {
      INFO("training " << training << ", fused " << fuse);
      manual_seed(17);
      Branch net{Conv2d<float>(16, 16, 3, {.padding = 1, .bias = false}), BatchNorm2d<float>(16), ReLU<float>(),
                 Conv2d<float>(16, 16, 3, {.padding = 1, .bias = false}), BatchNorm2d<float>(16)};
      net.set_image_size({6, 16});
      const auto x = rbtest::random_batch<Eigen::MatrixXf>(16, 5 * 96, 73);
      net.forward(x);  // running statistics away from their initial values
      net.set_training(training);
      net.get<3>().set_fuse_norm_input(fuse);
      REQUIRE(net.get<3>().infers_norm_input() == fuse);
      Branch::Workspace ws;
      const Eigen::MatrixXf y = net.infer(x, ws);
      // Fused, neither the normalisation's output nor the ReLU's was written into their workspaces.
      REQUIRE((std::get<1>(ws.layers).y.size() == 0) == fuse);
      REQUIRE((std::get<2>(ws.layers).y.size() == 0) == fuse);
      // The layers one by one, each with its own workspace, and the training pass of the same mode.
      auto c0 = net.get<0>();
      auto n1 = net.get<1>();
      auto a2 = net.get<2>();
      auto c3 = net.get<3>();
      auto n4 = net.get<4>();
      Conv2d<float>::Workspace w0, w3;
      BatchNorm2d<float>::Workspace w1, w4;
      ReLU<float>::Workspace w2;
      REQUIRE(y == n4.infer(c3.infer(a2.infer(n1.infer(c0.infer(x, w0), w1), w2), w3), w4));
      REQUIRE(y == net.forward(x));
    }
  }
  // A workspace handed the input of another batch, or a convolution that cannot read it so, refuses.
  Conv2d<float> conv(16, 16, 3, {.padding = 1, .bias = false});
  conv.set_image_size({6, 16});
  const BatchNorm2d<float> norm(16);
  BatchNorm2d<float>::Workspace norm_ws;
  Conv2d<float>::Workspace conv_ws;
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(16, 2 * 96, 74);
  const Eigen::MatrixXf other = x;
  conv_ws.set_norm_input(norm.infer_deferred(x, norm_ws));
  REQUIRE_THROWS_AS(conv.infer(other, conv_ws), std::logic_error);
  REQUIRE(conv.infer(x, conv_ws).cols() == x.cols());
  Conv2d<float> pointwise(16, 16, 1, {.bias = false});
  pointwise.set_image_size({6, 16});
  REQUIRE_FALSE(pointwise.infers_norm_input());
  REQUIRE_THROWS_AS(pointwise.infer(x, conv_ws), std::logic_error);
}
