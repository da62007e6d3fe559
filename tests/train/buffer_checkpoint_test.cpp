// BufferCheckpoint, and what a throwing training forward pass changes (the BatchNorm running
// statistics of the layers before the one that threw): documented in buffer_checkpoint.hpp.
#include "support/helpers.hpp"

#include <resblocks/blocks/sequential.hpp>
#include <resblocks/layers/batch_norm2d.hpp>
#include <resblocks/layers/max_pool2d.hpp>
#include <resblocks/train/buffer_checkpoint.hpp>

#include <Eigen/Core>

#include <stdexcept>

using namespace resblocks;

namespace {
using Net = Sequential<BatchNorm2d<double>, MaxPool2d<double>>;
}  // namespace

TEST_CASE("BufferCheckpoint: a forward that throws after a BatchNorm is undone by restore", "[train][buffers]") {
  Net net(BatchNorm2d<double>(3), MaxPool2d<double>(2));
  net.set_image_size({4, 4});
  net.set_training(true);
  const Eigen::MatrixXd good = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 16, 1);
  net.forward(good);
  BufferCheckpoint checkpoint(net);
  const Eigen::VectorXd mean = net.get<0>().running_mean(), var = net.get<0>().running_var();
  REQUIRE(net.get<0>().num_batches_tracked() == 1);

  // 17 columns are not whole 4x4 images: the BatchNorm runs, the pooling throws.
  const Eigen::MatrixXd bad = rbtest::random_batch<Eigen::MatrixXd>(3, 17, 2);
  checkpoint.save(net);
  REQUIRE_THROWS_AS(net.forward(bad), std::invalid_argument);
  // The documented basic guarantee: the earlier BatchNorm has already moved its statistics.
  REQUIRE(net.get<0>().num_batches_tracked() == 2);
  REQUIRE(net.get<0>().running_mean() != mean);
  checkpoint.restore(net);
  REQUIRE(net.get<0>().num_batches_tracked() == 1);
  REQUIRE(net.get<0>().running_mean() == mean);
  REQUIRE(net.get<0>().running_var() == var);

  // A model with other buffers is refused.
  Net other(BatchNorm2d<double>(4), MaxPool2d<double>(2));
  REQUIRE_THROWS_WITH(checkpoint.restore(other), rbtest::contains("BufferCheckpoint: the model's buffers changed"));
}
