#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

TEST_CASE("PreActBlock: gradients with identity and projection skips, train and eval", "[resnet][gradient]") {
  for (bool training : {true, false}) {
    INFO("training " << training);
    PreActBlock<double> same(3, 3);
    REQUIRE(same.shortcut().kind() == ShortcutKind::identity);
    same.set_image_size({5, 4});
    same.set_training(training);
    rbtest::require_gradients(same, rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 20, 1));
    PreActBlock<double> down(3, 4, 2);
    REQUIRE(down.shortcut().kind() == ShortcutKind::projection_conv);
    down.set_image_size({5, 5});
    down.set_training(training);
    rbtest::require_gradients(down, rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 25, 2));
  }
}

TEST_CASE("PreActBlock: names, zero-init starts as the identity, infer equals forward", "[resnet]") {
  PreActBlock<float> down(4, 8, 2);
  std::vector<std::string> names;
  down.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names == std::vector<std::string>{"bn1.weight", "bn1.bias", "conv1.weight", "bn2.weight", "bn2.bias",
                                            "conv2.weight", "downsample.0.weight"});
  PreActBlock<double> block(3, 3, 1, {.zero_init_residual = true});
  block.set_image_size({4, 4});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 16, 3);
  REQUIRE(block.forward(x) == x);
  PreActBlock<double>::Workspace ws;
  REQUIRE(block.infer(x, ws) == x);
}
