#include "layers/pooling_helpers.hpp"

#include <resblocks/layers/avg_pool2d.hpp>

#include <stdexcept>

using namespace resblocks;
using rbtest::contains;
using rbtest::k_windows;

static_assert(Layer<AvgPool2d<float>>);
static_assert(Layer<AvgPool2d<double, 3>>);

namespace {
// One 3x3 image, pixel (h, w) = 1 + 3h + w, as columns w + 3h.
Eigen::MatrixXd ramp_3x3() {
  Eigen::MatrixXd x(1, 9);
  for (int i = 0; i < 9; ++i) x(0, i) = 1 + i;
  return x;
}
}  // namespace

TEST_CASE("AvgPool2d: output sizes follow PyTorch's formula", "[avgpool]") {
  REQUIRE(AvgPool2d<float>(3, 2, 1).set_image_size({7, 6}) == ImageSize{4, 3});
  REQUIRE(AvgPool2d<float>(2).set_image_size({7, 5}) == ImageSize{3, 2});
  REQUIRE(AvgPool2d<float>(4, 3, 2).set_image_size({7, 5}) == ImageSize{3, 2});
  AvgPool2d<float> p(3, 2, 1);
  REQUIRE(p.kernel_size() == 3);
  REQUIRE(p.padding() == 1);
  p.set_image_size({9, 8});
  REQUIRE(p.image_size() == ImageSize{9, 8});
  REQUIRE(p.output_image_size() == ImageSize{5, 4});
}

TEST_CASE("AvgPool2d: hand-computed means and gradients", "[avgpool]") {
  const Eigen::MatrixXd x = ramp_3x3();
  SECTION("kernel 2, stride 1") {
    AvgPool2d<double> pool(2, 1);
    REQUIRE(pool.set_image_size({3, 3}) == ImageSize{2, 2});
    REQUIRE(pool.forward(x) == (Eigen::MatrixXd(1, 4) << 3, 4, 6, 7).finished());
    Eigen::MatrixXd dx(1, 9);
    dx << 1, 3, 2, 4, 10, 6, 3, 7, 4;  // g = (1, 2, 3, 4), each over 4 pixels
    REQUIRE(pool.backward((Eigen::MatrixXd(1, 4) << 4, 8, 12, 16).finished()) == dx);
  }
  SECTION("padding counts as zeros and in the divisor (count_include_pad=True)") {
    AvgPool2d<double> pool(3, 2, 1);
    REQUIRE(pool.set_image_size({3, 3}) == ImageSize{2, 2});
    const Eigen::MatrixXd expected = (Eigen::MatrixXd(1, 4) << 12, 16, 24, 28).finished() / 9.0;
    REQUIRE(rbtest::rel_diff(pool.forward(x), expected) < 1e-15);
    Eigen::MatrixXd dx(1, 9);
    dx << 1, 2, 1, 2, 4, 2, 1, 2, 1;  // windows covering each pixel
    REQUIRE(rbtest::rel_diff(pool.backward(Eigen::MatrixXd::Ones(1, 4)), dx / 9.0) < 1e-15);
  }
  SECTION("channels and samples are pooled separately") {
    AvgPool2d<double, 2> pool(2);
    pool.set_image_size({2, 2});
    Batch<double, 2> xs(2, 8);
    xs << 1, 2, 3, 4, 5, 6, 7, 8,  //
        0, 0, 0, 4, -8, -8, -8, -8;
    Batch<double, 2> expected(2, 2);
    expected << 2.5, 6.5,  //
        1, -8;
    REQUIRE(pool.forward(xs) == expected);
  }
}

TEST_CASE("AvgPool2d: gradients (double, Dynamic and static channels, odd image sizes)", "[avgpool][gradient]") {
  for (const auto& win : k_windows) {
    INFO("kernel " << win.kernel << ", stride " << win.stride << ", padding " << win.padding);
    AvgPool2d<double> dyn(win.kernel, win.stride, win.padding);
    dyn.set_image_size({7, 5});
    rbtest::require_gradients(dyn, rbtest::random_batch<Eigen::MatrixXd>(4, 2 * 35, 41));
    AvgPool2d<double, 3> fixed(win.kernel, win.stride, win.padding);
    fixed.set_image_size({6, 9});
    rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 3>>(3, 3 * 54, 42));
  }
}

