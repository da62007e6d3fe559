// set_training / eval / train on whole networks (the examples' way into eval mode).

#include "support/helpers.hpp"

#include <resblocks/blocks/cifar_resnet.hpp>
#include <resblocks/core/training_mode.hpp>
#include <resblocks/layers/linear.hpp>

#include <Eigen/Core>

using namespace resblocks;

TEST_CASE("training mode: eval(net) and train(net) switch every BatchNorm of a network", "[core][training]") {
  manual_seed(3);
  CifarResNet<float> net({.depth = 8, .in_channels = 1, .classes = 3, .width = 4, .image = {6, 6}});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(1, 4 * 36, 5);
  auto modes = [&] {
    int training = 0, eval_mode = 0;
    for_each_leaf(net, [&](auto& layer) {
      if constexpr (requires { layer.training(); }) (layer.training() ? training : eval_mode) += 1;
    });
    return std::pair{training, eval_mode};
  };
  REQUIRE(modes().first > 0);
  REQUIRE(modes().second == 0);  // networks start in training mode

  const Eigen::MatrixXf batch_stats = net.forward(x);
  eval(net);
  REQUIRE(modes().first == 0);
  const Eigen::MatrixXf running_stats = net.forward(x);
  REQUIRE((batch_stats - running_stats).cwiseAbs().maxCoeff() > 1e-3);  // eval mode changes the output
  CifarResNet<float>::Workspace ws;
  REQUIRE(net.infer(x, ws) == running_stats);  // infer follows the mode as forward does

  train(net);
  REQUIRE(modes().second == 0);
  set_training(net, false);
  REQUIRE(modes().first == 0);
  set_training(net, true);
  REQUIRE(net.forward(x) != running_stats);

  Linear<float, 2, 3> linear;  // no mode: unaffected, still compiles
  eval(linear);
  train(linear);
}
