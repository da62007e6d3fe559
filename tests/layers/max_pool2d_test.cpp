#include "layers/pooling_helpers.hpp"

#include <resblocks/layers/max_pool2d.hpp>

#include <stdexcept>

using namespace resblocks;
using rbtest::contains;
using rbtest::k_windows;

static_assert(Layer<MaxPool2d<float>>);
static_assert(Layer<MaxPool2d<double, 3>>);

namespace {
// A 4x4 one-sample image (rows h, columns w) as columns w + 4h; channel 1 is channel 0 negated.
Eigen::MatrixXd two_channel_4x4() {
  const double v[4][4] = {{1, 3, 2, 0}, {4, 2, 9, 1}, {0, 8, 5, 6}, {7, 1, 3, 2}};
  Eigen::MatrixXd x(2, 16);
  for (int h = 0; h < 4; ++h)
    for (int w = 0; w < 4; ++w) {
      x(0, w + 4 * h) = v[h][w];
      x(1, w + 4 * h) = -v[h][w];
    }
  return x;
}
}  // namespace

TEST_CASE("MaxPool2d: output sizes follow PyTorch's formula", "[maxpool]") {
  REQUIRE(MaxPool2d<float>(3, 2, 1).set_image_size({7, 6}) == ImageSize{4, 3});
  REQUIRE(MaxPool2d<float>(2).set_image_size({7, 5}) == ImageSize{3, 2});
  REQUIRE(MaxPool2d<float>(3, 1, 1).set_image_size({7, 5}) == ImageSize{7, 5});
  REQUIRE(MaxPool2d<float>(4, 3, 2).set_image_size({7, 5}) == ImageSize{3, 2});
  REQUIRE(MaxPool2d<float>(3, 2, 1).set_image_size({1, 1}) == ImageSize{1, 1});
  MaxPool2d<float> p(3, 2, 1);
  REQUIRE(p.stride() == 2);
  REQUIRE(MaxPool2d<float>(3).stride() == 3);
  p.set_image_size({9, 8});
  REQUIRE(p.image_size() == ImageSize{9, 8});
  REQUIRE(p.output_image_size() == ImageSize{5, 4});
}

TEST_CASE("MaxPool2d: hand-computed maxima and gradient routing", "[maxpool]") {
  SECTION("kernel 2, stride 2, two channels") {
    MaxPool2d<double> pool(2);
    pool.set_image_size({4, 4});
    const Eigen::MatrixXd x = two_channel_4x4();
    Eigen::MatrixXd expected(2, 4);
    expected << 4, 9, 8, 6,  //
        -1, 0, 0, -2;
    REQUIRE(pool.forward(x) == expected);
    Eigen::MatrixXd g(2, 4);
    g << 1, 2, 3, 4,  //
        10, 20, 30, 40;
    Eigen::MatrixXd dx = Eigen::MatrixXd::Zero(2, 16);
    dx(0, 0 + 4 * 1) = 1;   // 4 at (1, 0)
    dx(0, 2 + 4 * 1) = 2;   // 9 at (1, 2)
    dx(0, 1 + 4 * 2) = 3;   // 8 at (2, 1)
    dx(0, 3 + 4 * 2) = 4;   // 6 at (2, 3)
    dx(1, 0 + 4 * 0) = 10;  // -1 at (0, 0)
    dx(1, 3 + 4 * 0) = 20;  // -0 at (0, 3)
    dx(1, 0 + 4 * 2) = 30;  // -0 at (2, 0)
    dx(1, 3 + 4 * 3) = 40;  // -2 at (3, 3)
    REQUIRE(pool.backward(g) == dx);
  }
  SECTION("padding counts as -inf; overlapping windows add up") {
    MaxPool2d<double> pool(3, 1, 1);
    REQUIRE(pool.set_image_size({3, 3}) == ImageSize{3, 3});
    Eigen::MatrixXd x(1, 9);
    for (int i = 0; i < 9; ++i) x(0, i) = -(1 + i);  // pixel (h, w) = -(1 + 3h + w)
    Eigen::MatrixXd expected(1, 9);
    expected << -1, -1, -2, -1, -1, -2, -4, -4, -5;
    REQUIRE(pool.forward(x) == expected);
    Eigen::MatrixXd dx(1, 9);
    dx << 4, 2, 0, 2, 1, 0, 0, 0, 0;
    REQUIRE(pool.backward(Eigen::MatrixXd::Ones(1, 9)) == dx);
  }
  SECTION("ties: the first maximum in scan order (row, then column) takes the gradient") {
    MaxPool2d<double> pool(2);
    pool.set_image_size({2, 2});
    Eigen::MatrixXd x(2, 4);
    x << 5, 5, 5, 5,  //
        1, 7, 7, 7;
    REQUIRE(pool.forward(x) == (Eigen::MatrixXd(2, 1) << 5, 7).finished());
    Eigen::MatrixXd dx(2, 4);
    dx << 3, 0, 0, 0,  //
        0, 4, 0, 0;
    REQUIRE(pool.backward((Eigen::MatrixXd(2, 1) << 3, 4).finished()) == dx);
  }
  SECTION("two samples are pooled separately") {
    MaxPool2d<double, 1> pool(2);
    pool.set_image_size({2, 2});
    Batch<double, 1> x(1, 8);
    x << 1, 2, 3, 4, 8, 7, 6, 5;
    REQUIRE(pool.forward(x) == (Batch<double, 1>(1, 2) << 4, 8).finished());
  }
}