TEST_CASE("AvgPool2d: infer equals forward bit for bit, buffers are reused", "[avgpool]") {
  AvgPool2d<float, 3> pool(3, 2, 1);
  pool.set_image_size({7, 5});
  const auto x = rbtest::random_batch<Batch<float, 3>>(3, 4 * 35, 43);
  rbtest::require_infer_matches_forward(pool, x);
  const float* y = pool.forward(x).data();
  const auto g = rbtest::random_batch<Batch<float, 3>>(3, pool.forward(x).cols(), 44);
  const float* dx = pool.backward(g).data();
  REQUIRE(pool.forward(x).data() == y);
  REQUIRE(pool.backward(g).data() == dx);
}

TEST_CASE("AvgPool2d: the thread count does not change the results", "[avgpool][threads]") {
  AvgPool2d<double> pool(3, 2, 1);
  pool.set_image_size({16, 16});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(8, 64 * 256, 45);
  const int saved = num_threads();
  set_num_threads(1);
  const Eigen::MatrixXd y1 = pool.forward(x);
  const auto g = rbtest::random_batch<Eigen::MatrixXd>(8, y1.cols(), 46);
  const Eigen::MatrixXd dx1 = pool.backward(g);
  set_num_threads(2);
  const bool same_y = rbtest::bitwise_equal(pool.forward(x), y1);
  const bool same_dx = rbtest::bitwise_equal(pool.backward(g), dx1);
  set_num_threads(saved);
  REQUIRE(same_y);
  REQUIRE(same_dx);
}

TEST_CASE("AvgPool2d: float smoke test agrees with double", "[avgpool][float]") {
  AvgPool2d<double> d(3, 2, 1);
  AvgPool2d<float, 5> f(3, 2, 1);
  d.set_image_size({7, 5});
  f.set_image_size({7, 5});
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(5, 3 * 35, 47),
                               rbtest::random_batch<Eigen::MatrixXd>(5, 3 * 12, 48), 1e-6);
}

TEST_CASE("AvgPool2d: errors name the layer", "[avgpool][errors]") {
  REQUIRE_THROWS_WITH(AvgPool2d<float>(0), contains("AvgPool2d") && contains("kernel"));
  REQUIRE_THROWS_WITH(AvgPool2d<float>(2, 0), contains("AvgPool2d") && contains("stride"));
  REQUIRE_THROWS_WITH(AvgPool2d<float>(2, 2, 2), contains("AvgPool2d") && contains("padding"));
  REQUIRE_THROWS_AS(AvgPool2d<float>(2, 2, 2), std::invalid_argument);
  REQUIRE_THROWS_WITH((AvgPool2d<double, 3>(2, 2, 0, 5)), contains("AvgPool2d"));

  AvgPool2d<float> pool(2);
  REQUIRE_THROWS_WITH(pool.set_image_size({1, 4}), contains("AvgPool2d"));
  REQUIRE_THROWS_AS(pool.set_image_size({1, 4}), std::invalid_argument);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(2, 36);
  REQUIRE_THROWS_AS(pool.forward(x), std::logic_error);
  REQUIRE_THROWS_WITH(pool.forward(x), contains("AvgPool2d") && contains("image size not set"));
  REQUIRE_THROWS_AS(pool.backward(x), std::logic_error);  // before any forward
  pool.set_image_size({7, 5});
  REQUIRE_THROWS_AS(pool.forward(x), std::invalid_argument);  // 36 columns: not whole 7x5 images
  REQUIRE_THROWS_WITH(pool.forward(x), contains("AvgPool2d") && contains("7x5"));
  AvgPool2d<float>::Workspace ws;
  REQUIRE_THROWS_AS(pool.infer(x, ws), std::invalid_argument);
  const Eigen::MatrixXf ok = Eigen::MatrixXf::Ones(2, 70);
  REQUIRE(pool.forward(ok).cols() == 2 * 3 * 2);
  REQUIRE_THROWS_WITH(pool.backward(Eigen::MatrixXf::Ones(2, 3)), contains("AvgPool2d") && contains("gradient"));
}
