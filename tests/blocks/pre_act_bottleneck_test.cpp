#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

TEST_CASE("PreActBottleneck: gradients with identity and projection skips", "[resnet][gradient]") {
  PreActBottleneck<double> same(8, 2);
  REQUIRE(same.shortcut().kind() == ShortcutKind::identity);
  same.set_image_size({4, 3});
  rbtest::require_gradients(same, rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 12, 1));
  PreActBottleneck<double> down(4, 2, 2);
  REQUIRE(down.out_features() == 8);
  down.set_image_size({5, 4});
  rbtest::require_gradients(down, rbtest::random_batch<Eigen::MatrixXd>(4, 2 * 20, 2));
  down.set_training(false);
  rbtest::require_gradients(down, rbtest::random_batch<Eigen::MatrixXd>(4, 2 * 20, 3));
}

TEST_CASE("PreActBottleneck: names", "[resnet]") {
  PreActBottleneck<float> block(4, 2, 2);
  std::vector<std::string> names;
  block.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names == std::vector<std::string>{"bn1.weight", "bn1.bias", "conv1.weight", "bn2.weight", "bn2.bias",
                                            "conv2.weight", "bn3.weight", "bn3.bias", "conv3.weight",
                                            "downsample.0.weight"});
}
