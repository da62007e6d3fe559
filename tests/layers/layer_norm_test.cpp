#include "support/helpers.hpp"

#include <resblocks/blocks/residual.hpp>
#include <resblocks/blocks/sequential.hpp>
#include <resblocks/core/threading.hpp>
#include <resblocks/layers/layer_norm.hpp>
#include <resblocks/layers/linear.hpp>
#include <resblocks/layers/relu.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;

namespace {

template <class LN>
void randomise_affine(LN& ln, std::uint64_t seed) {
  Generator g(seed);
  fill_uniform(ln.weight(), 1.0, g);
  ln.weight().array() += 1.5;
  fill_uniform(ln.bias(), 1.0, g);
}

/// LayerNorm from the definition, in long double: per column the mean, the biased variance, and
/// γ (x − μ)/√(σ² + ε) + β, with sums taken element by element.
template <class X, class V>
Eigen::MatrixXd reference(const X& x, const V& weight, const V& bias, double eps = 1e-5) {
  Eigen::MatrixXd y(x.rows(), x.cols());
  for (Index c = 0; c < x.cols(); ++c) {
    long double s = 0;
    for (Index r = 0; r < x.rows(); ++r) s += static_cast<long double>(x(r, c));
    const long double mean = s / x.rows();
    long double q = 0;
    for (Index r = 0; r < x.rows(); ++r) q += (x(r, c) - mean) * (x(r, c) - mean);
    const long double inv = 1.0L / std::sqrt(q / x.rows() + static_cast<long double>(eps));
    for (Index r = 0; r < x.rows(); ++r)
      y(r, c) = static_cast<double>(static_cast<long double>(weight(r)) * (x(r, c) - mean) * inv +
                                    static_cast<long double>(bias(r)));
  }
  return y;
}

}  // namespace

TEST_CASE("LayerNorm: gradients (double, static sizes)", "[layer_norm][gradient]") {
  LayerNorm<double, 5> ln;
  randomise_affine(ln, 1);
  rbtest::require_gradients(ln, rbtest::random_batch<Batch<double, 5>>(5, 4, 2));
}

TEST_CASE("LayerNorm: gradients (double, Dynamic, several gradient partitions, one column)", "[layer_norm][gradient]") {
  LayerNorm<double> ln(7);
  randomise_affine(ln, 3);
  // 70 columns: three partitions of the weight and bias gradient sums.
  Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(7, 70, 4) * 2.0;
  x.row(2).array() += 3.0;
  rbtest::require_gradients(ln, x);
  rbtest::require_gradients(ln, rbtest::random_batch<Eigen::MatrixXd>(7, 1, 5));
}

TEST_CASE("LayerNorm: gradients of one feature (y = bias)", "[layer_norm][gradient]") {
  LayerNorm<double> ln(1);
  ln.bias()(0) = 0.25;
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(1, 3, 6);
  REQUIRE(ln.forward(x).isConstant(0.25, 0));
  rbtest::require_gradients(ln, x);
}

TEST_CASE("LayerNorm: forward matches the definition, also for columns with a large mean", "[layer_norm]") {
  LayerNorm<double> ln(40);
  randomise_affine(ln, 7);
  Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(40, 9, 8) * 3.0;
  x.col(4).array() += 1e4;
  const Eigen::MatrixXd& y = ln.forward(x);
  // The mean of the offset column is off by about an ulp of 1e4 (2e-12); E[x²] − E[x]² would lose 4e-9.
  const double error = rbtest::rel_diff(y, reference(x, ln.weight(), ln.bias()));
  INFO("max relative error " << error);
  REQUIRE(error < 2e-11);
  // The cached x̂ and 1/σ are what backward uses.
  REQUIRE(ln.normalized().cols() == 9);
  REQUIRE(ln.inv_std().size() == 9);
  const Eigen::VectorXd mean = x.colwise().mean();
  for (Index c = 0; c < 9; ++c) {
    const double var = (x.col(c).array() - mean(c)).square().mean();
    REQUIRE(std::abs(ln.inv_std()(c) - 1.0 / std::sqrt(var + 1e-5)) < 1e-12 * ln.inv_std()(c));
  }

  // float, mean 100 and spread 1: E[x²] − E[x]² would lose ~4 digits of the variance (6e-4), the two passes don't.
  LayerNorm<float> lf(256);
  randomise_affine(lf, 9);
  Eigen::MatrixXf xf = rbtest::random_batch<Eigen::MatrixXf>(256, 5, 10);
  xf.array() += 100.0f;
  const Eigen::MatrixXf& yf = lf.forward(xf);
  REQUIRE(rbtest::rel_diff(yf, reference(xf, lf.weight(), lf.bias())) < 2e-5);
}

