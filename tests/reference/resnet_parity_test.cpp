// PyTorch parity of the ResNet blocks: BasicBlock, Bottleneck and PreActBlock against the fixtures
// resnet_basic_block_projection, resnet_bottleneck and resnet_preact_block written by
// tests/reference/make_resnet_fixtures.py (float64 autograd, torchvision's module names).
//
// Each fixture holds x in the image layout (channels x N·H·W) with its NCHW shape `x_shape`, the
// parameters (`param.<name>`) and BatchNorm buffers (`buffer.<name>`, non-default running statistics)
// under torchvision's names, an upstream gradient dL_dy, and PyTorch's results of one training step:
// y, dL/dx, every parameter gradient (`grad.<name>`) and the buffers after it (`after.<name>`); then
// `y_eval`, the eval-mode output on the same x with the updated running statistics.
//
// A comparison passes when max |resblocks - PyTorch| <= tol * max(1, max |PyTorch|).

#include "support/catch.hpp"
#include "support/fixture.hpp"
#include "support/parity.hpp"

#include <resblocks/blocks/basic_block.hpp>
#include <resblocks/blocks/block_options.hpp>
#include <resblocks/blocks/bottleneck.hpp>
#include <resblocks/blocks/pre_act_block.hpp>
#include <resblocks/core/image_size.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>

