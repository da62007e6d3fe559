// PyTorch parity of TransformerBlock, PositionalEncoding and a small language model: the fixtures
// transformer_*.txt and positional_sinusoidal.txt written by tests/reference/make_transformer_fixtures.py
// (torch's nn.TransformerEncoderLayer(8, 2, 16, dropout=0, activation="gelu" / "relu" / tanh-GELU, batch_first=True),
// norm_first True and False, float64 autograd).
//
// A comparison passes when max |resblocks - PyTorch| <= tol * max(1, max |PyTorch|), tol 1e-12 in
// double, 1e-5 in float (inputs and parameters are multiples of 1/64, exact in float).

#include "support/catch.hpp"
#include "support/fixture.hpp"
#include "support/parity.hpp"

#include <resblocks/blocks/repeat.hpp>
#include <resblocks/blocks/sequential.hpp>
#include <resblocks/blocks/transformer_block.hpp>
#include <resblocks/layers/layer_norm.hpp>
#include <resblocks/layers/linear.hpp>
#include <resblocks/layers/positional_encoding.hpp>
#include <resblocks/layers/token_embedding.hpp>
#include <resblocks/train/cross_entropy_loss.hpp>

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <vector>

namespace {

using resblocks::Index;
using resblocks::TransformerBlock;
using resblocks_tests::check_close;
using resblocks_tests::Fixture;
using resblocks_tests::fixture_batch;
using resblocks_tests::load_fixture;
using resblocks_tests::load_parameters;
using resblocks_tests::tolerance;

Index shape_entry(const Fixture& f, Index i) { return static_cast<Index>(f.matrix("shape")(i, 0)); }

template <class S, int D>
void check_block(const std::string& file, bool norm_first) {
  const Fixture f = load_fixture(file);
  const Index length = shape_entry(f, 0), sequences = shape_entry(f, 1), d = shape_entry(f, 2),
              heads = shape_entry(f, 3), ff = shape_entry(f, 4);
  const bool causal = f.matrix("causal")(0, 0) != 0.0;
  using resblocks::FeedForwardActivation;
  const FeedForwardActivation activation = !f.contains("activation")             ? FeedForwardActivation::gelu
                                           : f.matrix("activation")(0, 0) == 0.0 ? FeedForwardActivation::relu
                                                                                 : FeedForwardActivation::gelu_tanh;
  INFO(file << (D == resblocks::Dynamic ? " (Dynamic d)" : " (static d)"));
  REQUIRE((D == resblocks::Dynamic || D == d));
  // torch ran with dropout=0 in training mode: here too (the three Dropouts are the identity).
  TransformerBlock<S, D> block(d, heads, ff, {.norm_first = norm_first, .causal = causal, .activation = activation});
  block.set_sequence_length(length);
  REQUIRE(load_parameters(block, f) == 12);
  resblocks_tests::set_fixture_mask(f, block);
  using Batch = typename TransformerBlock<S, D>::Input;
  const auto x = fixture_batch<Batch>(f, "x");
  const auto dL_dy = fixture_batch<Batch>(f, "dL_dy");
  REQUIRE(x.cols() == length * sequences);
  const double tol = tolerance<S>;

  resblocks_tests::check_training_step(f, block, x, dL_dy, tol);
}

template <class S, int D>
void check_all_blocks() {
  check_block<S, D>("transformer_pre_ln.txt", true);
  check_block<S, D>("transformer_pre_ln_causal.txt", true);
  check_block<S, D>("transformer_post_ln.txt", false);
  check_block<S, D>("transformer_post_ln_causal.txt", false);
  check_block<S, D>("transformer_key_padding.txt", true);
  check_block<S, D>("transformer_pre_ln_relu.txt", true);
  check_block<S, D>("transformer_post_ln_relu.txt", false);
  check_block<S, D>("transformer_pre_ln_gelu_tanh.txt", true);
}

/// The fixture's tiny language model: tok_emb + pos_emb -> causal pre-LN blocks -> ln_f -> head -> mean CE.
template <class S>
struct TinyLm {
  using Scalar = S;
  resblocks::TokenEmbedding<S> tok_emb;
  resblocks::PositionalEncoding<S> pos_emb;
  resblocks::Repeat<TransformerBlock<S>> blocks;
  resblocks::Sequential<resblocks::LayerNorm<S>, resblocks::Linear<S>> head;
  resblocks::CrossEntropyLoss<S> loss;

