#include "layers/pooling_helpers.hpp"

#include <resblocks/blocks/sequential.hpp>
#include <resblocks/layers/global_avg_pool.hpp>
#include <resblocks/layers/linear.hpp>

#include <stdexcept>

using namespace resblocks;
using rbtest::contains;

static_assert(Layer<GlobalAvgPool<float>>);
static_assert(Layer<GlobalAvgPool<double, 3>>);
static_assert(ChainsInto<GlobalAvgPool<float, 8>, Linear<float, 8, 4>>);

TEST_CASE("GlobalAvgPool: hand-computed means and gradients", "[globalavgpool]") {
  GlobalAvgPool<double> pool;
  REQUIRE(pool.set_image_size({2, 2}) == ImageSize{1, 1});
  REQUIRE(pool.image_size() == ImageSize{2, 2});
  Eigen::MatrixXd x(2, 8);      // two samples of 2x2
  x << 1, 2, 3, 4, 5, 6, 7, 8,  //
      10, 0, 0, 2, -4, -4, -4, -4;
  Eigen::MatrixXd expected(2, 2);
  expected << 2.5, 6.5,  //
      3, -4;
  REQUIRE(pool.forward(x) == expected);
  Eigen::MatrixXd g(2, 2);
  g << 4, 8,  //
      -2, 1;
  Eigen::MatrixXd dx(2, 8);
  dx << 1, 1, 1, 1, 2, 2, 2, 2,  //
      -0.5, -0.5, -0.5, -0.5, 0.25, 0.25, 0.25, 0.25;
  REQUIRE(pool.backward(g) == dx);
}

TEST_CASE("GlobalAvgPool: gradients (double, Dynamic and static channels, odd image sizes)",
          "[globalavgpool][gradient]") {
  const ImageSize sizes[] = {{7, 5}, {1, 1}, {3, 8}};
  for (const auto size : sizes) {
    INFO("image " << size.str());
    GlobalAvgPool<double> dyn;
    dyn.set_image_size(size);
    rbtest::require_gradients(dyn, rbtest::random_batch<Eigen::MatrixXd>(4, 3 * size.area(), 51));
    GlobalAvgPool<double, 3> fixed;
    fixed.set_image_size(size);
    rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 3>>(3, 2 * size.area(), 52));
  }
}

TEST_CASE("GlobalAvgPool: feeds a Linear inside a Sequential", "[globalavgpool][gradient]") {
  Sequential<GlobalAvgPool<double, 3>, Linear<double, 3, 2>> net;
  REQUIRE(net.set_image_size({7, 5}) == ImageSize{1, 1});
  rbtest::require_gradients(net, rbtest::random_batch<Batch<double, 3>>(3, 2 * 35, 53));
}

TEST_CASE("GlobalAvgPool: infer equals forward bit for bit, buffers are reused", "[globalavgpool]") {
  GlobalAvgPool<float, 3> pool;
  pool.set_image_size({7, 5});
  const auto x = rbtest::random_batch<Batch<float, 3>>(3, 4 * 35, 54);
  rbtest::require_infer_matches_forward(pool, x);
  const float* y = pool.forward(x).data();
  const auto g = rbtest::random_batch<Batch<float, 3>>(3, 4, 55);
  const float* dx = pool.backward(g).data();
  REQUIRE(pool.forward(x).data() == y);
  REQUIRE(pool.backward(g).data() == dx);
}

TEST_CASE("GlobalAvgPool: float smoke test agrees with double", "[globalavgpool][float]") {
  GlobalAvgPool<double> d;
  GlobalAvgPool<float, 5> f;
  d.set_image_size({7, 5});
  f.set_image_size({7, 5});
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(5, 3 * 35, 56),
                               rbtest::random_batch<Eigen::MatrixXd>(5, 3, 57), 1e-6);
}

TEST_CASE("GlobalAvgPool: errors name the layer", "[globalavgpool][errors]") {
  REQUIRE_THROWS_WITH((GlobalAvgPool<float, 3>(4)), contains("GlobalAvgPool"));
  REQUIRE_THROWS_AS((GlobalAvgPool<float, 3>(4)), std::invalid_argument);
  GlobalAvgPool<float> pool;
  REQUIRE(pool.in_features() == -1);
  REQUIRE_THROWS_WITH(pool.set_image_size({0, 3}), contains("GlobalAvgPool"));
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(2, 36);
  REQUIRE_THROWS_AS(pool.forward(x), std::logic_error);
  REQUIRE_THROWS_WITH(pool.forward(x), contains("GlobalAvgPool") && contains("image size not set"));
  REQUIRE_THROWS_AS(pool.backward(x), std::logic_error);  // before any forward
  pool.set_image_size({7, 5});
  REQUIRE_THROWS_AS(pool.forward(x), std::invalid_argument);  // 36 columns: not whole 7x5 images
  REQUIRE_THROWS_WITH(pool.forward(x), contains("GlobalAvgPool") && contains("7x5"));
  const Eigen::MatrixXf ok = Eigen::MatrixXf::Ones(2, 70);
  REQUIRE(pool.forward(ok).cols() == 2);
  REQUIRE_THROWS_WITH(pool.backward(Eigen::MatrixXf::Ones(2, 3)), contains("GlobalAvgPool") && contains("gradient"));
  GlobalAvgPool<float> three(3);
  three.set_image_size({7, 5});
  REQUIRE_THROWS_AS(three.forward(ok), std::invalid_argument);  // 2 channels, expected 3
}
