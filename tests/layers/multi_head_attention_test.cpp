#include "support/attention_reference.hpp"
#include "support/helpers.hpp"

#include <resblocks/blocks/residual.hpp>
#include <resblocks/layers/multi_head_attention.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;

namespace {

using BoolMatrix = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

/// Random parameters (the biases too: torch starts them at 0, which would hide bias bugs).
template <class L>
void randomise(L& layer, std::uint64_t seed) {
  Generator g(seed);
  layer.for_each_parameter([&](std::string_view, auto& value, const auto&) { fill_uniform(value, 0.8, g); });
}

template <class M>
std::string what_of(M&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no exception";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("MultiHeadAttention: gradients (double, static d, 2 heads, 2 sequences)", "[attention][gradient]") {
  MultiHeadAttention<double, 8> mha(2);
  randomise(mha, 1);
  mha.set_sequence_length(4);
  rbtest::require_gradients(mha, rbtest::random_batch<Batch<double, 8>>(8, 8, 2));
}

TEST_CASE("MultiHeadAttention: gradients (double, Dynamic d, 1 and 3 heads)", "[attention][gradient]") {
  for (Index heads : {1, 3}) {
    INFO("heads " << heads);
    MultiHeadAttention<double> mha(6, heads);
    randomise(mha, 3);
    mha.set_sequence_length(3);
    rbtest::require_gradients(mha, rbtest::random_batch<Eigen::MatrixXd>(6, 6, 4));
    mha.set_sequence_length(6);  // one longer sequence
    rbtest::require_gradients(mha, rbtest::random_batch<Eigen::MatrixXd>(6, 6, 5));
  }
}

TEST_CASE("MultiHeadAttention: gradients with a causal mask (static and Dynamic d)", "[attention][gradient]") {
  MultiHeadAttention<double, 6> fixed(2, AttentionOptions{true});
  randomise(fixed, 6);
  fixed.set_sequence_length(4);
  rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 6>>(6, 8, 7));
  MultiHeadAttention<double> dynamic(4, 1, AttentionOptions{true});
  REQUIRE(dynamic.options().causal);
  randomise(dynamic, 8);
  dynamic.set_sequence_length(5);
  rbtest::require_gradients(dynamic, rbtest::random_batch<Eigen::MatrixXd>(4, 10, 9));
}

TEST_CASE("MultiHeadAttention: gradients with a key padding mask, alone and with causal", "[attention][gradient]") {
  // 2 sequences of 4: keys 2 and 3 of sequence 0 and key 0 of sequence 1 are padding.
  const std::vector<unsigned char> mask{0, 0, 1, 1, 1, 0, 0, 0};
  MultiHeadAttention<double, 6> mha(3);
  randomise(mha, 10);
  mha.set_sequence_length(4);
  mha.set_key_padding_mask(mask);
  REQUIRE(mha.has_key_padding_mask());
  rbtest::require_gradients(mha, rbtest::random_batch<Batch<double, 6>>(6, 8, 11));
  // Causal as well: query 0 of sequence 1 sees only key 0, which is padded (the all-masked case).
  MultiHeadAttention<double> causal(6, 2, AttentionOptions{true});
  randomise(causal, 12);
  causal.set_sequence_length(4);
  causal.set_key_padding_mask(mask);
  rbtest::require_gradients(causal, rbtest::random_batch<Eigen::MatrixXd>(6, 8, 13));
}

TEST_CASE("MultiHeadAttention: long causal sequences (several query blocks) match the textbook computation",
          "[attention][gradient]") {
  // 70 tokens: the causal products run in query blocks of 32, 32 and 6.
  const Index length = 70;
  std::vector<unsigned char> padded(2 * length, 0);
  padded[5] = padded[40] = padded[length + 0] = padded[length + 69] = 1;
  for (bool causal : {false, true})
    for (bool masked : {false, true}) {
      INFO("causal " << causal << ", key padding " << masked);
      MultiHeadAttention<double> mha(12, 3, AttentionOptions{causal});
      randomise(mha, 30);
      mha.set_sequence_length(length);
      if (masked) mha.set_key_padding_mask(padded);
      const auto x = rbtest::random_batch<Eigen::MatrixXd>(12, 2 * length, 31);
      const Eigen::MatrixXd expected =
          rbtest::naive_attention(mha, x, length, masked ? padded : std::vector<unsigned char>{});
      REQUIRE(rbtest::rel_diff(mha.forward(x), expected) < 1e-13);
    }
  MultiHeadAttention<double> small(4, 2, AttentionOptions{true});
  randomise(small, 32);
  small.set_sequence_length(length);
  small.set_key_padding_mask(std::span<const unsigned char>(padded.data(), static_cast<std::size_t>(length)));
  rbtest::require_gradients(small, rbtest::random_batch<Eigen::MatrixXd>(4, length, 33));
}

