#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

using namespace resblocks;

namespace {
// Inputs kept away from the kinks of ReLU/LeakyReLU, where finite differences are meaningless.
template <class M>
M away_from_zero(Index rows, Index cols, std::uint64_t seed) {
  M x = rbtest::random_batch<M>(rows, cols, seed) * 3.0;
  for (Index i = 0; i < x.size(); ++i)
    if (std::abs(x(i)) < 0.05) x(i) += 0.1;
  return x;
}

template <class Act>
void check_activation(Act act) {
  const auto x = away_from_zero<typename Act::Input>(5, 6, 21);
  rbtest::require_gradients(act, x);
}
}  // namespace

TEST_CASE("ReLU: values and gradients", "[activation][gradient]") {
  ReLU<double> r;
  Eigen::MatrixXd x(1, 3);
  x << -1, 0.5, 2;
  REQUIRE(r.forward(x) == (Eigen::MatrixXd(1, 3) << 0, 0.5, 2).finished());
  check_activation(ReLU<double>());
  check_activation(ReLU<double, 5>());
}

TEST_CASE("LeakyReLU: slope and gradients", "[activation][gradient]") {
  LeakyReLU<double> r(LeakyReLUOp{0.2});
  Eigen::MatrixXd x(1, 2);
  x << -1, 3;
  REQUIRE(r.forward(x).isApprox((Eigen::MatrixXd(1, 2) << -0.2, 3).finished()));
  check_activation(LeakyReLU<double>(LeakyReLUOp{0.2}));
  check_activation(LeakyReLU<double, 5>());
}

TEST_CASE("GELU: exact and tanh forms, values and gradients", "[activation][gradient]") {
  GELU<double> exact;
  GELU<double> approx(GELUOp{GELUOp::Approximate::tanh});
  Eigen::MatrixXd x(1, 3);
  x << -1, 0, 1.5;
  // torch.nn.functional.gelu(torch.tensor([-1., 0., 1.5], dtype=torch.float64))
  Eigen::MatrixXd e(1, 3);
  e << -0.15865525393145702, 0.0, 1.399789198096713;
  REQUIRE(rbtest::rel_diff(exact.forward(x), e) < 1e-15);
  // ... and with approximate='tanh'
  Eigen::MatrixXd t(1, 3);
  t << -0.15880800939172324, 0.0, 1.3995715769802328;
  REQUIRE(rbtest::rel_diff(approx.forward(x), t) < 1e-15);
  check_activation(GELU<double>());
  check_activation(GELU<double, 5>(GELUOp{GELUOp::Approximate::tanh}));
}

TEST_CASE("GELU and LeakyReLU: the vectorised float path matches double element by element", "[activation][float]") {
  // 1001 values on [-12, 12] (an odd count, so the packet loop and its scalar tail both run),
  // plus 0, ±inf; float results against the double (C library) ones, to 1e-6 absolute (float
  // cancellation in Φ(x) + xφ(x) near x = -5 costs ~5e-7; torch computes the same formula).
  const Index n = 1001;
  Eigen::MatrixXd xd(1, n + 3);
  for (Index i = 0; i < n; ++i) xd(0, i) = -12.0 + 24.0 * static_cast<double>(i) / static_cast<double>(n - 1);
  xd(0, n) = 0.0;
  xd(0, n + 1) = std::numeric_limits<double>::infinity();
  xd(0, n + 2) = -std::numeric_limits<double>::infinity();
  const Eigen::MatrixXf xf = xd.cast<float>();
  const Eigen::MatrixXd x_exact = xf.cast<double>();  // the float inputs, exactly
  Eigen::MatrixXd gd = Eigen::MatrixXd::Constant(1, n + 3, 1.0);
  gd(0, n + 1) = gd(0, n + 2) = 0.0;  // 0·GELU'(±inf) would be NaN in both
  const Eigen::MatrixXf gf = gd.cast<float>();
  auto element_close = [&](const Eigen::MatrixXf& f, const Eigen::MatrixXd& d, const char* what) {
    for (Index i = 0; i < d.cols(); ++i) {
      INFO(what << " at x = " << x_exact(0, i) << ": float " << f(0, i) << ", double " << d(0, i));
      if (std::isnan(d(0, i))) {  // GELU(-inf) = -inf·0, NaN as in torch
        REQUIRE(std::isnan(f(0, i)));
      } else if (std::isinf(d(0, i))) {
        REQUIRE(static_cast<double>(f(0, i)) == d(0, i));
      } else {
        REQUIRE(std::abs(static_cast<double>(f(0, i)) - d(0, i)) <= 1e-6 * std::max(1.0, std::abs(d(0, i))));
      }
    }
  };
  for (auto a : {GELUOp::Approximate::none, GELUOp::Approximate::tanh}) {
    GELU<double> d(GELUOp{a});
    GELU<float> f(GELUOp{a});
    element_close(f.forward(xf), d.forward(x_exact), "GELU forward");
    element_close(f.backward(gf), d.backward(gd), "GELU backward");
  }
  LeakyReLU<double> ld(LeakyReLUOp{0.2});
  LeakyReLU<float> lf(LeakyReLUOp{0.2});
  element_close(lf.forward(xf), ld.forward(x_exact), "LeakyReLU forward");
  element_close(lf.backward(gf), ld.backward(gd), "LeakyReLU backward");
}