namespace {

using resblocks::Index;
using resblocks_tests::check_close;
using resblocks_tests::Fixture;
using resblocks_tests::load_fixture;
using resblocks_tests::load_parameters;
using resblocks_tests::tolerance;

// The tolerance (resblocks_tests::tolerance) is relative to max(1, max |PyTorch|), the same for every
// tensor (y, y_eval, dL/dx, the parameter gradients and the running statistics).
//
// double: the blocks compute in double what PyTorch computes in double, up to summation order
// (measured: at most 2e-15).
//
// float: the inputs, parameters and dL_dy are exact in float, so only the arithmetic differs. The
// parameter gradients are the worry: they are sums over all N·Ho·Wo positions of terms that went
// through the BatchNorm backward, dy - mean(dy) - x̂·mean(dy·x̂), which cancels by construction, and
// γ's gradient Σ dy·x̂ carries the float rounding of the batch statistics in x̂; so their error is
// relative to the terms rather than to the sum. At these sizes (≤ 72 positions per channel, BN
// statistics merged in double) that costs little: the largest float error measured is 4e-7
// (grad.bn1.weight of the PreActBlock; y, dL/dx and the buffers stay below 2.5e-7), so 1e-5 holds for
// the gradients too, with a 25x margin. Larger batches would need a looser bound for them.

/// The fixture's 1 x 1 tensor `tensor` as an integer (num_batches_tracked).
std::int64_t fixture_count(const Fixture& fixture, const std::string& tensor) {
  const Eigen::MatrixXd& m = fixture.matrix(tensor);
  INFO(fixture.source() << ": tensor " << tensor);
  REQUIRE(m.rows() == 1);
  REQUIRE(m.cols() == 1);
  REQUIRE(m(0, 0) == std::floor(m(0, 0)));
  return static_cast<std::int64_t>(m(0, 0));
}

template <class V>
constexpr bool is_count = std::is_same_v<std::remove_cvref_t<V>, std::int64_t>;

/// Overwrites every parameter with the fixture's `param.<name>`; the visited names must be exactly
/// the fixture's parameter (and gradient) names, so a missing or renamed parameter fails the test.
/// Overwrites every buffer with the fixture's `buffer.<name>` (the same name check as parameters).
template <class Block>
void load_buffers(Block& block, const Fixture& fixture) {
  using S = typename Block::Scalar;
  std::set<std::string> visited;
  block.for_each_buffer([&](std::string_view name, auto& value) {
    const std::string n(name);
    INFO(fixture.source() << ": buffer " << n);
    REQUIRE(visited.insert(n).second);
    REQUIRE(fixture.contains("buffer." + n));
    if constexpr (is_count<decltype(value)>) {
      value = fixture_count(fixture, "buffer." + n);
    } else {
      const Eigen::MatrixXd& m = fixture.matrix("buffer." + n);
      REQUIRE(m.cols() == 1);
      REQUIRE(value.size() == m.rows());
      value = m.col(0).cast<S>();
    }
  });
  INFO(fixture.source());
  REQUIRE(!visited.empty());
  REQUIRE(visited == fixture.names_with_prefix("buffer."));
  REQUIRE(visited == fixture.names_with_prefix("after."));
}

/// Compares every buffer with the fixture's `after.<name>` (counts exactly).
template <class Block>
void check_buffers_after_step(Block& block, const Fixture& fixture, double tol, std::string_view via) {
  std::set<std::string> visited;
  block.for_each_buffer([&](std::string_view name, auto& value) {
    const std::string n(name);
    visited.insert(n);
    if constexpr (is_count<decltype(value)>) {
      INFO(fixture.source() << ": buffer " << n << " (" << via << ")");
      CHECK(value == fixture_count(fixture, "after." + n));
    } else {
      check_close(fixture, "after." + n, value, tol, via);
    }
  });
  INFO(fixture.source());
  REQUIRE(visited == fixture.names_with_prefix("after."));
}

/// One training step and one eval-mode forward of `block` against the fixture `file`.
template <class Block>
void check_block(Block& block, const std::string& file) {
  using S = typename Block::Scalar;
  using Batch = typename Block::Input;
  constexpr double tol = tolerance<S>;
  const Fixture fixture = load_fixture(file);

  const Eigen::MatrixXd& shape = fixture.matrix("x_shape");  // N, C, H, W
  REQUIRE(shape.size() == 4);
  const resblocks::ImageSize size{static_cast<Index>(shape(2)), static_cast<Index>(shape(3))};
  const resblocks::ImageSize out_size = block.set_image_size(size);

  REQUIRE(load_parameters(block, fixture) > 0);
  load_buffers(block, fixture);
  block.zero_grad();

  const Batch x = fixture.matrix("x").cast<S>();
  const typename Block::Output dL_dy = fixture.matrix("dL_dy").cast<S>();
  REQUIRE(x.rows() == static_cast<Index>(shape(1)));
  REQUIRE(x.cols() == static_cast<Index>(shape(0)) * size.area());
  REQUIRE(dL_dy.cols() == static_cast<Index>(shape(0)) * out_size.area());

  // Training mode (the default): batch statistics, running statistics updated once.
  check_close(fixture, "y", block.forward(x), tol, "train forward");
  check_close(fixture, "dL_dx", block.backward(dL_dy), tol, "train backward");
  std::size_t grads = 0;
  block.for_each_parameter([&](std::string_view name, auto&, auto& grad) {
    check_close(fixture, "grad." + std::string(name), grad, tol, "train backward");
    ++grads;
  });
  CHECK(grads == fixture.names_with_prefix("grad.").size());
  check_buffers_after_step(block, fixture, tol, "after the training step");

  // infer() in training mode normalises with the batch statistics too, and updates nothing.
  typename Block::Workspace ws;
  check_close(fixture, "y", block.infer(x, ws), tol, "train infer");
  check_buffers_after_step(block, fixture, tol, "after train infer");

  // Eval mode: the running statistics after the step; forward and infer leave them alone.
  block.set_training(false);
  check_close(fixture, "y_eval", block.forward(x), tol, "eval forward");
  check_buffers_after_step(block, fixture, tol, "after eval forward");
  typename Block::Workspace eval_ws;
  check_close(fixture, "y_eval", block.infer(x, eval_ws), tol, "eval infer");
}

template <class S>
void check_basic_block() {
  resblocks::BasicBlock<S> block(4, 6, 2, resblocks::BlockOptions{});
  REQUIRE(block.shortcut().kind() == resblocks::ShortcutKind::projection);
  check_block(block, "resnet_basic_block_projection.txt");
}

template <class S>
void check_bottleneck() {
  resblocks::Bottleneck<S> block(8, 3, 2, resblocks::BlockOptions{});
  REQUIRE(block.shortcut().kind() == resblocks::ShortcutKind::projection);
  check_block(block, "resnet_bottleneck.txt");
}

template <class S>
void check_pre_act_block() {
  resblocks::PreActBlock<S> block(4, 6, 2, resblocks::BlockOptions{});
  REQUIRE(block.shortcut().kind() == resblocks::ShortcutKind::projection_conv);
  check_block(block, "resnet_preact_block.txt");
}

}  // namespace

TEST_CASE("PyTorch parity: BasicBlock with projection skip (double)") { check_basic_block<double>(); }
TEST_CASE("PyTorch parity: BasicBlock with projection skip (float)") { check_basic_block<float>(); }
TEST_CASE("PyTorch parity: Bottleneck (double)") { check_bottleneck<double>(); }
TEST_CASE("PyTorch parity: Bottleneck (float)") { check_bottleneck<float>(); }
TEST_CASE("PyTorch parity: PreActBlock (double)") { check_pre_act_block<double>(); }
TEST_CASE("PyTorch parity: PreActBlock (float)") { check_pre_act_block<float>(); }