TEST_CASE("MaxPool2d: gradients (double, Dynamic and static channels, odd image sizes)", "[maxpool][gradient]") {
  for (const auto& win : k_windows) {
    INFO("kernel " << win.kernel << ", stride " << win.stride << ", padding " << win.padding);
    MaxPool2d<double> dyn(win.kernel, win.stride, win.padding);
    dyn.set_image_size({7, 5});
    rbtest::require_gradients(dyn, rbtest::distinct_batch<Eigen::MatrixXd>(4, 2 * 35, 31));
    MaxPool2d<double, 3> fixed(win.kernel, win.stride, win.padding);
    fixed.set_image_size({6, 9});
    rbtest::require_gradients(fixed, rbtest::distinct_batch<Batch<double, 3>>(3, 3 * 54, 32));
  }
  MaxPool2d<double> one(3, 2, 1);
  one.set_image_size({1, 1});  // a single pixel, surrounded by padding
  rbtest::require_gradients(one, rbtest::distinct_batch<Eigen::MatrixXd>(2, 3, 33));
}

TEST_CASE("MaxPool2d: infer equals forward bit for bit, buffers are reused", "[maxpool]") {
  MaxPool2d<float, 3> pool(3, 2, 1);
  pool.set_image_size({7, 5});
  const auto x = rbtest::random_batch<Batch<float, 3>>(3, 4 * 35, 34);
  rbtest::require_infer_matches_forward(pool, x);
  const float* y = pool.forward(x).data();
  const auto g = rbtest::random_batch<Batch<float, 3>>(3, pool.forward(x).cols(), 35);
  const float* dx = pool.backward(g).data();
  REQUIRE(pool.forward(x).data() == y);
  REQUIRE(pool.backward(g).data() == dx);
}

TEST_CASE("MaxPool2d: the thread count does not change the results", "[maxpool][threads]") {
  MaxPool2d<double> pool(3, 2, 1);
  pool.set_image_size({16, 16});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(8, 64 * 256, 36);
  const int saved = num_threads();
  set_num_threads(1);
  const Eigen::MatrixXd y1 = pool.forward(x);
  const auto g = rbtest::random_batch<Eigen::MatrixXd>(8, y1.cols(), 37);
  const Eigen::MatrixXd dx1 = pool.backward(g);
  set_num_threads(2);
  const bool same_y = rbtest::bitwise_equal(pool.forward(x), y1);
  const bool same_dx = rbtest::bitwise_equal(pool.backward(g), dx1);
  set_num_threads(saved);
  REQUIRE(same_y);
  REQUIRE(same_dx);
}

