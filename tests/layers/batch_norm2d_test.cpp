#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

using namespace resblocks;

namespace {
// Batch statistics per channel from the definition: mean and biased variance over all columns.
void moments(const Eigen::MatrixXd& x, Eigen::VectorXd& mean, Eigen::VectorXd& var) {
  mean.resize(x.rows());
  var.resize(x.rows());
  for (Index r = 0; r < x.rows(); ++r) {
    double s = 0;
    for (Index c = 0; c < x.cols(); ++c) s += x(r, c);
    mean(r) = s / double(x.cols());
    double q = 0;
    for (Index c = 0; c < x.cols(); ++c) q += (x(r, c) - mean(r)) * (x(r, c) - mean(r));
    var(r) = q / double(x.cols());
  }
}

template <class BN>
void randomise_affine(BN& bn, std::uint64_t seed) {
  Generator g(seed);
  fill_uniform(bn.weight(), 1.0, g);
  bn.weight().array() += 1.5;
  fill_uniform(bn.bias(), 1.0, g);
}
}  // namespace

TEST_CASE("BatchNorm2d: training forward normalises with batch statistics", "[batch_norm]") {
  BatchNorm2d<double> bn(3);
  randomise_affine(bn, 1);
  Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(3, 40, 2) * 3.0;
  x.row(1).array() += 5.0;  // a large mean must not hurt the variance
  Eigen::VectorXd mean, var;
  moments(x, mean, var);
  const Eigen::MatrixXd& y = bn.forward(x);
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 40; ++c)
      REQUIRE(std::abs(y(r, c) - (bn.weight()(r) * (x(r, c) - mean(r)) / std::sqrt(var(r) + 1e-5) + bn.bias()(r))) <
              1e-12);
  // Running statistics, as PyTorch: momentum 0.1, unbiased variance.
  for (Index r = 0; r < 3; ++r) {
    REQUIRE(std::abs(bn.running_mean()(r) - 0.1 * mean(r)) < 1e-14);
    REQUIRE(std::abs(bn.running_var()(r) - (0.9 + 0.1 * var(r) * 40.0 / 39.0)) < 1e-13);
  }
  REQUIRE(bn.num_batches_tracked() == 1);
}

TEST_CASE("BatchNorm2d: statistics merged over many partitions equal the direct ones", "[batch_norm]") {
  // 2 channels x 70000 columns: tens of partitions, merged in order.
  BatchNorm2d<double> bn(2);
  Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(2, 70000, 3);
  x.row(0).array() = x.row(0).array() * 0.01 + 1000.0;
  Eigen::VectorXd mean, var;
  moments(x, mean, var);
  const Eigen::MatrixXd& y = bn.forward(x);
  for (Index r = 0; r < 2; ++r) {
    REQUIRE(std::abs(y.row(r).mean()) < 1e-9);
    const double expected = var(r) / (var(r) + 1e-5);
    REQUIRE(std::abs(y.row(r).squaredNorm() / 70000.0 - expected) < 1e-9);
  }
}

TEST_CASE("BatchNorm2d: with an image size, statistics per sample, and moments summed by the layer before",
          "[batch_norm]") {
  // 3 channels of 5 samples of 4x6 images; row 1 with a large mean (Chan's merge must not lose it).
  Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(3, 5 * 24, 11) * 2.0;
  x.row(1).array() += 1000.0;
  Eigen::VectorXd mean, var;
  moments(x, mean, var);
  BatchNorm2d<double> plain(3), per_sample(3);
  REQUIRE(per_sample.set_image_size({4, 6}) == ImageSize{4, 6});  // the size passes through
  const Eigen::MatrixXd y_plain = plain.forward(x);
  const Eigen::MatrixXd y = per_sample.forward(x);
  for (Index r = 0; r < 3; ++r) {
    REQUIRE(std::abs(per_sample.running_mean()(r) - 0.1 * mean(r)) < 1e-12);
    REQUIRE(std::abs(per_sample.running_var()(r) - (0.9 + 0.1 * var(r) * 120.0 / 119.0)) < 1e-12);
  }
  REQUIRE((y - y_plain).cwiseAbs().maxCoeff() < 1e-12);  // other partitions: the last bits may differ

  // The layer before hands over each sample's moments as it finishes it, in any order: the same bits.
  BatchNorm2d<double> handed(3);
  handed.set_image_size({4, 6});
  const detail::SampleBlocks blocks{24, 5};
  REQUIRE(handed.takes_sample_moments(blocks));
  handed.begin_sample_moments(blocks);
  for (const Index sample : {3, 0, 4, 2, 1}) handed.sample_moments(x, sample * 24, 24);
  handed.end_sample_moments(x);
  REQUIRE(handed.forward(x) == y);
  REQUIRE(handed.running_var() == per_sample.running_var());
  REQUIRE(handed.forward(x) == y);  // used once: the next forward sums them itself

  // Not taken: other blocks than its partitions, samples too large for one partition, evaluation mode.
  REQUIRE_FALSE(handed.takes_sample_moments({}));
  REQUIRE_FALSE(handed.takes_sample_moments({12, 10}));
  REQUIRE_FALSE(plain.takes_sample_moments(blocks));
  BatchNorm2d<double> large(8);
  large.set_image_size({256, 256});  // 8 x 65536 values a sample: fixed partitions
  REQUIRE_FALSE(large.takes_sample_moments({65536, 2}));
  handed.set_training(false);
  REQUIRE_FALSE(handed.takes_sample_moments(blocks));
  handed.set_training(true);
  // A block that is not one sample's partition is a programming error, not silently wrong statistics.
  handed.begin_sample_moments(blocks);
  REQUIRE_THROWS_AS(handed.sample_moments(x, 12, 24), std::logic_error);
  REQUIRE_THROWS_AS(handed.sample_moments(x, 0, 48), std::logic_error);
}