TEST_CASE("MultiHeadAttention: a query whose keys are all masked outputs out_proj.bias and passes no gradient",
          "[attention][mask]") {
  // Sequence 1 is all padding; sequence 0 pads its last key.
  BoolMatrix mask(3, 2);
  mask << false, true,  // row t = key t, column b = sequence b
      false, true, true, true;
  MultiHeadAttention<double> mha(4, 2);
  randomise(mha, 14);
  mha.set_sequence_length(3);
  mha.set_key_padding_mask(mask);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(4, 6, 15);
  const Eigen::MatrixXd y = mha.forward(x);
  REQUIRE(y.allFinite());
  for (Index t = 3; t < 6; ++t) REQUIRE(y.col(t) == mha.out_proj_bias());
  REQUIRE_FALSE(y.col(0).isApprox(mha.out_proj_bias()));
  for (Index h = 0; h < 2; ++h) {
    REQUIRE(mha.attention_weights(1, h).isZero(0.0));
    REQUIRE(mha.attention_weights(0, h).row(2).isZero(0.0));  // the padded key of sequence 0
    REQUIRE((mha.attention_weights(0, h).colwise().sum().array() - 1.0).abs().maxCoeff() < 1e-15);
  }
  mha.zero_grad();
  const auto g = rbtest::random_batch<Eigen::MatrixXd>(4, 6, 16);
  const Eigen::MatrixXd dx = mha.backward(g);
  REQUIRE(dx.allFinite());
  REQUIRE(dx.rightCols(3).isZero(0.0));  // sequence 1's tokens influence nothing but the bias
  REQUIRE_FALSE(dx.leftCols(3).isZero(0.0));
  REQUIRE(mha.out_proj_bias_grad().isApprox(g.rowwise().sum(), 1e-14));
}

TEST_CASE("MultiHeadAttention: attention weights are column-wise distributions, zero above a causal diagonal",
          "[attention]") {
  MultiHeadAttention<double> mha(8, 2, AttentionOptions{true});
  randomise(mha, 17);
  mha.set_sequence_length(5);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(8, 10, 18);
  mha.forward(x);
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 2; ++h) {
      const Eigen::MatrixXd p = mha.attention_weights(b, h);
      REQUIRE(p.rows() == 5);
      REQUIRE(p.cols() == 5);
      REQUIRE((p.colwise().sum().array() - 1.0).abs().maxCoeff() < 1e-15);
      REQUIRE(p.minCoeff() >= 0.0);
      for (Index i = 0; i < 5; ++i) {
        REQUIRE(p.col(i).tail(4 - i).isZero(0.0));  // key j > query i
        REQUIRE(p(i, i) > 0.0);
      }
    }
  // Query 0 sees only itself: its output is out_proj(v_0).
  const Eigen::MatrixXd y = mha.forward(x);
  const Eigen::VectorXd qkv0 = mha.in_proj_weight() * x.col(0) + mha.in_proj_bias();
  const Eigen::VectorXd expected = mha.out_proj_weight() * qkv0.tail(8) + mha.out_proj_bias();
  REQUIRE(y.col(0).isApprox(expected, 1e-14));
}

TEST_CASE("MultiHeadAttention: sequences do not see each other", "[attention]") {
  MultiHeadAttention<double> mha(6, 3);
  randomise(mha, 19);
  mha.set_sequence_length(4);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(6, 12, 20);
  const Eigen::MatrixXd y = mha.forward(x);
  Eigen::MatrixXd x1 = x;
  x1.middleCols(4, 4).setRandom();  // change sequence 1 only
  const Eigen::MatrixXd y1 = mha.forward(x1);
  REQUIRE(y1.leftCols(4).isApprox(y.leftCols(4), 1e-14));
  REQUIRE(y1.rightCols(4).isApprox(y.rightCols(4), 1e-14));
  REQUIRE_FALSE(y1.middleCols(4, 4).isApprox(y.middleCols(4, 4), 1e-3));
  // A sequence alone gives what it gives inside the batch.
  const Eigen::MatrixXd alone = x.rightCols(4);
  REQUIRE(mha.forward(alone).isApprox(y.rightCols(4), 1e-14));
}

