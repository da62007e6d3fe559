// PyTorch parity of LayerNorm and Highway against the fixtures layer_norm, layer_norm_offset and
// highway written by tests/reference/make_highway_fixtures.py (float64 autograd, `y.backward(dL_dy)`).
//
// Each fixture holds x (features x samples), the parameters under their PyTorch names
// (`param.<name>`), an upstream gradient dL_dy, and PyTorch's y, dL/dx and parameter gradients
// (`grad.<name>`). Every network is built in double (tolerance 1e-12) and float (1e-5), with static
// and Dynamic sizes; a comparison passes when max |resblocks - PyTorch| <= tol * max(1, max |PyTorch|).
// The parameter names the network visits must be exactly the fixture's, so a renaming fails.

#include "support/catch.hpp"
#include "support/fixture.hpp"
#include "support/parity.hpp"

#include <resblocks/blocks/highway.hpp>
#include <resblocks/blocks/sequential.hpp>
#include <resblocks/layers/layer_norm.hpp>
#include <resblocks/layers/linear.hpp>
#include <resblocks/layers/relu.hpp>

#include <string>
#include <string_view>

namespace {

using resblocks::Dynamic;
using resblocks_tests::check_close;
using resblocks_tests::Fixture;
using resblocks_tests::fixture_batch;
using resblocks_tests::load_fixture;
using resblocks_tests::load_parameters;
using resblocks_tests::tolerance;

/// resblocks_tests::check_parity, with at least two parameter tensors.
template <class Net>
void check_parity(Net& net, const std::string& file) {
  resblocks_tests::check_parity(net, file, 2);
}

// The anchor's Highway: H = nn.Linear with the ReLU applied in forward, so H's parameters are
// h.weight and h.bias; the Sequential's children are unnamed to give those names.
template <class S, int D>
using AnchorHighway = resblocks::Highway<resblocks::Sequential<resblocks::Linear<S, D, D>, resblocks::ReLU<S, D>>>;

template <class S>
AnchorHighway<S, 8> make_highway_static() {
  AnchorHighway<S, 8> hw;
  hw.h().set_child_names({"", ""});
  return hw;
}

template <class S>
AnchorHighway<S, Dynamic> make_highway_dynamic() {
  using H = resblocks::Sequential<resblocks::Linear<S>, resblocks::ReLU<S>>;
  AnchorHighway<S, Dynamic> hw(H(resblocks::Linear<S>(8, 8), resblocks::ReLU<S>()));
  hw.h().set_child_names({"", ""});
  return hw;
}

}  // namespace

TEST_CASE("PyTorch parity: LayerNorm (double, static sizes)", "[layer_norm][parity]") {
  resblocks::LayerNorm<double, 6> ln;
  check_parity(ln, "layer_norm.txt");
  resblocks::LayerNorm<double, 24> wide;
  check_parity(wide, "layer_norm_offset.txt");
}

TEST_CASE("PyTorch parity: LayerNorm (double, dynamic sizes)", "[layer_norm][parity]") {
  resblocks::LayerNorm<double> ln(6);
  check_parity(ln, "layer_norm.txt");
  resblocks::LayerNorm<double> wide(24);
  check_parity(wide, "layer_norm_offset.txt");
}

TEST_CASE("PyTorch parity: LayerNorm (float, static sizes)", "[layer_norm][parity]") {
  resblocks::LayerNorm<float, 6> ln;
  check_parity(ln, "layer_norm.txt");
  resblocks::LayerNorm<float, 24> wide;
  check_parity(wide, "layer_norm_offset.txt");
}

TEST_CASE("PyTorch parity: LayerNorm (float, dynamic sizes)", "[layer_norm][parity]") {
  resblocks::LayerNorm<float> ln(6);
  check_parity(ln, "layer_norm.txt");
  resblocks::LayerNorm<float> wide(24);
  check_parity(wide, "layer_norm_offset.txt");
}

TEST_CASE("PyTorch parity: Highway of the anchor (double, static sizes)", "[highway][parity]") {
  auto hw = make_highway_static<double>();
  check_parity(hw, "highway.txt");
}

TEST_CASE("PyTorch parity: Highway of the anchor (double, dynamic sizes)", "[highway][parity]") {
  auto hw = make_highway_dynamic<double>();
  check_parity(hw, "highway.txt");
}

TEST_CASE("PyTorch parity: Highway of the anchor (float, static sizes)", "[highway][parity]") {
  auto hw = make_highway_static<float>();
  check_parity(hw, "highway.txt");
}

TEST_CASE("PyTorch parity: Highway of the anchor (float, dynamic sizes)", "[highway][parity]") {
  auto hw = make_highway_dynamic<float>();
  check_parity(hw, "highway.txt");
}
