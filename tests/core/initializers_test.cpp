#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <cmath>

using namespace resblocks;

TEST_CASE("calculate_gain: torch.nn.init's values", "[init]") {
  REQUIRE(calculate_gain(Nonlinearity::relu) == Approx(std::sqrt(2.0)));
  REQUIRE(calculate_gain(Nonlinearity::leaky_relu, 0.2) == Approx(std::sqrt(2.0 / 1.04)));
  REQUIRE(calculate_gain(Nonlinearity::tanh) == Approx(5.0 / 3.0));
  REQUIRE(calculate_gain(Nonlinearity::linear) == 1.0);
}

TEST_CASE("kaiming_normal / kaiming_uniform: spread from the right fan", "[init]") {
  Generator g(11);
  Conv2d<double> conv(32, 64, 3);  // fan_in 288, fan_out 576
  kaiming_normal(conv, {.mode = FanMode::fan_out, .nonlinearity = Nonlinearity::relu}, g);
  const auto& w = conv.weight();
  const double std_out = std::sqrt((w.array() - w.mean()).square().mean());
  REQUIRE(std::abs(std_out / std::sqrt(2.0 / 576.0) - 1) < 0.02);
  REQUIRE(std::abs(w.mean()) < 0.002);

  kaiming_uniform(conv, {.mode = FanMode::fan_in, .nonlinearity = Nonlinearity::relu}, g);
  const double bound = std::sqrt(3.0) * std::sqrt(2.0 / 288.0);
  REQUIRE(conv.weight().cwiseAbs().maxCoeff() <= bound);
  REQUIRE(conv.weight().cwiseAbs().maxCoeff() > 0.99 * bound);

  Linear<double> fc(100, 50);
  kaiming_normal(fc, {}, g);  // fan_in 100, leaky_relu a=0: std sqrt(2/100)
  const double std_in = std::sqrt((fc.weight().array() - fc.weight().mean()).square().mean());
  REQUIRE(std::abs(std_in / std::sqrt(0.02) - 1) < 0.05);
  Eigen::MatrixXd m(2, 2);
  REQUIRE_THROWS_AS(kaiming_normal(m, 0, 0, KaimingOptions{}, g), std::invalid_argument);
}
