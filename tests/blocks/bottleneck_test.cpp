#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

TEST_CASE("Bottleneck: gradients with identity and projection skips", "[resnet][gradient]") {
  {
    Bottleneck<double> block(8, 2);  // 8 -> 2 -> 2 -> 8: identity
    REQUIRE(block.shortcut().kind() == ShortcutKind::identity);
    block.set_image_size({4, 5});
    rbtest::require_gradients(block, rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 20, 1));
  }
  {
    Bottleneck<double> block(4, 2, 2);  // 4 -> 8 channels, stride 2 on the 3x3 conv
    REQUIRE(block.out_features() == 8);
    REQUIRE(block.set_image_size({5, 6}) == ImageSize{3, 3});
    rbtest::require_gradients(block, rbtest::random_batch<Eigen::MatrixXd>(4, 2 * 30, 2));
  }
}

TEST_CASE("Bottleneck: torchvision's names and parameter count", "[resnet]") {
  Bottleneck<float> block(64, 64);  // torchvision resnet50 layer1.0: with downsample 64 -> 256
  REQUIRE(parameter_count(block) == 64 * 64 + 64 * 64 * 9 + 64 * 256 + 2 * (64 + 64 + 256) + 64 * 256 + 2 * 256);
  std::vector<std::string> names;
  block.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names.front() == "conv1.weight");
  REQUIRE(names[6] == "conv3.weight");
  REQUIRE(names.back() == "downsample.1.bias");
}

TEST_CASE("Bottleneck: evaluation-mode gradients, infer equals forward", "[resnet][gradient]") {
  Bottleneck<double> block(4, 2, 2);
  block.set_image_size({4, 4});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(4, 2 * 16, 3);
  block.forward(x);
  block.set_training(false);
  rbtest::require_gradients(block, x);
  const Eigen::MatrixXd y = block.forward(x);
  Bottleneck<double>::Workspace ws;
  REQUIRE(block.infer(x, ws) == y);
}
