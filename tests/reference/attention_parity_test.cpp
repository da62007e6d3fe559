// PyTorch parity of MultiHeadAttention: the fixtures attention_self, attention_causal and
// attention_key_padding written by tests/reference/make_attention_fixtures.py (torch's
// nn.MultiheadAttention(d, heads, batch_first=True) as self-attention, float64 autograd).
//
// Each fixture holds (L, B, d, heads) as `shape`, x and dL_dy (d x B·L, token t of sequence b in
// column t + L·b), the parameters under PyTorch's names, the key-padding `mask` (L x B) where used,
// and PyTorch's y, dL/dx, parameter gradients and per-head attention weights.
//
// A comparison passes when max |resblocks - PyTorch| <= tol * max(1, max |PyTorch|), tol 1e-12 in
// double, 1e-5 in float (inputs and parameters are multiples of 1/64, exact in float).

#include "support/catch.hpp"
#include "support/fixture.hpp"
#include "support/parity.hpp"

#include <resblocks/layers/multi_head_attention.hpp>

#include <Eigen/Core>

#include <string>

namespace {

using resblocks::Index;
using resblocks::MultiHeadAttention;
using resblocks_tests::check_close;
using resblocks_tests::Fixture;
using resblocks_tests::fixture_batch;
using resblocks_tests::load_fixture;
using resblocks_tests::load_parameters;
using resblocks_tests::tolerance;

Index shape_entry(const Fixture& f, Index i) { return static_cast<Index>(f.matrix("shape")(i, 0)); }

template <class S, int D>
void check_attention(const std::string& file, bool causal) {
  const Fixture f = load_fixture(file);
  const Index length = shape_entry(f, 0), sequences = shape_entry(f, 1), d = shape_entry(f, 2),
              heads = shape_entry(f, 3);
  INFO(file << (D == resblocks::Dynamic ? " (Dynamic d)" : " (static d)"));
  REQUIRE((D == resblocks::Dynamic || D == d));
  MultiHeadAttention<S, D> mha(d, heads, resblocks::AttentionOptions{causal});
  mha.set_sequence_length(length);
  REQUIRE(load_parameters(mha, f) == 4);
  resblocks_tests::set_fixture_mask(f, mha);
  using Batch = typename MultiHeadAttention<S, D>::Input;
  const auto x = fixture_batch<Batch>(f, "x");
  const auto dL_dy = fixture_batch<Batch>(f, "dL_dy");
  REQUIRE(x.cols() == length * sequences);
  const double tol = tolerance<S>;

  resblocks_tests::check_training_step(f, mha, x, dL_dy, tol, [&](const MultiHeadAttention<S, D>& m) {
    Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic> weights(length, length * sequences * heads);
    for (Index b = 0; b < sequences; ++b)
      for (Index h = 0; h < heads; ++h)
        weights.middleCols((b * heads + h) * length, length) = m.attention_weights(b, h);
    check_close(f, "attention_weights", weights, tol);
  });
}

}  // namespace

TEST_CASE("MultiHeadAttention parity: self-attention without mask", "[attention][parity]") {
  check_attention<double, resblocks::Dynamic>("attention_self.txt", false);
  check_attention<double, 8>("attention_self.txt", false);
  check_attention<float, resblocks::Dynamic>("attention_self.txt", false);
  check_attention<float, 8>("attention_self.txt", false);
}

TEST_CASE("MultiHeadAttention parity: causal mask", "[attention][parity]") {
  check_attention<double, resblocks::Dynamic>("attention_causal.txt", true);
  check_attention<double, 8>("attention_causal.txt", true);
  check_attention<float, resblocks::Dynamic>("attention_causal.txt", true);
  check_attention<float, 8>("attention_causal.txt", true);
}

TEST_CASE("MultiHeadAttention parity: key padding mask", "[attention][parity]") {
  check_attention<double, resblocks::Dynamic>("attention_key_padding.txt", false);
  check_attention<double, 6>("attention_key_padding.txt", false);
  check_attention<float, resblocks::Dynamic>("attention_key_padding.txt", false);
  check_attention<float, 6>("attention_key_padding.txt", false);
}
