// MseLoss: PyTorch fixture (tests/reference/make_loss_fixtures.py), finite differences, errors.

#include "support/helpers.hpp"
#include "support/parity.hpp"

#include <resblocks/train/mse_loss.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

using namespace resblocks;
using resblocks_tests::check_close;
using resblocks_tests::Fixture;
using resblocks_tests::load_fixture;

namespace {

template <class S, int Rows>
void check_fixture() {
  const Fixture f = load_fixture("loss_mse.txt");
  const auto y = resblocks_tests::fixture_batch<Batch<S, Rows>>(f, "y");
  const auto target = resblocks_tests::fixture_batch<Batch<S, Rows>>(f, "target");
  const double tol = resblocks_tests::tolerance<S>;
  for (const auto& [variant, reduction] : {std::pair{"mean", Reduction::mean}, std::pair{"sum", Reduction::sum}}) {
    INFO("reduction " << variant);
    MseLoss<S, Rows> loss(reduction);
    REQUIRE(loss.reduction() == reduction);
    const S value = loss.forward(y, target);
    check_close(f, std::string("loss.") + variant, Eigen::Matrix<S, 1, 1>::Constant(value), tol, "forward");
    check_close(f, std::string("grad.") + variant, loss.backward(), tol, "backward");
  }
}

template <int Rows>
void check_finite_differences(Index rows, Index n, Reduction reduction) {
  using M = Batch<double, Rows>;
  M y = rbtest::random_batch<M>(rows, n, 81);
  const M target = rbtest::random_batch<M>(rows, n, 82);
  MseLoss<double, Rows> loss(reduction);
  loss.forward(y, target);
  const M analytic = loss.backward();
  const double h = 1e-6;
  M numeric(rows, n);
  for (Index j = 0; j < n; ++j)
    for (Index r = 0; r < rows; ++r) {
      const double keep = y(r, j);
      y(r, j) = keep + h;
      const double up = loss.forward(y, target);
      y(r, j) = keep - h;
      const double down = loss.forward(y, target);
      y(r, j) = keep;
      numeric(r, j) = (up - down) / (2 * h);
    }
  const double error = (analytic - numeric).cwiseAbs().maxCoeff();
  INFO("max |analytic - numeric| = " << error);
  REQUIRE(numeric.cwiseAbs().maxCoeff() > 1e-3);
  REQUIRE(error <= 1e-7 + 1e-5 * numeric.cwiseAbs().maxCoeff());
}

}  // namespace

TEST_CASE("MseLoss: PyTorch fixture, mean and sum", "[loss][mse][parity]") {
  check_fixture<double, Dynamic>();
  check_fixture<double, 4>();
  check_fixture<float, Dynamic>();
  check_fixture<float, 4>();
}

TEST_CASE("MseLoss: finite-difference gradients in double", "[loss][mse][gradient]") {
  check_finite_differences<Dynamic>(3, 5, Reduction::mean);
  check_finite_differences<Dynamic>(3, 5, Reduction::sum);
  check_finite_differences<2>(2, 1, Reduction::mean);
}

TEST_CASE("MseLoss: hand-computed value, NaN propagates", "[loss][mse]") {
  Eigen::MatrixXf y(2, 2), t(2, 2);
  y << 1, 2, 3, 4;
  t << 1, 0, 0, 4;  // differences 0, 2, 3, 0
  MseLoss<float> mean;
  REQUIRE(mean.forward(y, t) == Approx(13.0 / 4));
  Eigen::MatrixXf expected(2, 2);
  expected << 0, 1, 1.5, 0;  // 2·d / 4
  REQUIRE(mean.backward().isApprox(expected));
  MseLoss<float> sum(Reduction::sum);
  REQUIRE(sum.forward(y, t) == 13.0f);
  REQUIRE(mean.loss() == Approx(3.25));
  y(1, 1) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE(std::isnan(mean.forward(y, t)));
}

TEST_CASE("MseLoss: shape mismatch names both shapes", "[loss][mse][errors]") {
  MseLoss<double> loss;
  REQUIRE_THROWS_AS(loss.backward(), std::logic_error);
  const Eigen::MatrixXd a = Eigen::MatrixXd::Zero(3, 4), b = Eigen::MatrixXd::Zero(3, 5);
  REQUIRE_THROWS_AS(loss.forward(a, b), std::invalid_argument);
  REQUIRE_THROWS_WITH(loss.forward(a, b),
                      rbtest::contains("MseLoss") && rbtest::contains("3x4") && rbtest::contains("3x5"));
  REQUIRE_THROWS_AS(loss.forward(Eigen::MatrixXd(3, 0), Eigen::MatrixXd(3, 0)), std::invalid_argument);
  REQUIRE_THROWS_AS(loss.backward(), std::logic_error);
}
