#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace resblocks;

TEST_CASE("CifarPreActResNet: depth 6n+2, names, parameter count", "[resnet][cifar]") {
  // Counted by hand for n = 3, width 16, 3 input channels, option A: conv1 432; stage 1 3×(2·32 + 2·2304);
  // stage 2 (32 + 4608 + 64 + 9216) + 2×(128 + 18432); stage 3 (64 + 18432 + 128 + 36864) + 2×(256 + 73728);
  // the final BN 128; fc 650. The same total as the post-activation ResNet-20 (269,722).
  REQUIRE(parameter_count(CifarPreActResNet<float>({.depth = 20})) == 269722);
  REQUIRE_THROWS_WITH(CifarPreActResNet<float>({.depth = 22}), rbtest::contains("depth must be 6n+2"));

  CifarPreActResNet<float> net(
      {.depth = 8, .in_channels = 1, .width = 4, .image = {8, 8}, .downsample = ShortcutKind::projection});
  std::vector<std::string> names;
  net.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names.front() == "conv1.weight");
  REQUIRE(names[1] == "layer1.0.bn1.weight");
  REQUIRE(std::find(names.begin(), names.end(), "layer2.0.downsample.0.weight") != names.end());
  REQUIRE(std::find(names.begin(), names.end(), "bn.weight") != names.end());
  REQUIRE(names.back() == "fc.bias");
  // Pre-activation's projection is a bare 1×1 conv: no BatchNorm on the skip.
  REQUIRE(std::find(names.begin(), names.end(), "layer2.0.downsample.1.weight") == names.end());
}

TEST_CASE("CifarPreActResNet: gradients of the residual and plain networks, both skip kinds",
          "[resnet][cifar][gradient]") {
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(1, 3 * 36, 3);
  for (const ShortcutKind kind : {ShortcutKind::zero_pad, ShortcutKind::projection}) {
    for (const bool plain : {false, true}) {
      INFO("projection " << (kind == ShortcutKind::projection) << ", plain " << plain);
      CifarPreActResNet<double> net({.depth = 8,
                                     .in_channels = 1,
                                     .classes = 3,
                                     .width = 2,
                                     .image = {6, 6},
                                     .downsample = kind,
                                     .plain = plain});
      rbtest::require_gradients(net, x);
    }
  }
}

TEST_CASE("CifarPreActResNet: plain twin has no skips, zero-init blocks start as the identity", "[resnet][cifar]") {
  const CifarResNetOptions o{.depth = 14, .in_channels = 1, .classes = 3, .width = 4, .image = {8, 8}};
  CifarPreActResNet<double> plain(
      {.depth = o.depth, .in_channels = 1, .classes = 3, .width = 4, .image = {8, 8}, .plain = true});
  CifarPreActResNet<double> res(o);
  REQUIRE(parameter_count(plain) == parameter_count(res));
  for (std::size_t i = 0; i < 2; ++i) {
    REQUIRE(plain.get<1>()[i].shortcut().kind() == ShortcutKind::none);
    REQUIRE(res.get<1>()[i].shortcut().kind() == ShortcutKind::identity);
  }
  CifarPreActResNet<double> zero(
      {.depth = o.depth, .in_channels = 1, .classes = 3, .width = 4, .image = {8, 8}, .zero_init_residual = true});
  const auto h =
      rbtest::random_batch<Eigen::MatrixXd>(4, 64 * 2, 4);  // a stage-1 activation: 4 channels, 8×8 pixels, 2 images
  REQUIRE(rbtest::rel_diff(zero.get<1>().forward(h), h) == 0.0);
  REQUIRE(rbtest::rel_diff(res.get<1>().forward(h), h) > 1e-3);  // without zero-init the stage changes x
}

TEST_CASE("CifarPreActResNet<float>: Fashion-MNIST-sized batch, infer equals forward in eval", "[resnet][cifar]") {
  CifarPreActResNet<float> net({.depth = 20,
                                .in_channels = 1,
                                .image = {28, 28},
                                .downsample = ShortcutKind::projection,
                                .input_gradient = false});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(1, 28 * 28 * 4, 5);
  const Eigen::MatrixXf y = net.forward(x);
  REQUIRE(y.rows() == 10);
  REQUIRE(y.cols() == 4);
  REQUIRE(y.allFinite());
  net.backward(Eigen::MatrixXf::Ones(10, 4));
  eval(net);
  CifarPreActResNet<float>::Workspace ws;
  const Eigen::MatrixXf y_eval = net.forward(x);
  REQUIRE(net.infer(x, ws) == y_eval);
}
