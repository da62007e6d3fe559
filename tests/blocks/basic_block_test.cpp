#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <string>
#include <vector>

using namespace resblocks;

namespace {
std::vector<std::string> parameter_names(const auto& layer) {
  std::vector<std::string> names;
  layer.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  layer.for_each_buffer([&](std::string_view n, const auto&) { names.emplace_back(n); });
  return names;
}
}  // namespace

TEST_CASE("BasicBlock: gradients with identity, projection and zero-padding skips (train mode)", "[resnet][gradient]") {
  {
    BasicBlock<double> block(3, 3);
    block.set_image_size({5, 4});
    rbtest::require_gradients(block, rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 20, 1));
  }
  {
    BasicBlock<double> block(3, 4, 2);  // projection: 1x1 conv stride 2 + BN
    REQUIRE(block.shortcut().kind() == ShortcutKind::projection);
    REQUIRE(block.set_image_size({7, 5}) == ImageSize{4, 3});
    rbtest::require_gradients(block, rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 35, 2));
  }
  {
    BasicBlock<double> block(2, 4, 2, {.downsample = ShortcutKind::zero_pad});
    block.set_image_size({6, 6});
    rbtest::require_gradients(block, rbtest::random_batch<Eigen::MatrixXd>(2, 2 * 36, 3));
  }
}

TEST_CASE("BasicBlock: gradients in evaluation mode", "[resnet][gradient]") {
  BasicBlock<double> block(3, 4, 2);
  block.set_image_size({5, 5});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 3 * 25, 4);
  for (int i = 0; i < 3; ++i) block.forward(x);  // running statistics away from their initial values
  block.set_training(false);
  rbtest::require_gradients(block, x);
}

TEST_CASE("BasicBlock: torchvision names, zero-init makes it start as relu(skip(x))", "[resnet]") {
  BasicBlock<float> down(4, 8, 2);
  REQUIRE(parameter_names(down) ==
          std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
                                   "downsample.0.weight", "downsample.1.weight", "downsample.1.bias",
                                   "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked", "bn2.running_mean",
                                   "bn2.running_var", "bn2.num_batches_tracked", "downsample.1.running_mean",
                                   "downsample.1.running_var", "downsample.1.num_batches_tracked"});
  BasicBlock<float> same(4, 4);
  REQUIRE(parameter_count(same) == 2 * 4 * 4 * 9 + 4 * 4);

  BasicBlock<double> block(3, 3, 1, {.zero_init_residual = true});
  block.set_image_size({4, 4});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 16, 5);
  REQUIRE(block.forward(x) == x.cwiseMax(0.0));
}

TEST_CASE("BasicBlock: the plain twin has the same parameters and no skip", "[resnet]") {
  manual_seed(7);
  BasicBlock<double> residual(3, 3);
  manual_seed(7);
  BasicBlock<double> plain(3, 3, 1, {.plain = true});
  REQUIRE(plain.shortcut().kind() == ShortcutKind::none);
  REQUIRE(parameter_names(plain) == parameter_names(residual));
  residual.set_image_size({4, 4});
  plain.set_image_size({4, 4});
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 16, 6);
  // relu(x + F(x)) vs relu(F(x)), with the same F (same seed).
  const Eigen::MatrixXd body = plain.forward(x);
  const Eigen::MatrixXd with_skip = residual.forward(x);
  const Eigen::MatrixXd f = residual.branch().forward(x);
  REQUIRE(rbtest::rel_diff(with_skip, (x + f).cwiseMax(0.0)) < 1e-12);
  REQUIRE(rbtest::rel_diff(body, f.cwiseMax(0.0)) < 1e-12);
  rbtest::require_gradients(plain, x);
}

TEST_CASE("BasicBlock: infer equals forward, float agrees with double", "[resnet]") {
  BasicBlock<double> d(3, 5, 2);
  BasicBlock<float> f(3, 5, 2);
  rbtest::copy_parameters(d, f);
  d.set_image_size({6, 7});
  f.set_image_size({6, 7});
  const auto xd = rbtest::random_batch<Eigen::MatrixXd>(3, 3 * 42, 8);
  const Eigen::MatrixXf xf = xd.cast<float>();
  REQUIRE(rbtest::rel_diff(f.forward(xf), d.forward(xd)) < 1e-4);
  for (bool training : {true, false}) {
    f.set_training(training);
    const Eigen::MatrixXf y = f.forward(xf);
    BasicBlock<float>::Workspace ws;
    REQUIRE(f.infer(xf, ws) == y);
  }
}

TEST_CASE("BasicBlock: shape errors name the layer", "[resnet][errors]") {
  REQUIRE_THROWS_WITH(BasicBlock<float>(3, 4, 2, {.downsample = ShortcutKind::identity}),
                      rbtest::contains("identity skip cannot map 3 -> 4 channels, stride 2"));
  BasicBlock<float> block(3, 3);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(3, 32);
  REQUIRE_THROWS_WITH(block.forward(x), rbtest::contains("image size not set"));
  block.set_image_size({4, 4});
  const Eigen::MatrixXf wrong = Eigen::MatrixXf::Ones(5, 32);
  REQUIRE_THROWS_WITH(block.forward(wrong), rbtest::contains("input is 5x32"));
}
