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