TEST_CASE("BatchNorm2d: backward sums handed over by a later layer, sample by sample or several at once",
          "[batch_norm]") {
  // 3 channels of 6 samples of 4x6 images: the backward sums per sample (its statistics' partitions).
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(3, 6 * 24, 12) * 2.0;
  const Eigen::MatrixXd g = rbtest::random_batch<Eigen::MatrixXd>(3, 6 * 24, 13);
  for (const bool training : {true, false}) {
    INFO("training " << training);
    BatchNorm2d<double> own(3);
    own.set_image_size({4, 6});
    own.set_training(training);
    auto handed = own;
    own.forward(x);
    const Eigen::MatrixXd dx = own.backward(g);
    // The later layer's pass hands over whole samples in any order, one or several at a time: the same bits.
    handed.forward(x);
    const detail::SampleBlocks blocks{24, 6};
    REQUIRE(handed.takes_sample_gradient_sums(blocks));
    handed.begin_sample_gradient_sums(blocks);
    handed.sample_gradient_sums(g, 4 * 24, 2 * 24);
    for (const Index sample : {1, 0, 3, 2}) handed.sample_gradient_sums(g, sample * 24, 24);
    handed.end_sample_gradient_sums(g);
    REQUIRE(handed.backward(g) == dx);
    REQUIRE(handed.weight_grad() == own.weight_grad());
    REQUIRE(handed.bias_grad() == own.bias_grad());
    // Used once: the next backward (of other values in the same buffer) sums them itself.
    Eigen::MatrixXd g2 = g;
    handed.sample_gradient_sums(g2, 0, 6 * 24);
    handed.end_sample_gradient_sums(g2);
    handed.forward(x);  // a forward drops sums handed over before it
    g2 *= 3.0;
    own.forward(x);
    REQUIRE(handed.backward(g2) == own.backward(g2));
  }
  // Not taken: blocks other than its partitions, or without an image size. A block that is not
  // whole partitions, or a backward before any forward, is a programming error.
  BatchNorm2d<double> bn(3);
  REQUIRE_FALSE(bn.takes_sample_gradient_sums({24, 6}));
  bn.set_image_size({4, 6});
  REQUIRE_FALSE(bn.takes_sample_gradient_sums({12, 12}));
  REQUIRE_FALSE(bn.takes_sample_gradient_sums({}));
  bn.begin_sample_gradient_sums({24, 6});
  REQUIRE_THROWS_AS(bn.sample_gradient_sums(g, 0, 24), std::logic_error);
  bn.forward(x);
  bn.begin_sample_gradient_sums({24, 6});
  REQUIRE_THROWS_AS(bn.sample_gradient_sums(g, 12, 24), std::logic_error);
  REQUIRE_THROWS_AS(bn.sample_gradient_sums(g, 0, 36), std::logic_error);
  REQUIRE_THROWS_AS(bn.sample_gradient_sums(g, 5 * 24, 48), std::logic_error);
  REQUIRE_THROWS_AS(bn.sample_gradient_sums(g.leftCols(48), 0, 24), std::logic_error);
}

