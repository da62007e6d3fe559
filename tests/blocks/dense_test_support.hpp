#pragma once
// Helpers of the DenseNet tests: random BatchNorm parameters and buffers, copying and comparing by name.
#include "support/fixture.hpp"
#include "support/helpers.hpp"
#include "support/parity.hpp"

#include <resblocks/blocks/dense_block.hpp>
#include <resblocks/blocks/dense_layer.hpp>
#include <resblocks/blocks/sequential.hpp>
#include <resblocks/layers/batch_norm2d.hpp>
#include <resblocks/layers/conv2d.hpp>
#include <resblocks/layers/relu.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>

namespace rbtest {

/// BatchNorm γ in [0.5, 1.5] and β in [-0.5, 0.5] (names `*norm*.weight`, `*.bias`), running means in
/// [-0.5, 0.5], variances in [0.5, 1.5], counts 3; weights keep their values. Not the defaults, so
/// that γ's gradient and eval mode are exercised.
template <class Net>
void randomise_norms(Net& net, std::uint64_t seed) {
  resblocks::Generator g(seed);
  net.for_each_parameter([&](std::string_view name, auto& value, const auto&) {
    if (name.find("norm") == std::string_view::npos) return;
    resblocks::fill_uniform(value, 0.5, g);
    if (name.substr(name.size() - 6) == "weight") value.array() += 1;
  });
  net.for_each_buffer([&](std::string_view name, auto& value) {
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(value)>, std::int64_t>) {
      value = 3;
    } else {
      resblocks::fill_uniform(value, 0.5, g);
      if (name.find("running_var") != std::string_view::npos) value.array() += 1;
    }
  });
}

/// Every parameter by name, as double.
template <class Net>
std::map<std::string, Eigen::MatrixXd> parameters_by_name(const Net& net) {
  std::map<std::string, Eigen::MatrixXd> out;
  net.for_each_parameter(
      [&](std::string_view n, const auto& v, const auto&) { out[std::string(n)] = v.template cast<double>(); });
  return out;
}
/// Every parameter gradient by name, as double.
template <class Net>
std::map<std::string, Eigen::MatrixXd> gradients_by_name(const Net& net) {
  std::map<std::string, Eigen::MatrixXd> out;
  net.for_each_parameter(
      [&](std::string_view n, const auto&, const auto& g) { out[std::string(n)] = g.template cast<double>(); });
  return out;
}
/// Every floating-point buffer by name (counts as 1×1), as double.
template <class Net>
std::map<std::string, Eigen::MatrixXd> buffers_by_name(Net& net) {
  std::map<std::string, Eigen::MatrixXd> out;
  net.for_each_buffer([&](std::string_view n, const auto& v) {
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(v)>, std::int64_t>)
      out[std::string(n)] = Eigen::MatrixXd::Constant(1, 1, double(v));
    else
      out[std::string(n)] = v.template cast<double>();
  });
  return out;
}

/// Copies parameters and buffers from `from` into `to` by name; the name sets must be equal.
template <class From, class To>
void copy_by_name(From& from, To& to) {
  const auto params = parameters_by_name(from);
  const auto buffers = buffers_by_name(from);
  std::size_t n = 0;
  to.for_each_parameter([&](std::string_view name, auto& v, const auto&) {
    INFO("parameter " << name);
    const auto it = params.find(std::string(name));
    REQUIRE(it != params.end());
    REQUIRE(it->second.rows() == v.rows());
    REQUIRE(it->second.cols() == v.cols());
    v = it->second.template cast<typename std::remove_cvref_t<decltype(v)>::Scalar>();
    ++n;
  });
  REQUIRE(n == params.size());
  n = 0;
  to.for_each_buffer([&](std::string_view name, auto& v) {
    INFO("buffer " << name);
    const auto it = buffers.find(std::string(name));
    REQUIRE(it != buffers.end());
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(v)>, std::int64_t>)
      v = std::int64_t(it->second(0, 0));
    else
      v = it->second.template cast<typename std::remove_cvref_t<decltype(v)>::Scalar>();
    ++n;
  });
  REQUIRE(n == buffers.size());
}

