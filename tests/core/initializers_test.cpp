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

namespace {
/// Every parameter value of a network, in visiting order.
template <class Net>
std::vector<Eigen::MatrixXd> parameters_of(const Net& net) {
  std::vector<Eigen::MatrixXd> values;
  net.for_each_parameter(
      [&](std::string_view, const auto& v, const auto&) { values.emplace_back(v.template cast<double>()); });
  return values;
}

using MlpBlock = Residual<Sequential<Linear<double>, Tanh<double>>>;
using MlpNet = Sequential<Linear<double>, Repeat<MlpBlock>, Linear<double>>;
Repeat<MlpBlock> mlp_blocks() {
  return Repeat<MlpBlock>(3, [](Index) {
    return MlpBlock(Sequential<Linear<double>, Tanh<double>>(Linear<double>(8, 8), Tanh<double>()));
  });
}
}  // namespace

TEST_CASE("initialize: the weights depend on the seed, not on the order the layers were built in", "[init]") {
  // The README's pattern in braces: built left to right, every compiler.
  manual_seed(5);
  const MlpNet braces{Linear<double>(4, 8), mlp_blocks(), Linear<double>(8, 3)};

  // The same layers built right to left, after other draws (what parentheses may do).
  manual_seed(123);
  Linear<double> last(8, 3);
  Repeat<MlpBlock> middle = mlp_blocks();
  Linear<double> first(4, 8);
  MlpNet reversed(std::move(first), std::move(middle), std::move(last));
  REQUIRE(parameters_of(reversed) != parameters_of(braces));

  initialize(reversed, 5);
  REQUIRE(parameters_of(reversed) == parameters_of(braces));  // each layer drawn as its constructor does, in order
  MlpNet again = reversed;
  initialize(again, 6);
  REQUIRE(parameters_of(again) != parameters_of(braces));
}

TEST_CASE("initialize: Highway keeps its gate bias, torchvision models redraw as their constructors", "[init]") {
  manual_seed(7);
  const Highway<Linear<double>> braces{Linear<double>(6, 6), 6};
  manual_seed(70);
  Highway<Linear<double>> other{Linear<double>(6, 6), 6};
  initialize(other, 7);
  REQUIRE(parameters_of(other) == parameters_of(braces));
  REQUIRE(other.gate().bias().isConstant(-2.0));

  const CifarResNetOptions o{.depth = 8, .in_channels = 1, .width = 4, .image = {8, 8}};
  manual_seed(3);
  const CifarResNet<double> resnet(o);
  manual_seed(30);
  CifarResNet<double> resnet2(o);
  REQUIRE(parameters_of(resnet2) != parameters_of(resnet));
  initialize(resnet2, 3);
  REQUIRE(parameters_of(resnet2) == parameters_of(resnet));
  manual_seed(3);
  const CifarPreActResNet<double> preact(o);
  manual_seed(31);
  CifarPreActResNet<double> preact2(o);
  initialize(preact2, 3);
  REQUIRE(parameters_of(preact2) == parameters_of(preact));

  manual_seed(4);
  const TransformerBlock<double> block(8, 2, 12);
  manual_seed(40);
  TransformerBlock<double> block2(8, 2, 12);
  initialize(block2, 4);
  REQUIRE(parameters_of(block2) == parameters_of(block));

  // DenseNet: the same weights for the same seed, whatever the generator's state before.
  const DenseNetOptions d{.block_layers = {1, 1, 1}, .growth_rate = 4, .in_channels = 1, .image = {8, 8}};
  manual_seed(8);
  DenseNet<double> dense(d);
  manual_seed(80);
  DenseNet<double> dense2(d);
  initialize(dense, 9);
  initialize(dense2, 9);
  REQUIRE(parameters_of(dense2) == parameters_of(dense));
}