TEST_CASE("BatchNorm2d: evaluation mode uses running statistics", "[batch_norm]") {
  BatchNorm2d<double> bn(2);
  randomise_affine(bn, 4);
  bn.running_mean() << 0.5, -1.0;
  bn.running_var() << 2.0, 0.25;
  bn.set_training(false);
  REQUIRE_FALSE(bn.training());
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(2, 7, 5);
  const Eigen::MatrixXd& y = bn.forward(x);
  for (Index r = 0; r < 2; ++r)
    for (Index c = 0; c < 7; ++c)
      REQUIRE(std::abs(y(r, c) -
                       (bn.weight()(r) * (x(r, c) - bn.running_mean()(r)) / std::sqrt(bn.running_var()(r) + 1e-5) +
                        bn.bias()(r))) < 1e-12);
  REQUIRE(bn.num_batches_tracked() == 0);
  REQUIRE(bn.running_mean()(0) == 0.5);
  // A single column is fine in evaluation mode, not in training mode.
  const Eigen::MatrixXd one = x.leftCols(1);
  REQUIRE_NOTHROW(bn.forward(one));
  bn.set_training(true);
  REQUIRE_THROWS_WITH(bn.forward(one), rbtest::contains("more than one value per channel"));
}

TEST_CASE("BatchNorm2d: gradients in training and evaluation mode, static and dynamic", "[batch_norm][gradient]") {
  for (bool training : {true, false}) {
    INFO("training " << training);
    BatchNorm2d<double> bn(3);
    randomise_affine(bn, 6);
    bn.running_mean() << 0.1, -0.2, 0.3;
    bn.running_var() << 1.5, 0.5, 2.0;
    bn.set_training(training);
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 11, 7);
    rbtest::require_gradients(bn, x);
    BatchNorm2d<double, 4> fixed;
    randomise_affine(fixed, 8);
    fixed.set_training(training);
    const auto x4 = rbtest::random_batch<Batch<double, 4>>(4, 9, 9);
    rbtest::require_gradients(fixed, x4);
  }
}

TEST_CASE("BatchNorm2d: float agrees with double, infer equals forward, skip and epilogue", "[batch_norm]") {
  BatchNorm2d<double> d(5);
  BatchNorm2d<float> f(5);
  randomise_affine(d, 10);
  rbtest::copy_parameters(d, f);
  const auto xd = rbtest::random_batch<Eigen::MatrixXd>(5, 300, 11);
  const auto gd = rbtest::random_batch<Eigen::MatrixXd>(5, 300, 12);
  rbtest::require_float_agrees(f, d, xd, gd);
  const Eigen::MatrixXf xf = xd.cast<float>(), gf = gd.cast<float>();
  REQUIRE(rbtest::rel_diff(f.weight_grad(), d.weight_grad()) < 1e-4);

  for (bool training : {true, false}) {
    f.set_training(training);
    const Eigen::MatrixXf y = f.forward(xf);
    BatchNorm2d<float>::Workspace ws;
    REQUIRE(f.infer(xf, ws) == y);
    Eigen::MatrixXf sum;
    f.forward_add(xf, sum, gf);
    REQUIRE(sum == (gf + y).eval());
  }
}

TEST_CASE("BatchNorm2d: parameter and buffer names, as PyTorch's state_dict", "[batch_norm]") {
  BatchNorm2d<float> bn(4);
  std::vector<std::string> names;
  bn.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  bn.for_each_buffer([&](std::string_view n, const auto&) { names.emplace_back(n); });
  REQUIRE(names == std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  REQUIRE(bn.weight() == Eigen::VectorXf::Ones(4));
  REQUIRE(bn.running_var() == Eigen::VectorXf::Ones(4));
}

TEST_CASE("BatchNorm2d: bad shapes and arguments are clear errors", "[batch_norm][errors]") {
  REQUIRE_THROWS_AS(BatchNorm2d<float>(3, {.eps = 0}), std::invalid_argument);
  REQUIRE_THROWS_AS((BatchNorm2d<float, 4>(3)), std::invalid_argument);
  BatchNorm2d<float> bn(3);
  const Eigen::MatrixXf wrong = Eigen::MatrixXf::Ones(2, 8);
  REQUIRE_THROWS_WITH(bn.forward(wrong), rbtest::contains("BatchNorm2d: input is 2x8"));
  REQUIRE_THROWS_AS(bn.backward(Eigen::MatrixXf::Ones(3, 8)), std::logic_error);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(3, 8);
  bn.forward(x);
  REQUIRE_THROWS_WITH(bn.backward(Eigen::MatrixXf::Ones(3, 9)), rbtest::contains("output gradient is 3x9"));
}