TEST_CASE("LayerNorm: parameters are named weight and bias, ones and zeros", "[layer_norm][names]") {
  LayerNorm<float> ln(4);
  std::vector<std::string> names;
  ln.for_each_parameter([&](std::string_view n, const auto& v, const auto& g) {
    names.emplace_back(n);
    REQUIRE(v.size() == 4);
    REQUIRE(g.size() == 4);
    REQUIRE(g.isZero());
  });
  REQUIRE(names == std::vector<std::string>{"weight", "bias"});
  REQUIRE(ln.weight().isOnes());
  REQUIRE(ln.bias().isZero());
  REQUIRE(ln.in_features() == 4);
  REQUIRE(ln.out_features() == 4);
  REQUIRE(ln.options().eps == 1e-5);
  const LayerNorm<float, 3> fixed;
  REQUIRE(fixed.in_features() == 3);
  Sequential<LayerNorm<float>> seq{LayerNorm<float>(4)};
  std::vector<std::string> nested;
  seq.for_each_parameter([&](std::string_view n, const auto&, const auto&) { nested.emplace_back(n); });
  REQUIRE(nested == std::vector<std::string>{"0.weight", "0.bias"});
}

TEST_CASE("LayerNorm: backward accumulates weight and bias gradients until zero_grad", "[layer_norm]") {
  LayerNorm<double, 6> ln;
  randomise_affine(ln, 11);
  const auto x = rbtest::random_batch<Batch<double, 6>>(6, 40, 12);
  const auto g = rbtest::random_batch<Batch<double, 6>>(6, 40, 13);
  ln.forward(x);
  ln.backward(g);
  // dβ = Σ_columns dy, dγ = Σ_columns dy ⊙ x̂ with x̂ from the definition.
  const Eigen::MatrixXd xhat = reference(x, Eigen::VectorXd::Ones(6), Eigen::VectorXd::Zero(6));
  REQUIRE(rbtest::rel_diff(ln.bias_grad(), g.rowwise().sum()) < 1e-14);
  REQUIRE(rbtest::rel_diff(ln.weight_grad(), (g.array() * xhat.array()).rowwise().sum().matrix()) < 1e-13);
  const Eigen::VectorXd once_w = ln.weight_grad(), once_b = ln.bias_grad();
  ln.forward(x);
  ln.backward(g);
  REQUIRE(ln.weight_grad().isApprox(2 * once_w, 1e-14));
  REQUIRE(ln.bias_grad().isApprox(2 * once_b, 1e-14));
  ln.zero_grad();
  REQUIRE(ln.weight_grad().isZero());
  REQUIRE(ln.bias_grad().isZero());
}

TEST_CASE("LayerNorm: float smoke test agrees with double", "[layer_norm][float]") {
  LayerNorm<double> d(33);
  LayerNorm<float> f(33);
  randomise_affine(d, 14);
  rbtest::copy_parameters(d, f);
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(33, 50, 15),
                               rbtest::random_batch<Eigen::MatrixXd>(33, 50, 16));
  REQUIRE(rbtest::rel_diff(f.weight_grad(), d.weight_grad()) < 1e-5);
  REQUIRE(rbtest::rel_diff(f.bias_grad(), d.bias_grad()) < 1e-5);
}

TEST_CASE("LayerNorm: infer equals forward bit for bit", "[layer_norm][infer]") {
  LayerNorm<float> ln(256);
  randomise_affine(ln, 17);
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(256, 300, 18);
  LayerNorm<float>::Workspace ws;
  const Eigen::MatrixXf y = ln.forward(x);
  REQUIRE(ln.infer(x, ws) == y);

  LayerNorm<double, 5> small;
  randomise_affine(small, 19);
  const auto xs = rbtest::random_batch<Batch<double, 5>>(5, 3, 20);
  LayerNorm<double, 5>::Workspace wss;
  const Batch<double, 5> ys = small.forward(xs);
  REQUIRE(small.infer(xs, wss) == ys);
}

