#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace resblocks;

namespace {
bool has_name(const auto& net, const std::string& name) {
  bool found = false;
  net.for_each_parameter([&](std::string_view n, const auto&, const auto&) { found = found || n == name; });
  net.for_each_buffer([&](std::string_view n, const auto&) { found = found || n == name; });
  return found;
}
}  // namespace

TEST_CASE("ResNet-18/34/50: torchvision's parameter counts and state_dict names", "[resnet]") {
  // torchvision.models.resnet18/34/50(): 11,689,512 / 21,797,672 / 25,557,032 parameters.
  const auto r18 = resnet18<float>();
  REQUIRE(parameter_count(r18) == 11689512);
  REQUIRE(parameter_count(resnet34<float>()) == 21797672);
  const auto r50 = resnet50<float>();
  REQUIRE(parameter_count(r50) == 25557032);
  for (const char* name : {"conv1.weight", "bn1.running_mean", "layer1.0.bn2.running_var",
                           "layer2.0.downsample.0.weight", "layer4.1.conv2.weight", "fc.weight", "fc.bias"})
    REQUIRE(has_name(r18, name));
  REQUIRE_FALSE(has_name(r18, "layer1.0.downsample.0.weight"));  // layer1 keeps 64 channels
  REQUIRE(has_name(r50, "layer1.0.downsample.0.weight"));        // 64 -> 256
  REQUIRE(has_name(r50, "layer3.5.bn3.num_batches_tracked"));
  std::size_t buffers = 0;
  r18.for_each_buffer([&](std::string_view, const auto&) { ++buffers; });
  REQUIRE(buffers == 3 * 20);  // torchvision resnet18: 20 BatchNorm2d
}

TEST_CASE("ResNet-18: a small image runs forward and backward, eval switch reaches every BN", "[resnet]") {
  auto net = resnet18<float>({.classes = 10, .image = {32, 32}});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(3, 2 * 32 * 32, 1);
  const Eigen::MatrixXf& y = net.forward(x);
  REQUIRE(y.rows() == 10);
  REQUIRE(y.cols() == 2);
  REQUIRE(y.allFinite());
  const Eigen::MatrixXf& dx = net.backward(Eigen::MatrixXf::Ones(10, 2));
  REQUIRE(dx.rows() == 3);
  REQUIRE(dx.cols() == 2 * 32 * 32);
  int bns = 0, training = 0;
  net.set_training(false);
  for_each_leaf(net, [&](auto& layer) {
    if constexpr (requires { layer.running_var(); }) {
      ++bns;
      training += layer.training() ? 1 : 0;
    }
  });
  REQUIRE(bns == 20);
  REQUIRE(training == 0);
}

TEST_CASE("ResNet: torchvision's initialisation (Kaiming normal, fan_out, ReLU gain)", "[resnet][init]") {
  manual_seed(3);
  auto net = resnet18<double>({.classes = 10, .image = {32, 32}});
  // layer3.0.conv2: 256 out channels, 3x3 -> std = sqrt(2 / (256 * 9))
  const auto& w = net.get<6>()[0].branch().get<3>().weight();
  const double std = std::sqrt((w.array() - w.mean()).square().mean());
  REQUIRE(std::abs(std / std::sqrt(2.0 / (256 * 9)) - 1.0) < 0.01);
  const auto& bn = net.get<6>()[0].branch().get<1>();
  REQUIRE(bn.weight().isOnes());
  REQUIRE(bn.bias().isZero());
  auto zero = resnet18<float>({.classes = 10, .image = {32, 32}, .zero_init_residual = true});
  REQUIRE(zero.get<4>()[1].branch().get<4>().weight().isZero());
}
