#pragma once
// Shared checks of the PyTorch parity tests (tests/reference/*_parity_test.cpp): comparing a result
// with a fixture tensor, reading a fixture tensor as a batch, loading parameters by name.

#include "support/catch.hpp"
#include "support/fixture.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <iomanip>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>

namespace resblocks_tests {

/// Tolerance relative to max(1, max |PyTorch|): double computes what PyTorch computes in double, up to
/// summation order; float inputs and parameters are exact in float, so only the arithmetic differs.
template <class S>
constexpr double tolerance = std::is_same_v<S, double> ? 1e-12 : 1e-5;

/// Checks max |actual - fixture[tensor]| <= tol * max(1, max |fixture[tensor]|); `via` labels the code path.
template <class Derived>
void check_close(const Fixture& fixture, const std::string& tensor, const Eigen::MatrixBase<Derived>& actual,
                 double tol, std::string_view via = "forward/backward") {
  const Eigen::MatrixXd& expected = fixture.matrix(tensor);
  INFO(fixture.source() << ": tensor " << tensor << " (" << via << ")");
  REQUIRE(actual.rows() == expected.rows());
  REQUIRE(actual.cols() == expected.cols());
  REQUIRE(expected.size() > 0);
  const Eigen::MatrixXd a = actual.template cast<double>();
  REQUIRE(a.allFinite());
  Eigen::Index row = 0, col = 0;
  const double error = (a - expected).cwiseAbs().maxCoeff(&row, &col);
  const double allowed = tol * std::max(1.0, expected.cwiseAbs().maxCoeff());
  INFO(std::setprecision(17) << "max |resblocks - PyTorch| = " << error << " at (" << row << ", " << col
                             << "): resblocks " << a(row, col) << ", PyTorch " << expected(row, col) << "; allowed "
                             << allowed);
  const double error_over_allowed = error / allowed;
  CHECK(error_over_allowed <= 1.0);
}

/// The fixture's tensor as matrix type M (checking a static row count).
template <class M>
M fixture_batch(const Fixture& fixture, const std::string& tensor) {
  const Eigen::MatrixXd& m = fixture.matrix(tensor);
  INFO(fixture.source() << ": tensor " << tensor);
  if constexpr (M::RowsAtCompileTime != Eigen::Dynamic) REQUIRE(m.rows() == M::RowsAtCompileTime);
  return m.template cast<typename M::Scalar>();
}

/// Overwrites every parameter of `net` with the fixture's `param.<name>`; the visited names must be
/// exactly the fixture's parameter names (and gradient names), so that a renaming fails the test.
/// Returns the number of parameters loaded.
template <class Net>
std::size_t load_parameters(Net& net, const Fixture& fixture) {
  using S = typename Net::Scalar;
  std::set<std::string> visited;
  net.for_each_parameter([&](std::string_view name, auto& value, auto&) {
    const std::string n(name);
    INFO(fixture.source() << ": parameter " << n);
    REQUIRE(visited.insert(n).second);
    REQUIRE(fixture.contains("param." + n));
    const Eigen::MatrixXd& m = fixture.matrix("param." + n);
    REQUIRE(value.rows() == m.rows());
    REQUIRE(value.cols() == m.cols());
    value = m.template cast<S>();
  });
  INFO(fixture.source());
  REQUIRE(visited == fixture.names_with_prefix("param."));
  REQUIRE(visited == fixture.names_with_prefix("grad."));
  return visited.size();
}

/// The parity "training step": zero_grad; forward(x) against `y`; `after_forward(net)` (extra
/// checks on the forward state); backward(dL_dy) against `dL_dx`; every parameter's gradient against
/// `grad.<name>`; then infer(x) against `y`.
template <class Net, class AfterForward>
void check_training_step(const Fixture& fixture, Net& net, const typename Net::Input& x,
                         const typename Net::Output& dL_dy, double tol, const AfterForward& after_forward) {
  net.zero_grad();
  check_close(fixture, "y", net.forward(x), tol);
  after_forward(net);
  check_close(fixture, "dL_dx", net.backward(dL_dy), tol);
  net.for_each_parameter([&](std::string_view name, const auto&, const auto& grad) {
    check_close(fixture, "grad." + std::string(name), grad, tol);
  });
  typename Net::Workspace ws;
  check_close(fixture, "y", net.infer(x, ws), tol, "infer");
}
template <class Net>
void check_training_step(const Fixture& fixture, Net& net, const typename Net::Input& x,
                         const typename Net::Output& dL_dy, double tol) {
  check_training_step(fixture, net, x, dL_dy, tol, [](const Net&) {});
}

/// Loads `file` into `net` (at least `min_parameters` tensors), then check_training_step with the
/// fixture's x and dL_dy at the scalar's tolerance.
template <class Net>
void check_parity(Net& net, const std::string& file, std::size_t min_parameters = 0) {
  const Fixture fixture = load_fixture(file);
  REQUIRE(load_parameters(net, fixture) >= min_parameters);
  const typename Net::Input x = fixture_batch<typename Net::Input>(fixture, "x");
  const typename Net::Output dL_dy = fixture_batch<typename Net::Output>(fixture, "dL_dy");
  check_training_step(fixture, net, x, dL_dy, tolerance<typename Net::Scalar>);
}

/// The fixture's key-padding mask (`mask`, nonzero = padded), if it has one, set on `net`.
template <class Net>
void set_fixture_mask(const Fixture& fixture, Net& net) {
  if (!fixture.contains("mask")) return;
  const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> mask = (fixture.matrix("mask").array() != 0.0).matrix();
  net.set_key_padding_mask(mask);
}

}  // namespace resblocks_tests