TEST_CASE("MultiHeadAttention: the mask as a span and as a bool matrix agree, and clear_key_padding_mask removes it",
          "[attention][mask]") {
  BoolMatrix m(4, 2);
  m << false, true,  // row t = key t, column b = sequence b: key 2 of sequence 0 and key 0 of sequence 1 are padding
      false, false, true, false, false, false;
  std::vector<unsigned char> flat(8);
  for (Index i = 0; i < 8; ++i) flat[static_cast<std::size_t>(i)] = m.data()[i] ? 1 : 0;
  MultiHeadAttention<double> a(6, 2), b(6, 2);
  rbtest::copy_parameters(a, b);
  a.set_sequence_length(4);
  b.set_sequence_length(4);
  a.set_key_padding_mask(m);
  b.set_key_padding_mask(flat);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(6, 8, 21);
  const Eigen::MatrixXd ya = a.forward(x);
  REQUIRE(ya == b.forward(x));
  REQUIRE(a.attention_weights(0, 1).row(2).isZero(0.0));
  REQUIRE(a.attention_weights(1, 0).row(0).isZero(0.0));
  a.clear_key_padding_mask();
  REQUIRE_FALSE(a.has_key_padding_mask());
  const Eigen::MatrixXd unmasked = a.forward(x);
  REQUIRE_FALSE(unmasked.isApprox(ya, 1e-6));
  REQUIRE(a.attention_weights(0, 1).row(2).minCoeff() > 0.0);
}

TEST_CASE("MultiHeadAttention: float smoke test agrees with double", "[attention][float]") {
  MultiHeadAttention<double> d(32, 4, AttentionOptions{true});
  MultiHeadAttention<float> f(32, 4, AttentionOptions{true});
  randomise(d, 22);
  rbtest::copy_parameters(d, f);
  d.set_sequence_length(9);
  f.set_sequence_length(9);
  d.zero_grad();
  f.zero_grad();
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(32, 27, 23),
                               rbtest::random_batch<Eigen::MatrixXd>(32, 27, 24));
  REQUIRE(rbtest::rel_diff(f.in_proj_weight_grad(), d.in_proj_weight_grad()) < 1e-5);
  REQUIRE(rbtest::rel_diff(f.in_proj_bias_grad(), d.in_proj_bias_grad()) < 1e-5);
  REQUIRE(rbtest::rel_diff(f.out_proj_weight_grad(), d.out_proj_weight_grad()) < 1e-5);
}

TEST_CASE("MultiHeadAttention: infer equals forward bit for bit, and results do not depend on the thread count",
          "[attention][infer]") {
  // Large enough for the threaded GEMMs and several (sequence, head) parts per thread.
  std::vector<unsigned char> mask(64 * 6, 0);
  mask[60] = mask[64 + 3] = mask[5 * 64 + 63] = 1;
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    MultiHeadAttention<float, 96> mha(3, AttentionOptions{causal});
    mha.set_sequence_length(64);
    mha.set_key_padding_mask(mask);
    const auto x = rbtest::random_batch<Batch<float, 96>>(96, 64 * 6, 25);
    const auto g = rbtest::random_batch<Batch<float, 96>>(96, 64 * 6, 26);
    const Batch<float, 96> y = mha.forward(x);
    MultiHeadAttention<float, 96>::Workspace ws;
    REQUIRE(mha.infer(x, ws) == y);
    REQUIRE(mha.infer(x, ws) == y);  // reused workspace

    const int saved = num_threads();
    std::vector<Eigen::MatrixXf> runs;
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      mha.zero_grad();
      runs.emplace_back(mha.forward(x));
      runs.emplace_back(mha.backward(g));
      mha.for_each_parameter([&](std::string_view, const auto&, const auto& grad) { runs.emplace_back(grad); });
    }
    set_num_threads(saved);
    const std::size_t half = runs.size() / 2;
    for (std::size_t i = 0; i < half; ++i) REQUIRE(runs[i] == runs[half + i]);
    REQUIRE(runs[0] == y);
  }
}