TEST_CASE("Tanh and Sigmoid: values, saturation and gradients", "[activation][gradient]") {
  Sigmoid<double> s;
  Eigen::MatrixXd x(1, 3);
  x << -800, 0, 800;  // must not overflow to NaN
  const auto& y = s.forward(x);
  REQUIRE(y.allFinite());
  REQUIRE(y(0, 0) == Approx(0.0).margin(1e-300));
  REQUIRE(y(0, 1) == 0.5);
  REQUIRE(y(0, 2) == 1.0);
  Tanh<double> t;
  REQUIRE(t.forward(x).isApprox((Eigen::MatrixXd(1, 3) << -1, 0, 1).finished()));
  check_activation(Tanh<double>());
  check_activation(Sigmoid<double, 5>());
}

TEST_CASE("Activations: float smoke test agrees with double", "[activation][float]") {
  const auto xd = away_from_zero<Eigen::MatrixXd>(7, 40, 22);
  const auto gd = rbtest::random_batch<Eigen::MatrixXd>(7, 40, 23);
  auto both = [&](auto d, auto f) { rbtest::require_float_agrees(f, d, xd, gd); };
  both(ReLU<double>(), ReLU<float>());
  both(GELU<double>(), GELU<float>());
  both(Tanh<double>(), Tanh<float>());
  both(Sigmoid<double>(), Sigmoid<float>());
  both(LeakyReLU<double>(), LeakyReLU<float>());
}

TEST_CASE("Activations: a fixed size is checked at run time, Dynamic takes any", "[activation][errors]") {
  ReLU<float> any;
  Eigen::MatrixXf x(3, 2);
  x.setOnes();
  REQUIRE_NOTHROW(any.forward(x));
  ReLU<float> fixed(ReLUOp{}, 4);
  REQUIRE_THROWS_AS(fixed.forward(x), std::invalid_argument);
  Eigen::MatrixXf g(2, 2);
  REQUIRE_THROWS_AS(any.backward(g), std::invalid_argument);
}

TEST_CASE("ReLU: in place inside a neighbour's pass, never on a standalone call's arguments", "[activation][fused]") {
  // Fused after a Linear (Sequential), ReLU writes y over the Linear's output and dL/dx over the next
  // layer's dL/dx; called on its own it must leave x and dL/dy as they were.
  ReLU<double> relu;
  const Eigen::MatrixXd x0 = rbtest::random_batch<Eigen::MatrixXd>(5, 6, 80),
                        g0 = rbtest::random_batch<Eigen::MatrixXd>(5, 6, 81);
  const Eigen::MatrixXd x = x0, g = g0;
  const Eigen::MatrixXd y = relu.forward(x);
  const Eigen::MatrixXd dx = relu.backward(g);
  REQUIRE(x == x0);
  REQUIRE(g == g0);
  REQUIRE(y == x0.cwiseMax(0.0));
  REQUIRE(dx == (x0.array() > 0).select(g0, 0.0));

  Sequential<Linear<double>, ReLU<double>, Linear<double>> net(Linear<double>(5, 7), ReLU<double>(),
                                                               Linear<double>(7, 3));
  const auto& h = net.forward(x);
  const auto& a = net.get<1>().fused_output();
  REQUIRE((a.array() >= 0).all());
  REQUIRE(&h != &a);
  // The standalone pair on a copy (no neighbour): the same numbers.
  auto pieces = net;
  const auto& p0 = pieces.get<0>().forward(x);
  const Eigen::MatrixXd pre = p0;
  const auto& p1 = pieces.get<1>().forward(p0);
  REQUIRE(p0 == pre);  // standalone: the Linear's output is untouched
  REQUIRE(a == p1);
  REQUIRE(h == pieces.get<2>().forward(p1));
  const Eigen::MatrixXd gy = rbtest::random_batch<Eigen::MatrixXd>(3, 6, 82);
  const auto& d = net.backward(gy);
  const auto& q1 = pieces.get<1>().backward(pieces.get<2>().backward(gy));
  REQUIRE(d == pieces.get<0>().backward(q1));
}

TEST_CASE("Activation: a fused block of part of the rows touches exactly that block", "[activation][fused]") {
  // A Linear's GEMM epilogue hands over blocks of some rows; whole-column blocks run as one flat run,
  // others column by column: both must write the block and nothing else.
  ReLU<double> relu;
  const Eigen::MatrixXd x0 = rbtest::random_batch<Eigen::MatrixXd>(5, 6, 90),
                        g0 = rbtest::random_batch<Eigen::MatrixXd>(5, 6, 91);
  Eigen::MatrixXd x = x0;  // the neighbour's output: ReLU writes y over it
  relu.fused_forward_prepare(x);
  relu.fused_forward_block(x, 1, 3, 2, 3);  // rows 1-3, columns 2-4
  relu.fused_forward_block(x, 0, 5, 5, 1);  // all of column 5
  Eigen::MatrixXd expected = x0;
  expected.block(1, 2, 3, 3) = x0.block(1, 2, 3, 3).cwiseMax(0.0);
  expected.col(5) = x0.col(5).cwiseMax(0.0);
  REQUIRE(x == expected);

  Eigen::MatrixXd g = g0;  // the neighbour's dL/dx: ReLU writes its dL/dx over it
  relu.fused_backward_prepare(g);
  relu.fused_backward_block(g, 2, 2, 0, 4);  // rows 2-3, columns 0-3
  Eigen::MatrixXd expected_g = g0;
  for (Index j = 0; j < 4; ++j)
    for (Index i = 2; i < 4; ++i) expected_g(i, j) = x(i, j) > 0 ? g0(i, j) : 0.0;
  REQUIRE(g == expected_g);
}
