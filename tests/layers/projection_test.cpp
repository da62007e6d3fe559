#include "support/helpers.hpp"

#include <resblocks/layers/projection.hpp>

using namespace resblocks;

TEST_CASE("Projection: bias-free, named weight only, gradients (static and dynamic)", "[projection][gradient]") {
  Projection<double, 4, 6> p;
  REQUIRE_FALSE(p.has_bias());
  std::vector<std::string> names;
  p.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names == std::vector<std::string>{"weight"});
  rbtest::require_gradients(p, rbtest::random_batch<Batch<double, 4>>(4, 3, 41));
  Projection<double> d(6, 2);
  rbtest::require_gradients(d, rbtest::random_batch<Eigen::MatrixXd>(6, 5, 42));
}

TEST_CASE("Projection: computes P x exactly", "[projection]") {
  Projection<double> p(2, 1);
  p.weight() << 2, -3;
  Eigen::MatrixXd x(2, 2);
  x << 1, 2, 1, 0;
  REQUIRE(p.forward(x) == (Eigen::MatrixXd(1, 2) << -1, 4).finished());
}
