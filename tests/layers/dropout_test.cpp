// Dropout: mask statistics, inverted scaling, backward through the same mask, seeding, eval mode,
// a finite-difference gradient check (the mask fixed by re-seeding before each forward).

#include "support/helpers.hpp"

#include <resblocks/core/training_mode.hpp>
#include <resblocks/layers/dropout.hpp>
#include <resblocks/testing/gradient_check.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <stdexcept>

using namespace resblocks;

namespace {

/// A Dropout whose every forward draws the same mask (its generator re-seeded first): a fixed function of x.
struct ReseededDropout : Dropout<double> {
  explicit ReseededDropout(double p) : Dropout<double>(p) { set_generator(m_own); }
  ReseededDropout(const ReseededDropout&) = delete;
  ReseededDropout& operator=(const ReseededDropout&) = delete;
  const Output& forward(const Input& x) {
    m_own.seed(77);
    return Dropout<double>::forward(x);
  }
  const Output& forward(Input&&) = delete;
  Generator m_own;
};

}  // namespace

TEST_CASE("Dropout: mask statistics and inverted scaling", "[dropout]") {
  manual_seed(1);
  Dropout<float> drop(0.3);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(200, 250).array() + 2.0f;  // no zeros
  const Eigen::MatrixXf& y = drop.forward(x);
  const float scale = float(1.0 / 0.7);
  Index dropped = 0;
  bool scaled = true;
  for (Index i = 0; i < x.size(); ++i) {
    if (y(i) == 0.0f)
      ++dropped;
    else
      scaled = scaled && y(i) == x(i) * scale;  // torch: x * (1 / (1 - p)) in the input's dtype
  }
  REQUIRE(scaled);
  const double fraction = double(dropped) / double(x.size());
  const double sigma = std::sqrt(0.3 * 0.7 / double(x.size()));  // 0.0013
  REQUIRE(std::abs(fraction - 0.3) < 5 * sigma);
  REQUIRE(std::abs(y.mean() - x.mean()) < 0.015 * x.mean());  // expectation preserved
  // Columns and rows are not correlated: dropped fraction of the first and last column alike.
  const Eigen::MatrixXf mask = drop.mask();
  REQUIRE(std::abs((mask.col(0).array() == 0).cast<double>().mean() - 0.3) < 0.12);
  REQUIRE(std::abs((mask.row(199).array() == 0).cast<double>().mean() - 0.3) < 0.12);

  // A new mask every forward.
  const Eigen::MatrixXf first = y;
  REQUIRE(drop.forward(x) != first);
}

TEST_CASE("Dropout: backward multiplies by the forward's mask", "[dropout]") {
  manual_seed(2);
  Dropout<double> drop(0.5);
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(7, 9).array() + 3.0;
  const Eigen::MatrixXd y = drop.forward(x);
  const Eigen::MatrixXd dL_dy = Eigen::MatrixXd::Random(7, 9);
  const Eigen::MatrixXd& dL_dx = drop.backward(dL_dy);
  for (Index i = 0; i < x.size(); ++i) REQUIRE(dL_dx(i) == (y(i) == 0.0 ? 0.0 : dL_dy(i) * 2.0));
  REQUIRE(dL_dx.cwiseAbs().minCoeff() == 0.0);
  REQUIRE_THROWS_WITH(drop.backward(Eigen::MatrixXd::Zero(7, 8)),
                      rbtest::contains("Dropout") && rbtest::contains("7x9"));
}

TEST_CASE("Dropout: seeding, eval mode, infer, p = 0 and p = 1", "[dropout]") {
  const Batch<float, 5> x = Batch<float, 5>::Random(5, 40).array() + 2.0f;
  const Eigen::MatrixXf xd = x;
  Dropout<float, 5> a(0.4), b(0.4);
  manual_seed(9);
  const Eigen::MatrixXf first = a.forward(x);
  manual_seed(9);
  REQUIRE(b.forward(x) == first);  // manual_seed makes the masks reproducible
  REQUIRE(a.forward(x) != first);  // the generator moved on
  Generator g1(4), g2(4);
  a.set_generator(g1);
  b.set_generator(g2);
  REQUIRE(a.forward(x) == b.forward(x));  // a generator of one's own
  REQUIRE(g1.next() == g2.next());
  manual_seed(9);
  const std::uint64_t expected = default_generator().next();
  manual_seed(9);
  Dropout<float> made(0.3);  // constructing draws nothing
  REQUIRE(default_generator().next() == expected);

  eval(a);
  REQUIRE(&a.forward(x) == &x);  // the identity, no copy
  REQUIRE(&a.backward(x) == &x);
  train(a);
  REQUIRE(a.forward(x) != x);
  Dropout<float, 5>::Workspace ws;
  REQUIRE(&a.infer(x, ws) == &x);  // inference never drops

  Dropout<float> none(0.0), all(1.0);
  REQUIRE(none.forward(xd) == xd);
  REQUIRE(all.forward(xd) == Eigen::MatrixXf::Zero(5, 40));
  REQUIRE(all.backward(xd) == Eigen::MatrixXf::Zero(5, 40));
  REQUIRE_THROWS_WITH(Dropout<float>(1.5), rbtest::contains("Dropout") && rbtest::contains("[0, 1]"));
  REQUIRE_THROWS_AS(Dropout<float>(-0.1), std::invalid_argument);
  REQUIRE_THROWS_AS(Dropout<float>(std::nan("")), std::invalid_argument);
  Dropout<float> five(0.5, 5);
  const Eigen::MatrixXf four = Eigen::MatrixXf::Zero(4, 3);
  REQUIRE_THROWS_WITH(five.forward(four), rbtest::contains("Dropout") && rbtest::contains("expected 5 features"));
}

TEST_CASE("Dropout: gradients by finite differences, and a float smoke test", "[dropout][gradient]") {
  ReseededDropout drop(0.3);
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(4, 6, 31);
  REQUIRE((drop.forward(x).array() == 0).any());  // the check runs through a real mask
  rbtest::require_gradients(drop, x);

  Dropout<float, 8> f(0.2);
  const Batch<float, 8> xf = Batch<float, 8>::Random(8, 16);
  const auto& y = f.forward(xf);
  REQUIRE(y.allFinite());
  REQUIRE(f.backward(y).allFinite());
}
