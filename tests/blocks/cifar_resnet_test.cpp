#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

TEST_CASE("CifarResNet: depth 6n+2, the paper's parameter counts", "[resnet][cifar]") {
  // He et al. 2016 Table 6 / the standard PyTorch port: ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M.
  REQUIRE(parameter_count(CifarResNet<float>({.depth = 20})) == 269722);
  REQUIRE(parameter_count(CifarResNet<float>({.depth = 56})) == 853018);
  REQUIRE(parameter_count(CifarResNet<float>({.depth = 110})) == 1727962);
  REQUIRE_THROWS_WITH(CifarResNet<float>({.depth = 21}), rbtest::contains("depth must be 6n+2"));
  REQUIRE(CifarResNet<float>::blocks_per_stage(32) == 5);
}

TEST_CASE("CifarResNet: plain twin has the same parameters, both train end to end", "[resnet][cifar][gradient]") {
  CifarResNet<double> res({.depth = 8, .in_channels = 1, .classes = 3, .width = 2, .image = {6, 6}});
  CifarResNet<double> plain({.depth = 8, .in_channels = 1, .classes = 3, .width = 2, .image = {6, 6}, .plain = true});
  REQUIRE(parameter_count(res) == parameter_count(plain));
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(1, 3 * 36, 1);
  rbtest::require_gradients(res, x);
  rbtest::require_gradients(plain, x);
}

TEST_CASE("CifarResNet: option B projections, Fashion-MNIST-sized input", "[resnet][cifar]") {
  CifarResNet<float> net({.depth = 20, .in_channels = 1, .image = {28, 28}, .downsample = ShortcutKind::projection});
  REQUIRE(parameter_count(net) > parameter_count(CifarResNet<float>({.depth = 20, .in_channels = 1})));
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(1, 4 * 28 * 28, 2);
  const Eigen::MatrixXf y = net.forward(x);
  REQUIRE(y.rows() == 10);
  REQUIRE(y.cols() == 4);
  net.backward(Eigen::MatrixXf::Ones(10, 4));
  CifarResNet<float>::Workspace ws;
  REQUIRE(net.infer(x, ws) == y);
}

namespace {
/// Every parameter of `net`, in visiting order, as one column.
template <class Net>
Eigen::VectorXd parameters_of(Net& net) {
  Eigen::VectorXd all(static_cast<Index>(parameter_count(net)));
  Index at = 0;
  net.for_each_parameter([&](std::string_view, const auto& value, const auto&) {
    for (Index j = 0; j < value.cols(); ++j)
      for (Index i = 0; i < value.rows(); ++i) all(at++) = static_cast<double>(value(i, j));
  });
  return all;
}
}  // namespace

// The builders construct their layers left to right (braces), so a seed gives the same weights with
// every compiler; with parentheses GCC built the last argument (the classifier) first, Clang last.
TEST_CASE("CifarResNet, BasicBlock: layers draw their initial weights in order, whatever the compiler",
          "[resnet][cifar][seed]") {
  const CifarResNetOptions o{
      .depth = 8, .in_channels = 1, .classes = 3, .width = 4, .image = {8, 8}, .downsample = ShortcutKind::projection};
  const BlockOptions bo{.downsample = o.downsample};
  manual_seed(7);
  Conv2d<float> conv1(1, 4, 3, {.padding = 1, .bias = false});  // one statement each: a defined order
  BatchNorm2d<float> bn1(4);
  Repeat<BasicBlock<float>> layer1 = detail::resnet_stage<BasicBlock<float>>(4, 4, 1, 1, bo);
  Repeat<BasicBlock<float>> layer2 = detail::resnet_stage<BasicBlock<float>>(4, 8, 1, 2, bo);
  Repeat<BasicBlock<float>> layer3 = detail::resnet_stage<BasicBlock<float>>(8, 16, 1, 2, bo);
  Linear<float> fc(16, 3);
  Sequential<Conv2d<float>, BatchNorm2d<float>, ReLU<float>, Repeat<BasicBlock<float>>, Repeat<BasicBlock<float>>,
             Repeat<BasicBlock<float>>, GlobalAvgPool<float>, Linear<float>>
      in_order{std::move(conv1),  std::move(bn1),    ReLU<float>(),          std::move(layer1),
               std::move(layer2), std::move(layer3), GlobalAvgPool<float>(), std::move(fc)};
  detail::torchvision_init(in_order);
  manual_seed(7);
  CifarResNet<float> net(o);
  REQUIRE(parameters_of(net) == parameters_of(in_order));

  manual_seed(8);
  Conv2d<float> a(4, 8, 3, {.stride = 2, .padding = 1, .bias = false});
  Conv2d<float> b(8, 8, 3, {.padding = 1, .bias = false});
  Shortcut<float> skip(4, 8, 2, ShortcutKind::projection);
  manual_seed(8);
  BasicBlock<float> block(4, 8, 2, bo);
  REQUIRE(block.branch().get<0>().weight() == a.weight());
  REQUIRE(block.branch().get<3>().weight() == b.weight());
  Eigen::VectorXd skip_weights = parameters_of(skip), block_weights = parameters_of(block);
  REQUIRE(block_weights.tail(skip_weights.size()) == skip_weights);  // the skip comes last
}