TEST_CASE("MultiHeadAttention: in a Residual, the fused skip gives x + attention(x) and dL_dy + dL/dx",
          "[attention][residual]") {
  Residual<MultiHeadAttention<double, 8>> block(MultiHeadAttention<double, 8>(2, AttentionOptions{true}));
  randomise(block, 27);
  block.body().set_sequence_length(3);
  MultiHeadAttention<double, 8> alone = block.body();
  const auto x = rbtest::random_batch<Batch<double, 8>>(8, 9, 28);
  const auto g = rbtest::random_batch<Batch<double, 8>>(8, 9, 29);
  const Batch<double, 8> y = block.forward(x);
  REQUIRE(y.isApprox(x + alone.forward(x), 1e-14));
  block.zero_grad();
  alone.zero_grad();
  REQUIRE(block.backward(g).isApprox(g + alone.backward(g), 1e-14));
  REQUIRE(block.body().in_proj_weight_grad().isApprox(alone.in_proj_weight_grad(), 1e-14));
  Residual<MultiHeadAttention<double, 8>>::Workspace ws;
  REQUIRE(block.infer(x, ws) == y);
  rbtest::require_gradients(block, x);
}

TEST_CASE("MultiHeadAttention: parameters are named and shaped as torch's nn.MultiheadAttention",
          "[attention][names]") {
  MultiHeadAttention<float> mha(12, 3);
  REQUIRE(mha.model_dim() == 12);
  REQUIRE(mha.in_features() == 12);
  REQUIRE(mha.out_features() == 12);
  REQUIRE(mha.heads() == 3);
  REQUIRE(mha.head_dim() == 4);
  REQUIRE(mha.sequence_length() == 0);
  std::vector<std::string> names;
  std::vector<std::pair<Index, Index>> shapes;
  mha.for_each_parameter([&](std::string_view n, const auto& v, const auto& g) {
    names.emplace_back(n);
    shapes.emplace_back(v.rows(), v.cols());
    REQUIRE(v.rows() == g.rows());
    REQUIRE(v.cols() == g.cols());
  });
  REQUIRE(names == std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
  REQUIRE(shapes == std::vector<std::pair<Index, Index>>{{36, 12}, {36, 1}, {12, 12}, {12, 1}});
  REQUIRE(parameter_count(mha) == 4 * 12 * 12 + 4 * 12);
  std::vector<std::string> prefixed;
  mha.for_each_parameter([&](std::string_view n, const auto&, const auto&) { prefixed.emplace_back(n); },
                         ParameterName("layers.0.self_attn"));
  REQUIRE(prefixed.front() == "layers.0.self_attn.in_proj_weight");
  REQUIRE(prefixed.back() == "layers.0.self_attn.out_proj.bias");
}

TEST_CASE("MultiHeadAttention: initialisation as torch (xavier in_proj, Linear-default out_proj, zero biases)",
          "[attention][init]") {
  const Index d = 64;
  MultiHeadAttention<double> mha(d, 4);
  const double xavier = std::sqrt(6.0 / (d + 3 * d)), linear = 1.0 / std::sqrt(double(d));
  const double in_max = mha.in_proj_weight().cwiseAbs().maxCoeff();
  const double out_max = mha.out_proj_weight().cwiseAbs().maxCoeff();
  REQUIRE(in_max <= xavier);
  REQUIRE(in_max > 0.99 * xavier);
  REQUIRE(out_max <= linear);
  REQUIRE(out_max > 0.99 * linear);
  REQUIRE(std::abs(mha.in_proj_weight().mean()) < 0.01);
  REQUIRE(mha.in_proj_bias().isZero(0.0));
  REQUIRE(mha.out_proj_bias().isZero(0.0));
  Generator g(5);
  MultiHeadAttention<double> other(d, 4);
  other.reset_parameters(g);
  REQUIRE(other.in_proj_weight() != mha.in_proj_weight());
}

TEST_CASE("MultiHeadAttention: errors name the layer and the shapes", "[attention][errors]") {
  REQUIRE(contains(what_of([] { MultiHeadAttention<float>(10, 3); }), "d_model 10 is not divisible by heads 3"));
  REQUIRE_THROWS_AS(MultiHeadAttention<float>(10, 3), std::invalid_argument);
  REQUIRE_THROWS_AS(MultiHeadAttention<float>(8, 0), std::invalid_argument);
  REQUIRE_THROWS_AS((MultiHeadAttention<float, 8>(6, 2)), std::invalid_argument);
  REQUIRE_THROWS_AS((MultiHeadAttention<float, 9>(2)), std::invalid_argument);

  MultiHeadAttention<float> mha(8, 2);
  Eigen::MatrixXf x = Eigen::MatrixXf::Ones(8, 12);
  MultiHeadAttention<float>::Workspace ws;
  // No sequence length yet.
  REQUIRE_THROWS_AS(mha.forward(x), std::logic_error);
  REQUIRE(contains(what_of([&] { mha.forward(x); }), "set_sequence_length"));
  REQUIRE_THROWS_AS(mha.infer(x, ws), std::logic_error);
  REQUIRE_THROWS_AS(mha.set_sequence_length(0), std::invalid_argument);

  mha.set_sequence_length(5);
  const std::string not_whole = what_of([&] { mha.forward(x); });
  REQUIRE(contains(not_whole, "MultiHeadAttention"));
  REQUIRE(contains(not_whole, "8x12"));
  REQUIRE(contains(not_whole, "length 5"));
  REQUIRE_THROWS_AS(mha.forward(x), std::invalid_argument);
  REQUIRE_THROWS_AS(mha.infer(x, ws), std::invalid_argument);

  mha.set_sequence_length(4);
  Eigen::MatrixXf wrong_rows = Eigen::MatrixXf::Ones(6, 12);
  const std::string features = what_of([&] { mha.forward(wrong_rows); });
  REQUIRE(contains(features, "MultiHeadAttention"));
  REQUIRE(contains(features, "6x12"));

  // Mask sizes: 3 sequences of 4 need 12 entries / a 4x3 matrix.
  mha.set_key_padding_mask(std::vector<unsigned char>(8, 0));
  const std::string span_size = what_of([&] { mha.forward(x); });
  REQUIRE(contains(span_size, "key padding mask is 8 entries"));
  REQUIRE(contains(span_size, "4x3"));
  REQUIRE_THROWS_AS(mha.infer(x, ws), std::invalid_argument);
  mha.set_key_padding_mask(BoolMatrix::Zero(3, 4));  // 12 entries but transposed
  const std::string matrix_shape = what_of([&] { mha.forward(x); });
  REQUIRE(contains(matrix_shape, "key padding mask is 3x4"));
  REQUIRE(contains(matrix_shape, "expected 4x3"));
  mha.set_key_padding_mask(BoolMatrix::Zero(4, 3));
  REQUIRE_NOTHROW(mha.forward(x));
  mha.clear_key_padding_mask();
  REQUIRE_NOTHROW(mha.forward(x));

  // Output gradient of the wrong shape; backward before forward, or on a fresh copy.
  Eigen::MatrixXf bad_grad = Eigen::MatrixXf::Ones(8, 8);
  REQUIRE_THROWS_AS(mha.backward(bad_grad), std::invalid_argument);
  MultiHeadAttention<float> fresh(8, 2);
  REQUIRE_THROWS_AS(fresh.backward(x), std::logic_error);
  MultiHeadAttention<float> copy = mha;
  REQUIRE_THROWS_AS(copy.backward(x), std::logic_error);
  REQUIRE_NOTHROW(mha.backward(x));

  // attention_weights outside the last forward (3 sequences, 2 heads).
  REQUIRE_NOTHROW(mha.attention_weights(2, 1));
  REQUIRE_THROWS_AS(mha.attention_weights(3, 0), std::out_of_range);
  REQUIRE_THROWS_AS(mha.attention_weights(0, 2), std::out_of_range);
  REQUIRE_THROWS_AS(fresh.attention_weights(0, 0), std::out_of_range);
}

TEST_CASE("MultiHeadAttention: backward uses the forward's sequence length even if it was changed since",
          "[attention]") {
  MultiHeadAttention<double> mha(6, 2);
  randomise(mha, 34);
  mha.set_sequence_length(3);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(6, 12, 35);
  const auto g = rbtest::random_batch<Eigen::MatrixXd>(6, 12, 36);
  mha.forward(x);
  const Eigen::MatrixXd expected = mha.backward(g);
  mha.forward(x);
  mha.set_sequence_length(4);
  REQUIRE(mha.backward(g) == expected);
  REQUIRE(mha.attention_weights(3, 1).rows() == 3);
}

TEST_CASE("MultiHeadAttention: an empty batch gives an empty output", "[attention]") {
  MultiHeadAttention<float, 8> mha(2);
  mha.set_sequence_length(3);
  const Batch<float, 8> x(8, 0);
  REQUIRE(mha.forward(x).cols() == 0);
  const Batch<float, 8> g(8, 0);
  mha.zero_grad();
  REQUIRE(mha.backward(g).cols() == 0);
  REQUIRE(mha.in_proj_weight_grad().isZero(0.0));
}

namespace {

/// An attention whose every forward re-seeds its own generator first: the same dropout mask each
/// time, so finite differences see a fixed function.
struct ReseededAttention : MultiHeadAttention<double> {
  ReseededAttention(Index d, Index heads, AttentionOptions o) : MultiHeadAttention<double>(d, heads, o) {
    set_generator(m_g);
  }
  const Output& forward(const Input& x) {
    m_g = Generator(61);
    return MultiHeadAttention<double>::forward(x);
  }
  const Output& forward(Input&&) = delete;
  Generator m_g{61};
};

}  // namespace

TEST_CASE("MultiHeadAttention: attention dropout in training mode (mask, scaling, backward, eval, infer)",
          "[attention][dropout][gradient]") {
  const Index d = 6, heads = 2, length = 5, sequences = 3;
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(d, length * sequences, 60);
  for (const bool causal : {false, true}) {
    INFO("causal " << causal);
    MultiHeadAttention<double> mha(d, heads, AttentionOptions{.causal = causal, .dropout = 0.3});
    randomise(mha, 62);
    mha.set_sequence_length(length);
    manual_seed(63);
    const Eigen::MatrixXd y = mha.forward(x);
    const Eigen::MatrixXd& mask = mha.attention_dropout_mask();
    REQUIRE(mask.rows() == length);
    REQUIRE(mask.cols() == length * heads * sequences);
    const double zeros = (mask.array() == 0).cast<double>().mean();
    REQUIRE((zeros > 0.15 && zeros < 0.45));                              // p = 0.3 of 150 draws
    REQUIRE(((mask.array() == 0) || (mask.array() == 1.0 / 0.7)).all());  // torch's inverted scaling
    // The output is the textbook attention with the drawn factors on the weights.
    REQUIRE(rbtest::rel_diff(y, rbtest::naive_attention(mha, x, length, {}, &mask)) < 1e-13);
    manual_seed(63);
    REQUIRE(mha.forward(x) == y);  // seeded: the same mask
    REQUIRE(mha.forward(x) != y);  // a new one next time

    // Eval mode and infer never drop: the dropout-free result.
    MultiHeadAttention<double>::Workspace ws;
    const Eigen::MatrixXd expected = rbtest::naive_attention(mha, x, length, {});
    REQUIRE(rbtest::rel_diff(mha.infer(x, ws), expected) < 1e-13);
    mha.set_training(false);
    REQUIRE(rbtest::rel_diff(mha.forward(x), expected) < 1e-13);
    REQUIRE(mha.attention_dropout_mask().size() == 0);

    // Backward goes through the same mask: finite differences of the masked function.
    ReseededAttention seeded(d, heads, AttentionOptions{.causal = causal, .dropout = 0.3});
    randomise(seeded, 64);
    seeded.set_sequence_length(length);
    rbtest::require_gradients(seeded, x);
  }
  // p = 1 drops every weight: y = out_proj.bias, and x gets no gradient.
  MultiHeadAttention<double> all(d, heads, AttentionOptions{.dropout = 1.0});
  randomise(all, 65);
  all.set_sequence_length(length);
  const Eigen::MatrixXd y = all.forward(x);
  for (Index c = 0; c < y.cols(); ++c) REQUIRE(y.col(c) == all.out_proj_bias());
  REQUIRE(all.backward(Eigen::MatrixXd::Ones(d, x.cols())).isZero(0.0));
  REQUIRE(contains(what_of([&] { MultiHeadAttention<double>(d, heads, AttentionOptions{.dropout = 1.5}); }),
                   "MultiHeadAttention: the attention dropout must be in [0, 1], got 1.5"));
}
