#include "layers/pooling_helpers.hpp"

#include <resblocks/blocks/sequential.hpp>
#include <resblocks/layers/flatten.hpp>
#include <resblocks/layers/linear.hpp>
#include <resblocks/layers/max_pool2d.hpp>

#include <stdexcept>

using namespace resblocks;
using rbtest::contains;

static_assert(Layer<Flatten<float>>);
static_assert(Layer<Flatten<double, 3>>);
static_assert(ChainsInto<Flatten<float, 8>, Linear<float>>);

TEST_CASE("Flatten: torch.flatten(x, 1) order, and back", "[flatten]") {
  Flatten<double, 2> flat;
  REQUIRE(flat.out_features() == -1);
  REQUIRE(flat.set_image_size({2, 3}) == ImageSize{1, 1});
  REQUIRE(flat.in_features() == 2);
  REQUIRE(flat.out_features() == 12);
  // Pixel (h, w) of channel c in sample n holds 100n + 10c + 3h + w.
  Batch<double, 2> x(2, 12);
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 2; ++c)
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < 3; ++w) x(c, w + 3 * (h + 2 * n)) = 100 * n + 10 * c + 3 * h + w;
  const auto& y = flat.forward(x);
  REQUIRE(y.rows() == 12);
  REQUIRE(y.cols() == 2);
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 2; ++c)
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < 3; ++w) REQUIRE(y(c * 6 + h * 3 + w, n) == 100 * n + 10 * c + 3 * h + w);
  const Eigen::MatrixXd y_copy = y;
  REQUIRE(flat.backward(y_copy) == x);  // backward is the inverse permutation
}

TEST_CASE("Flatten: out_features needs both the channels and the image size", "[flatten]") {
  Flatten<float> any;
  REQUIRE(any.in_features() == -1);
  any.set_image_size({4, 5});
  REQUIRE(any.out_features() == -1);
  REQUIRE(any.image_size() == ImageSize{4, 5});
  Flatten<float> three(3);
  REQUIRE(three.out_features() == -1);
  three.set_image_size({4, 5});
  REQUIRE(three.out_features() == 60);
}

TEST_CASE("Flatten: gradients (double, Dynamic and static channels, odd image sizes)", "[flatten][gradient]") {
  const ImageSize sizes[] = {{7, 5}, {1, 1}, {3, 8}};
  for (const auto size : sizes) {
    INFO("image " << size.str());
    Flatten<double> dyn;
    dyn.set_image_size(size);
    rbtest::require_gradients(dyn, rbtest::random_batch<Eigen::MatrixXd>(4, 3 * size.area(), 61));
    Flatten<double, 3> fixed;
    fixed.set_image_size(size);
    rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 3>>(3, 2 * size.area(), 62));
  }
}

TEST_CASE("Flatten: after MaxPool2d inside a Sequential", "[flatten][gradient]") {
  // Flatten -> Linear inside one Sequential needs Sequential's feature-count checks to know that
  // Flatten changes the feature count; here Flatten ends the chain.
  Sequential<MaxPool2d<double>, Flatten<double>> net(MaxPool2d<double>(2), Flatten<double>());
  REQUIRE(net.set_image_size({5, 6}) == ImageSize{1, 1});
  const auto x = rbtest::distinct_batch<Eigen::MatrixXd>(2, 3 * 30, 63);
  rbtest::require_gradients(net, x);
  REQUIRE(net.forward(x).rows() == 2 * 2 * 3);
}

TEST_CASE("Flatten: infer equals forward bit for bit, buffers are reused", "[flatten]") {
  Flatten<float, 3> flat;
  flat.set_image_size({7, 5});
  const auto x = rbtest::random_batch<Batch<float, 3>>(3, 4 * 35, 64);
  rbtest::require_infer_matches_forward(flat, x);
  const float* y = flat.forward(x).data();
  const auto g = rbtest::random_batch<Eigen::MatrixXf>(105, 4, 65);
  const float* dx = flat.backward(g).data();
  REQUIRE(flat.forward(x).data() == y);
  REQUIRE(flat.backward(g).data() == dx);
}

TEST_CASE("Flatten: float smoke test agrees with double", "[flatten][float]") {
  Flatten<double> d;
  Flatten<float, 5> f;
  d.set_image_size({7, 5});
  f.set_image_size({7, 5});
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(5, 3 * 35, 66),
                               rbtest::random_batch<Eigen::MatrixXd>(5 * 35, 3, 67), 1e-6);
}

TEST_CASE("Flatten: errors name the layer", "[flatten][errors]") {
  REQUIRE_THROWS_WITH((Flatten<float, 3>(2)), contains("Flatten"));
  REQUIRE_THROWS_AS((Flatten<float, 3>(2)), std::invalid_argument);
  Flatten<float> flat;
  REQUIRE_THROWS_WITH(flat.set_image_size({3, 0}), contains("Flatten"));
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(2, 36);
  REQUIRE_THROWS_AS(flat.forward(x), std::logic_error);
  REQUIRE_THROWS_WITH(flat.forward(x), contains("Flatten") && contains("image size not set"));
  REQUIRE_THROWS_AS(flat.backward(x), std::logic_error);  // before any forward
  flat.set_image_size({7, 5});
  REQUIRE_THROWS_AS(flat.forward(x), std::invalid_argument);  // 36 columns: not whole 7x5 images
  REQUIRE_THROWS_WITH(flat.forward(x), contains("Flatten") && contains("7x5"));
  const Eigen::MatrixXf ok = Eigen::MatrixXf::Ones(2, 70);
  REQUIRE(flat.forward(ok).rows() == 70);
  REQUIRE_THROWS_WITH(flat.backward(Eigen::MatrixXf::Ones(70, 3)), contains("Flatten") && contains("gradient"));
  Flatten<float> three(3);
  three.set_image_size({7, 5});
  REQUIRE_THROWS_AS(three.forward(ok), std::invalid_argument);  // 2 channels, expected 3
}

TEST_CASE("Flatten: feeds a Linear inside a Sequential, sizes checked once the image size is known", "[flatten]") {
  // Flatten knows its channels, so set_image_size can check the Linear's input size.
  Sequential<MaxPool2d<double>, Flatten<double>, Linear<double>> net(MaxPool2d<double>(2), Flatten<double>(3),
                                                                     Linear<double>(3 * 2 * 2, 5));
  REQUIRE(net.in_features() == 3);  // the first known size: Flatten's channels, through the pool
  net.set_image_size({4, 5});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 20, 1);
  REQUIRE(net.forward(x).rows() == 5);
  REQUIRE(net.forward(x).cols() == 2);
  rbtest::require_gradients(net, x);
  REQUIRE_THROWS_WITH(net.set_image_size({6, 6}),
                      rbtest::contains("takes 12 features but the layer before it gives 27"));
  // With the channels unknown until forward, the Linear's own input check catches the mismatch.
  Sequential<MaxPool2d<double>, Flatten<double>, Linear<double>> open(MaxPool2d<double>(2), Flatten<double>(),
                                                                      Linear<double>(3 * 2 * 2, 5));
  open.set_image_size({6, 6});
  const auto x6 = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 36, 2);
  REQUIRE_THROWS_WITH(open.forward(x6), rbtest::contains("Linear: input is 27x2"));
}