/// Both maps have the same names and every tensor agrees to `tol` (relative to max(1, max |b|)).
inline void require_same(const std::map<std::string, Eigen::MatrixXd>& a,
                         const std::map<std::string, Eigen::MatrixXd>& b, double tol) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, m] : b) {
    INFO("tensor " << name);
    REQUIRE(a.count(name) == 1);
    CHECK(rel_diff(a.at(name), m) <= tol);
  }
}

/// torchvision's _DenseLayer written with the stock layers (BatchNorm2d, ReLU, Conv2d): the
/// independent reference for DenseLayer and DenseBlock.
template <class S>
using StockDenseLayer = resblocks::Sequential<resblocks::BatchNorm2d<S>, resblocks::ReLU<S>, resblocks::Conv2d<S>,
                                              resblocks::BatchNorm2d<S>, resblocks::ReLU<S>, resblocks::Conv2d<S>>;

template <class S>
StockDenseLayer<S> stock_dense_layer(resblocks::Index c, resblocks::Index k, resblocks::Index bn_size = 4) {
  using namespace resblocks;
  StockDenseLayer<S> l(BatchNorm2d<S>(c), ReLU<S>(), Conv2d<S>(c, bn_size * k, 1, {.bias = false}),
                       BatchNorm2d<S>(bn_size * k), ReLU<S>(),
                       Conv2d<S>(bn_size * k, k, 3, {.padding = 1, .bias = false}));
  l.set_child_names({"norm1", "", "conv1", "norm2", "", "conv2"});
  return l;
}

/// Overwrites every buffer with the fixture's `buffer.<name>`; the visited names must be exactly the
/// fixture's buffer names (and its `after.` names).
template <class Block>
void load_fixture_buffers(Block& block, const resblocks_tests::Fixture& fixture) {
  using S = typename Block::Scalar;
  std::set<std::string> visited;
  block.for_each_buffer([&](std::string_view name, auto& value) {
    const std::string n(name);
    INFO(fixture.source() << ": buffer " << n);
    REQUIRE(visited.insert(n).second);
    const Eigen::MatrixXd& m = fixture.matrix("buffer." + n);
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(value)>, std::int64_t>) {
      REQUIRE(m.size() == 1);
      value = std::int64_t(m(0, 0));
    } else {
      REQUIRE(m.cols() == 1);
      REQUIRE(value.size() == m.rows());
      value = m.col(0).cast<S>();
    }
  });
  INFO(fixture.source());
  REQUIRE(visited == fixture.names_with_prefix("buffer."));
  REQUIRE(visited == fixture.names_with_prefix("after."));
}

/// One training step (y, dL/dx, parameter gradients, buffers after it) and one eval-mode forward of
/// `block` against the fixture written by tests/reference/make_dense_fixtures.py.
template <class Block>
void check_against_fixture(Block& block, const std::string& file) {
  using namespace resblocks_tests;
  using S = typename Block::Scalar;
  using Batch = typename Block::Input;
  const Fixture fixture = load_fixture(file);
  const double tol = tolerance<S>;
  const Eigen::MatrixXd& shape = fixture.matrix("x_shape");
  block.set_image_size({resblocks::Index(shape(2, 0)), resblocks::Index(shape(3, 0))});
  REQUIRE(load_parameters(block, fixture) >= 3);
  load_fixture_buffers(block, fixture);
  const Batch x = fixture_batch<Batch>(fixture, "x");
  const typename Block::Output dL_dy = fixture_batch<typename Block::Output>(fixture, "dL_dy");
  block.set_training(true);
  block.zero_grad();
  check_close(fixture, "y", block.forward(x), tol);
  check_close(fixture, "dL_dx", block.backward(dL_dy), tol);
  block.for_each_parameter([&](std::string_view name, const auto&, const auto& grad) {
    check_close(fixture, "grad." + std::string(name), grad, tol);
  });
  block.for_each_buffer([&](std::string_view name, const auto& value) {
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(value)>, std::int64_t>) {
      INFO(fixture.source() << ": buffer " << name);
      CHECK(double(value) == fixture.matrix("after." + std::string(name))(0, 0));
    } else {
      check_close(fixture, "after." + std::string(name), value, tol);
    }
  });
  block.set_training(false);
  check_close(fixture, "y_eval", block.forward(x), tol, "eval forward");
  typename Block::Workspace ws;
  check_close(fixture, "y_eval", block.infer(x, ws), tol, "eval infer");
}

}  // namespace rbtest