  TinyLm(Index vocab, Index d, Index heads, Index ff, Index layers, Index max_length)
      : tok_emb(vocab, d),
        pos_emb(d, max_length, resblocks::PositionalEncodingKind::learned),
        blocks(layers, [&](Index) { return TransformerBlock<S>(d, heads, ff, {.causal = true}); }),
        head(resblocks::LayerNorm<S>(d), resblocks::Linear<S>(d, vocab)) {
    head.set_child_names({"ln_f", "head"});
  }

  template <class F>
  void for_each_parameter(F&& f) {
    tok_emb.for_each_parameter(f, resblocks::ParameterName("tok_emb"));
    pos_emb.for_each_parameter(f, resblocks::ParameterName("pos_emb"));
    blocks.for_each_parameter(f, resblocks::ParameterName("blocks"));
    head.for_each_parameter(f);
  }
};

template <class S>
void check_lm() {
  const Fixture f = load_fixture("transformer_lm.txt");
  const Index length = shape_entry(f, 0), sequences = shape_entry(f, 1), d = shape_entry(f, 2),
              heads = shape_entry(f, 3), ff = shape_entry(f, 4), vocab = shape_entry(f, 5), layers = shape_entry(f, 6);
  TinyLm<S> lm(vocab, d, heads, ff, layers, f.matrix("param.pos_emb.weight").rows());
  REQUIRE(load_parameters(lm, f) == 2 + 12 * static_cast<std::size_t>(layers) + 4);
  lm.pos_emb.set_sequence_length(length);
  for (auto& block : lm.blocks) block.set_sequence_length(length);
  std::vector<int> ids, targets;  // column t + L·b = token t of sequence b: the L x B matrices column by column
  for (Index i = 0; i < length * sequences; ++i) {
    ids.push_back(static_cast<int>(f.matrix("ids")(i)));
    targets.push_back(static_cast<int>(f.matrix("targets")(i)));
  }
  lm.for_each_parameter([](std::string_view, auto&, auto& grad) { grad.setZero(); });
  const auto& logits = lm.head.forward(lm.blocks.forward(lm.pos_emb.forward(lm.tok_emb.forward(ids))));
  const S loss = lm.loss.forward(logits, targets);
  const double tol = tolerance<S>;
  check_close(f, "loss", Eigen::Matrix<double, 1, 1>::Constant(double(loss)), tol);
  lm.tok_emb.backward(lm.pos_emb.backward(lm.blocks.backward(lm.head.backward(lm.loss.backward()))));
  lm.for_each_parameter([&](std::string_view name, const auto&, const auto& grad) {
    check_close(f, "grad." + std::string(name), grad, tol);
  });
}

}  // namespace

TEST_CASE(
    "TransformerBlock parity: TransformerEncoderLayer pre-LN, post-LN, causal, key padding, ReLU, tanh-GELU (double)",
    "[transformer][parity]") {
  check_all_blocks<double, resblocks::Dynamic>();
  check_all_blocks<double, 8>();
}

TEST_CASE(
    "TransformerBlock parity: TransformerEncoderLayer pre-LN, post-LN, causal, key padding, ReLU, tanh-GELU (float)",
    "[transformer][parity]") {
  check_all_blocks<float, resblocks::Dynamic>();
  check_all_blocks<float, 8>();
}

TEST_CASE("PositionalEncoding parity: the PyTorch tutorial's sinusoidal table", "[positional][parity]") {
  const Fixture f = load_fixture("positional_sinusoidal.txt");
  const Eigen::MatrixXd& pe = f.matrix("pe");
  resblocks::PositionalEncoding<double> d(pe.cols(), pe.rows());
  check_close(f, "pe", d.table(), tolerance<double>);
  resblocks::PositionalEncoding<float, 8> s(pe.rows());
  check_close(f, "pe", s.table(), tolerance<float>);
}

TEST_CASE("Transformer language model parity: embeddings, 2 causal blocks, LM head, cross-entropy",
          "[transformer][parity]") {
  check_lm<double>();
  check_lm<float>();
}