TEST_CASE("MaxPool2d: float smoke test agrees with double", "[maxpool][float]") {
  const auto xd = rbtest::distinct_batch<Eigen::MatrixXd>(5, 3 * 35, 38);
  const auto gd = rbtest::random_batch<Eigen::MatrixXd>(5, 3 * 12, 39);
  MaxPool2d<double> d(3, 2, 1);
  MaxPool2d<float, 5> f(3, 2, 1);
  REQUIRE(d.set_image_size({7, 5}) == ImageSize{4, 3});
  f.set_image_size({7, 5});
  rbtest::require_float_agrees(f, d, xd, gd, 1e-6);
}

TEST_CASE("MaxPool2d: errors name the layer", "[maxpool][errors]") {
  REQUIRE_THROWS_WITH(MaxPool2d<float>(0), contains("MaxPool2d") && contains("kernel"));
  REQUIRE_THROWS_WITH(MaxPool2d<float>(3, 0), contains("MaxPool2d") && contains("stride"));
  REQUIRE_THROWS_AS(MaxPool2d<float>(3, -2), std::invalid_argument);
  REQUIRE_THROWS_WITH(MaxPool2d<float>(3, 1, 2), contains("MaxPool2d") && contains("padding"));
  REQUIRE_THROWS_AS(MaxPool2d<float>(3, 1, 2), std::invalid_argument);
  REQUIRE_THROWS_AS(MaxPool2d<float>(2, 2, -1), std::invalid_argument);
  REQUIRE_NOTHROW(MaxPool2d<float>(4, 1, 2));
  REQUIRE_THROWS_WITH((MaxPool2d<float, 3>(2, 2, 0, 4)), contains("MaxPool2d"));

  MaxPool2d<float> pool(3);
  REQUIRE_THROWS_WITH(pool.set_image_size({2, 5}), contains("MaxPool2d") && contains("2x5"));
  REQUIRE_THROWS_AS(pool.set_image_size({0, 5}), std::invalid_argument);

  Eigen::MatrixXf x = Eigen::MatrixXf::Ones(2, 36);
  REQUIRE_THROWS_AS(pool.forward(x), std::logic_error);
  REQUIRE_THROWS_WITH(pool.forward(x), contains("MaxPool2d") && contains("image size not set"));
  MaxPool2d<float>::Workspace ws;
  REQUIRE_THROWS_AS(pool.infer(x, ws), std::logic_error);
  REQUIRE_THROWS_AS(pool.backward(x), std::logic_error);  // before any forward

  pool.set_image_size({7, 5});
  REQUIRE_THROWS_AS(pool.forward(x), std::invalid_argument);  // 36 columns: not whole 7x5 images
  REQUIRE_THROWS_WITH(pool.forward(x), contains("MaxPool2d") && contains("7x5"));
  REQUIRE_THROWS_AS(pool.infer(x, ws), std::invalid_argument);

  Eigen::MatrixXf ok = Eigen::MatrixXf::Ones(2, 70);
  REQUIRE(pool.forward(ok).cols() == 2 * 2 * 1);
  REQUIRE_THROWS_WITH(pool.backward(Eigen::MatrixXf::Ones(2, 3)), contains("MaxPool2d") && contains("gradient"));

  MaxPool2d<float> three(2, 2, 0, 3);
  three.set_image_size({2, 2});
  REQUIRE(three.in_features() == 3);
  const Eigen::MatrixXf two_channels = Eigen::MatrixXf::Ones(2, 8);
  REQUIRE_THROWS_WITH(three.forward(two_channels), contains("MaxPool2d") && contains("expected 3"));
}