TEST_CASE("LayerNorm: results do not depend on the thread count", "[layer_norm][threads]") {
  const int saved = num_threads();
  LayerNorm<float> ln(256);
  randomise_affine(ln, 21);
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(256, 1000, 22);
  const auto g = rbtest::random_batch<Eigen::MatrixXf>(256, 1000, 23);
  Eigen::MatrixXf y[2], dx[2];
  Eigen::VectorXf dw[2], db[2];
  for (int t = 1; t <= 2; ++t) {
    set_num_threads(t);
    ln.zero_grad();
    y[t - 1] = ln.forward(x);
    dx[t - 1] = ln.backward(g);
    dw[t - 1] = ln.weight_grad();
    db[t - 1] = ln.bias_grad();
  }
  set_num_threads(saved);
  REQUIRE(y[0] == y[1]);
  REQUIRE(dx[0] == dx[1]);
  REQUIRE(dw[0] == dw[1]);
  REQUIRE(db[0] == db[1]);
}

TEST_CASE("LayerNorm: fused into a residual and beside ReLU (forward_add, backward_add, epilogues)",
          "[layer_norm][gradient]") {
  // Residual<LayerNorm>: the add rides in LayerNorm's passes.
  Residual<LayerNorm<double, 6>> res;
  randomise_affine(res.body(), 24);
  const auto x = rbtest::random_batch<Batch<double, 6>>(6, 5, 25);
  LayerNorm<double, 6> alone = res.body();
  const Batch<double, 6> expected = x + alone.forward(x);
  REQUIRE(rbtest::rel_diff(res.forward(x), expected) < 1e-15);
  rbtest::require_gradients(res, x);
  Residual<LayerNorm<double, 6>>::Workspace rws;
  REQUIRE(res.infer(x, rws) == res.forward(x));

  // LayerNorm → ReLU runs the ReLU in LayerNorm's epilogue; ReLU → LayerNorm gets the ReLU's backward
  // in LayerNorm's backward epilogue.
  using Net = Sequential<LayerNorm<double>, ReLU<double>, LayerNorm<double>, Linear<double>>;
  Net net(LayerNorm<double>(8), ReLU<double>(), LayerNorm<double>(8), Linear<double>(8, 3));
  randomise_affine(net.get<0>(), 26);
  randomise_affine(net.get<2>(), 27);
  const auto xn = rbtest::random_batch<Eigen::MatrixXd>(8, 6, 28);
  rbtest::require_gradients(net, xn);
  Net::Workspace ws;
  REQUIRE(net.infer(xn, ws) == net.forward(xn));
}

TEST_CASE("LayerNorm: shape errors name the layer and the shapes", "[layer_norm][errors]") {
  LayerNorm<float> ln(4);
  Eigen::MatrixXf bad(5, 2);
  bad.setOnes();
  try {
    ln.forward(bad);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    REQUIRE(what.find("LayerNorm") != std::string::npos);
    REQUIRE(what.find("5x2") != std::string::npos);
    REQUIRE(what.find("expected 4") != std::string::npos);
  }
  LayerNorm<float>::Workspace ws;
  REQUIRE_THROWS_AS(ln.infer(bad, ws), std::invalid_argument);
  Eigen::MatrixXf good = Eigen::MatrixXf::Ones(4, 2);
  Eigen::MatrixXf bad_grad(4, 3);
  REQUIRE_THROWS_AS(ln.backward(bad_grad), std::logic_error);  // before any forward
  ln.forward(good);
  try {
    ln.backward(bad_grad);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    REQUIRE(what.find("LayerNorm") != std::string::npos);
    REQUIRE(what.find("4x3") != std::string::npos);
    REQUIRE(what.find("4x2") != std::string::npos);
  }
  REQUIRE_THROWS_AS(LayerNorm<float>(0), std::invalid_argument);
  REQUIRE_THROWS_AS(LayerNorm<float>(-2), std::invalid_argument);
  REQUIRE_THROWS_AS((LayerNorm<float, 4>(5)), std::invalid_argument);
  REQUIRE_THROWS_AS(LayerNorm<float>(4, LayerNormOptions{0.0}), std::invalid_argument);
  REQUIRE_THROWS_AS(LayerNorm<float>(4, LayerNormOptions{-1.0}), std::invalid_argument);
}
