#include "support/helpers.hpp"

#include <resblocks/layers/linear.hpp>

#include <stdexcept>

using namespace resblocks;

TEST_CASE("Linear: gradients (double, static sizes)", "[linear][gradient]") {
  Linear<double, 5, 3> fc;
  const auto x = rbtest::random_batch<Batch<double, 5>>(5, 4, 11);
  rbtest::require_gradients(fc, x);
}

TEST_CASE("Linear: gradients (double, dynamic sizes, with and without bias, batch of one)", "[linear][gradient]") {
  Linear<double> fc(6, 2);
  rbtest::require_gradients(fc, rbtest::random_batch<Eigen::MatrixXd>(6, 3, 12));
  rbtest::require_gradients(fc, rbtest::random_batch<Eigen::MatrixXd>(6, 1, 13));
  Linear<double> nb(4, 7, false);
  REQUIRE_FALSE(nb.has_bias());
  rbtest::require_gradients(nb, rbtest::random_batch<Eigen::MatrixXd>(4, 5, 14));
}

TEST_CASE("Linear: gradients through the large, threaded GEMM path", "[linear][gradient]") {
  Linear<double> fc(70, 90);
  // Only a few columns keep the finite differences cheap; the weight GEMM is 90x70x3.
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(70, 3, 15);
  rbtest::require_gradients(fc, x);
}

TEST_CASE("Linear: forward computes W x + b", "[linear]") {
  Linear<double> fc(3, 2);
  fc.weight() << 1, 2, 3, 4, 5, 6;
  fc.bias() << 0.5, -1;
  Eigen::MatrixXd x(3, 2);
  x << 1, 0, 0, 1, 2, -1;  // columns (1,0,2) and (0,1,-1)
  const auto& y = fc.forward(x);
  Eigen::MatrixXd expected(2, 2);
  expected << 1 + 6 + 0.5, 2 - 3 + 0.5, 4 + 12 - 1, 5 - 6 - 1;
  REQUIRE(y.isApprox(expected, 1e-15));
}

TEST_CASE("Linear: backward accumulates parameter gradients until zero_grad", "[linear]") {
  Linear<double, 3, 2> fc;
  const auto x = rbtest::random_batch<Batch<double, 3>>(3, 4, 16);
  const auto g = rbtest::random_batch<Batch<double, 2>>(2, 4, 17);
  fc.zero_grad();
  fc.forward(x);
  fc.backward(g);
  const Eigen::MatrixXd once_w = fc.weight_grad();
  const Eigen::VectorXd once_b = fc.bias_grad();
  REQUIRE(once_w.isApprox(g * x.transpose(), 1e-14));
  REQUIRE(once_b.isApprox(g.rowwise().sum(), 1e-14));
  fc.forward(x);
  fc.backward(g);
  REQUIRE(fc.weight_grad().isApprox(2 * once_w, 1e-14));
  REQUIRE(fc.bias_grad().isApprox(2 * once_b, 1e-14));
  fc.zero_grad();
  REQUIRE(fc.weight_grad().isZero());
  REQUIRE(fc.bias_grad().isZero());
}

TEST_CASE("Linear: zero_grad zeroes a large layer's gradients, on 1 and 2 threads", "[linear]") {
  // 1024 × 512 weights: zero_grad zeroes them in parallel ranges on 2 threads (detail::parallel_zero).
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Linear<float> fc(512, 1024);
    const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(512, 8, 20);
    fc.forward(x);
    fc.backward(rbtest::random_batch<Eigen::MatrixXf>(1024, 8, 21));
    CAPTURE(threads);
    REQUIRE((fc.weight_grad().array() != 0.0f).count() > 1024 * 512 / 2);
    fc.zero_grad();
    REQUIRE(fc.weight_grad().isZero(0.0f));
    REQUIRE(fc.bias_grad().isZero(0.0f));
  }
  set_num_threads(saved);
}

TEST_CASE("Linear: float smoke test agrees with double", "[linear][float]") {
  Linear<double> d(33, 17);
  Linear<float> f(33, 17);
  rbtest::copy_parameters(d, f);
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(33, 9, 18),
                               rbtest::random_batch<Eigen::MatrixXd>(17, 9, 19));
  REQUIRE(rbtest::rel_diff(f.weight_grad(), d.weight_grad()) < 1e-5);
}

TEST_CASE("Linear: dynamic shape mismatches throw invalid_argument naming layer and shapes", "[linear][errors]") {
  Linear<float> fc(4, 3);
  Eigen::MatrixXf bad(5, 2);
  try {
    fc.forward(bad);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    REQUIRE(what.find("Linear") != std::string::npos);
    REQUIRE(what.find("5x2") != std::string::npos);
    REQUIRE(what.find("expected 4") != std::string::npos);
  }
  Linear<float>::Workspace ws;
  REQUIRE_THROWS_AS(fc.infer(bad, ws), std::invalid_argument);
  Eigen::MatrixXf good(4, 2);
  good.setOnes();
  fc.forward(good);
  Eigen::MatrixXf bad_grad(3, 5);
  REQUIRE_THROWS_AS(fc.backward(bad_grad), std::invalid_argument);
  REQUIRE_THROWS_AS(Linear<float>(-1, 3), std::invalid_argument);
  REQUIRE_THROWS_AS((Linear<float, 4, 3>(5, 3)), std::invalid_argument);
}

TEST_CASE("Linear: backward before forward, or on a fresh copy, is a logic_error", "[linear][errors]") {
  Linear<float, 2, 2> fc;
  Batch<float, 2> g = Batch<float, 2>::Ones(2, 3);
  REQUIRE_THROWS_AS(fc.backward(g), std::logic_error);
  Batch<float, 2> x = Batch<float, 2>::Ones(2, 3);
  fc.forward(x);
  Linear<float, 2, 2> copy = fc;
  REQUIRE_THROWS_AS(copy.backward(g), std::logic_error);
  REQUIRE_NOTHROW(fc.backward(g));
}

TEST_CASE("Linear: parameters are named weight and bias, PyTorch shapes", "[linear][names]") {
  Linear<float> fc(4, 3);
  std::vector<std::string> names;
  fc.for_each_parameter([&](std::string_view n, const auto& v, const auto& g) {
    names.emplace_back(n);
    REQUIRE(v.rows() == g.rows());
    REQUIRE(v.cols() == g.cols());
  });
  REQUIRE(names == std::vector<std::string>{"weight", "bias"});
  REQUIRE(fc.weight().rows() == 3);
  REQUIRE(fc.weight().cols() == 4);
}

TEST_CASE("Linear: infer equals forward bit for bit", "[linear][infer]") {
  Linear<float> fc(300, 200);
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(300, 64, 20);
  Linear<float>::Workspace ws;
  const Eigen::MatrixXf y = fc.forward(x);
  REQUIRE(fc.infer(x, ws) == y);
}
