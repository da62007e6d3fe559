#include "support/attention_reference.hpp"
#include "support/helpers.hpp"

#include <resblocks/blocks/repeat.hpp>
#include <resblocks/blocks/transformer_block.hpp>
#include <resblocks/core/training_mode.hpp>
#include <resblocks/layers/gelu.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace resblocks;

namespace {

// d = 8, 2 heads, feed-forward 16, B = 2 sequences of L = 5 tokens.
constexpr Index k_d = 8, k_heads = 2, k_ff = 16, k_length = 5, k_sequences = 2;

/// Random parameters: LayerNorm weights around 1, everything else around 0 (torch's zero biases and
/// unit norms would hide bugs).
template <class Block>
void randomise(Block& block, std::uint64_t seed) {
  Generator g(seed);
  block.for_each_parameter([&](std::string_view name, auto& value, const auto&) {
    fill_uniform(value, 0.7, g);
    if (name.find("norm") != std::string_view::npos && name.ends_with("weight")) value.array() += 1.0;
  });
}

template <class Block>
std::vector<std::string> parameter_names(const Block& block) {
  std::vector<std::string> names;
  block.for_each_parameter([&](std::string_view name, const auto&, const auto&) { names.emplace_back(name); });
  return names;
}

const std::vector<std::string> k_torch_names = {
    // torch.nn.TransformerEncoderLayer(...).named_parameters(), in torch's order
    "self_attn.in_proj_weight",
    "self_attn.in_proj_bias",
    "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias"};

template <class S, int D = Dynamic>
TransformerBlock<S, D> make_block(TransformerOptions options, std::uint64_t seed) {
  TransformerBlock<S, D> block(k_d, k_heads, k_ff, options);
  randomise(block, seed);
  block.set_sequence_length(k_length);
  return block;
}

/// The block computed piece by piece from its own pieces' infer (each piece alone is tested
/// elsewhere): checks the wiring (which norm feeds what, where the skips go). With `masks`, the
/// Dropouts' masks of the last forward multiply where nn.TransformerEncoderLayer has dropout1,
/// dropout and dropout2.
Eigen::MatrixXd by_pieces(const TransformerBlock<double>& block, const Eigen::MatrixXd& x, bool masks = false) {
  using B = TransformerBlock<double>;
  typename B::Norm::Workspace n1, n2;
  typename B::Attention::Workspace a;
  typename B::Linear1::Workspace l1;
  typename B::Linear2::Workspace l2;
  const FeedForwardActivation kind = block.options().activation;
  auto activation = [kind](double v) {
    if (kind == FeedForwardActivation::relu) return v > 0 ? v : 0.0;
    if (kind == FeedForwardActivation::gelu) return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / 3.141592653589793) * (v + 0.044715 * v * v * v)));
  };
  auto drop = [&](const auto& dropout, const Eigen::MatrixXd& h) -> Eigen::MatrixXd {
    return masks ? Eigen::MatrixXd(h.cwiseProduct(dropout.mask())) : h;
  };
  // Self-attention, with its attention-weight dropout factors when `masks` (the textbook formula).
  auto attention = [&](const Eigen::MatrixXd& h) -> Eigen::MatrixXd {
    if (!masks) return block.attention().infer(h, a);
    return rbtest::naive_attention(block.attention(), h, block.attention().sequence_length(), {},
                                   &block.attention().attention_dropout_mask());
  };
  auto ffn = [&](const Eigen::MatrixXd& h) -> Eigen::MatrixXd {
    const Eigen::MatrixXd z = block.linear1().infer(h, l1);
    const Eigen::MatrixXd g = drop(block.dropout(), z.unaryExpr(activation));
    return drop(block.dropout2(), block.linear2().infer(g, l2));
  };
  const bool res = block.options().with_residual;
  if (block.options().norm_first) {
    const Eigen::MatrixXd attn = drop(block.dropout1(), attention(block.norm1().infer(x, n1)));
    const Eigen::MatrixXd h = res ? Eigen::MatrixXd(x + attn) : attn;
    const Eigen::MatrixXd f = ffn(block.norm2().infer(h, n2));
    return res ? Eigen::MatrixXd(h + f) : f;
  }
  const Eigen::MatrixXd attn = drop(block.dropout1(), attention(x));
  const Eigen::MatrixXd h = block.norm1().infer(res ? Eigen::MatrixXd(x + attn) : attn, n1);
  const Eigen::MatrixXd f = ffn(h);
  return block.norm2().infer(res ? Eigen::MatrixXd(h + f) : f, n2);
}

const std::vector<TransformerOptions> k_all_variants = {
    {.norm_first = true},
    {.norm_first = false},
    {.norm_first = true, .with_residual = false},
    {.norm_first = false, .with_residual = false},
};

std::string describe(const TransformerOptions& o) {
  return std::string(o.norm_first ? "pre-LN" : "post-LN") + (o.causal ? ", causal" : "") +
         (o.with_residual ? "" : ", no residual");
}

template <class F>
std::string what_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no exception";
}

}  // namespace

TEST_CASE("TransformerBlock: gradients, pre-LN (double, static and Dynamic d)", "[transformer][gradient]") {
  auto fixed = make_block<double, 8>({}, 1);
  rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 8>>(k_d, k_length * k_sequences, 2));
  auto dynamic = make_block<double>({}, 3);
  rbtest::require_gradients(dynamic, rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 4));
}

TEST_CASE("TransformerBlock: gradients, pre-LN causal (double, static and Dynamic d)", "[transformer][gradient]") {
  auto fixed = make_block<double, 8>({.causal = true}, 5);
  REQUIRE(fixed.attention().options().causal);
  rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 8>>(k_d, k_length * k_sequences, 6));
  auto dynamic = make_block<double>({.causal = true}, 7);
  rbtest::require_gradients(dynamic, rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 8));
}

TEST_CASE("TransformerBlock: gradients, post-LN, plain and causal (double, static and Dynamic d)",
          "[transformer][gradient]") {
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    auto fixed = make_block<double, 8>({.norm_first = false, .causal = causal}, 9);
    rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 8>>(k_d, k_length * k_sequences, 10));
    auto dynamic = make_block<double>({.norm_first = false, .causal = causal}, 11);
    rbtest::require_gradients(dynamic, rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 12));
  }
}

TEST_CASE("TransformerBlock: gradients with a key padding mask (double)", "[transformer][gradient]") {
  // Sequence 0 pads keys 3 and 4, sequence 1 key 1 (torch's src_key_padding_mask transposed).
  const std::vector<unsigned char> mask{0, 0, 0, 1, 1, 0, 1, 0, 0, 0};
  auto fixed = make_block<double, 8>({}, 13);
  fixed.set_key_padding_mask(mask);
  REQUIRE(fixed.attention().has_key_padding_mask());
  rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 8>>(k_d, k_length * k_sequences, 14));
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> as_matrix(k_length, k_sequences);
  for (Index i = 0; i < as_matrix.size(); ++i) as_matrix(i) = mask[static_cast<std::size_t>(i)] != 0;
  auto dynamic = make_block<double>({.norm_first = false, .causal = true}, 15);
  dynamic.set_key_padding_mask(as_matrix);
  rbtest::require_gradients(dynamic, rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 16));
  // The mask changes the result; clearing it restores the unmasked one.
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 17);
  const Eigen::MatrixXd masked = dynamic.forward(x);
  dynamic.clear_key_padding_mask();
  const Eigen::MatrixXd unmasked = dynamic.forward(x);
  REQUIRE(rbtest::rel_diff(masked, unmasked) > 1e-3);
  REQUIRE(masked.col(0) == unmasked.col(0));  // causal query 0 sees only key 0, which is not padded
}

TEST_CASE("TransformerBlock: gradients without residual, pre-LN and post-LN (double)", "[transformer][gradient]") {
  auto pre = make_block<double, 8>({.with_residual = false}, 18);
  rbtest::require_gradients(pre, rbtest::random_batch<Batch<double, 8>>(k_d, k_length * k_sequences, 19));
  auto post = make_block<double>({.norm_first = false, .causal = true, .with_residual = false}, 20);
  rbtest::require_gradients(post, rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 21));
}

TEST_CASE("TransformerBlock: a Repeat of blocks has correct gradients and torch-style names",
          "[transformer][gradient]") {
  Repeat<TransformerBlock<double>> stack(2, [](Index i) {
    TransformerBlock<double> b(k_d, k_heads, k_ff, {.causal = true});
    randomise(b, 22 + static_cast<std::uint64_t>(i));
    return b;
  });
  stack.set_sequence_length(k_length);  // reaches every block's attention
  rbtest::require_gradients(stack, rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 24));
  const auto names = parameter_names(stack);
  REQUIRE(names.size() == 24);
  REQUIRE(std::count(names.begin(), names.end(), "1.self_attn.in_proj_weight") == 1);
  REQUIRE(std::count(names.begin(), names.end(), "0.norm2.bias") == 1);
}

TEST_CASE("TransformerBlock: parameter names and shapes are torch's TransformerEncoderLayer's", "[transformer]") {
  for (const auto& options : k_all_variants) {
    INFO(describe(options));
    TransformerBlock<float> block(k_d, k_heads, k_ff, options);
    auto names = parameter_names(block);
    auto expected = k_torch_names;
    std::sort(names.begin(), names.end());
    std::sort(expected.begin(), expected.end());
    REQUIRE(names == expected);
    block.for_each_parameter([&](std::string_view name, const auto& value, const auto& grad) {
      INFO(name);
      REQUIRE(grad.rows() == value.rows());
      REQUIRE(grad.cols() == value.cols());
      const Index rows = name == "self_attn.in_proj_weight" || name == "self_attn.in_proj_bias" ? 3 * k_d
                         : name.starts_with("linear1")                                          ? k_ff
                                                                                                : k_d;
      const Index cols = name.ends_with("bias") || name.starts_with("norm") ? 1 : name == "linear2.weight" ? k_ff : k_d;
      REQUIRE(value.rows() == rows);
      REQUIRE(value.cols() == cols);
    });
    REQUIRE(parameter_count(block) ==
            3 * k_d * k_d + 3 * k_d + k_d * k_d + k_d + 2 * k_d * k_ff + k_ff + k_d + 4 * k_d);
  }
  // The order is the forward order of each composition.
  TransformerBlock<float> pre(k_d, k_heads, k_ff);
  REQUIRE(parameter_names(pre).front() == "norm1.weight");
  TransformerBlock<float> post(k_d, k_heads, k_ff, {.norm_first = false});
  REQUIRE(parameter_names(post).front() == "self_attn.in_proj_weight");
  REQUIRE(parameter_names(post).back() == "norm2.bias");
}

TEST_CASE("TransformerBlock: the compositions are wired as the formulas say", "[transformer]") {
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 30) * 2.0;
  for (auto options : k_all_variants)
    for (bool causal : {false, true}) {
      options.causal = causal;
      INFO(describe(options));
      auto block = make_block<double>(options, 31);
      REQUIRE(block.network().index() == (options.norm_first ? 0u : 1u) + (options.with_residual ? 0u : 2u));
      REQUIRE(rbtest::rel_diff(block.forward(x), by_pieces(block, x)) < 1e-13);
    }
  // With residuals the output keeps x; without, it does not.
  auto pre = make_block<double>({}, 32);
  auto plain = make_block<double>({.with_residual = false}, 32);
  rbtest::copy_parameters(pre, plain);
  const Eigen::MatrixXd y_pre = pre.forward(x), y_plain = plain.forward(x);
  REQUIRE(rbtest::rel_diff(y_pre, y_plain) > 0.1);
}

TEST_CASE("TransformerBlock: infer equals forward bit for bit, float and double", "[transformer]") {
  for (auto options : k_all_variants)
    for (bool causal : {false, true}) {
      options.causal = causal;
      INFO(describe(options));
      auto f = make_block<float, 8>(options, 40);
      const auto xf = rbtest::random_batch<Batch<float, 8>>(k_d, k_length * k_sequences, 41);
      typename TransformerBlock<float, 8>::Workspace wsf;
      const Batch<float, 8> yf = f.forward(xf);
      REQUIRE(f.infer(xf, wsf) == yf);
      auto d = make_block<double>(options, 42);
      const auto xd = rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 43);
      typename TransformerBlock<double>::Workspace wsd;
      const Eigen::MatrixXd yd = d.forward(xd);
      REQUIRE(d.infer(xd, wsd) == yd);
      REQUIRE(d.infer(xd, wsd) == yd);  // a reused workspace
    }
}

TEST_CASE("TransformerBlock: float smoke, a larger block agrees with double", "[transformer][float]") {
  // d 32, 4 heads, ff 64, 3 sequences of 40 tokens (causal: two query blocks).
  for (bool norm_first : {true, false}) {
    INFO("norm_first " << norm_first);
    // Dynamic d: TransformerBlock<float, 8> covers the static float block (a <float, 32> cost 6 CPU-s to compile).
    TransformerBlock<float> f(32, 4, 64, {.norm_first = norm_first, .causal = true});
    TransformerBlock<double> d(32, 4, 64, {.norm_first = norm_first, .causal = true});
    randomise(f, 50);
    rbtest::copy_parameters(f, d);
    f.set_sequence_length(40);
    d.set_sequence_length(40);
    const auto xd = rbtest::random_batch<Eigen::MatrixXd>(32, 120, 51);
    const auto gd = rbtest::random_batch<Eigen::MatrixXd>(32, 120, 52);
    const Eigen::MatrixXf xf = xd.cast<float>(), gf = gd.cast<float>();
    f.zero_grad();
    d.zero_grad();
    const Eigen::MatrixXf& yf = f.forward(xf);
    REQUIRE(yf.allFinite());
    REQUIRE(rbtest::rel_diff(yf, d.forward(xd)) < 2e-5);
    const Eigen::MatrixXf& dxf = f.backward(gf);
    REQUIRE(dxf.allFinite());
    REQUIRE(rbtest::rel_diff(dxf, d.backward(gd)) < 2e-5);
    std::vector<Eigen::MatrixXd> grads;
    d.for_each_parameter([&](std::string_view, const auto&, const auto& g) { grads.emplace_back(g); });
    std::size_t i = 0;
    f.for_each_parameter([&](std::string_view name, const auto&, const auto& g) {
      INFO(name);
      REQUIRE(rbtest::rel_diff(g, grads.at(i++)) < 1e-4);
    });
  }
}

TEST_CASE("TransformerBlock: gradients accumulate over backward calls until zero_grad", "[transformer]") {
  auto block = make_block<double>({}, 60);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 61);
  const auto g = rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 62);
  block.zero_grad();
  block.forward(x);
  block.backward(g);
  const Eigen::MatrixXd once = block.linear1().weight_grad();
  REQUIRE_FALSE(once.isZero(0.0));
  block.forward(x);
  block.backward(g);
  REQUIRE(rbtest::rel_diff(block.linear1().weight_grad(), 2.0 * once) < 1e-14);
  block.zero_grad();
  block.for_each_parameter([](std::string_view, const auto&, const auto& grad) { REQUIRE(grad.isZero(0.0)); });
}

TEST_CASE("TransformerBlock: construction draws torch's initialisation in torch's order", "[transformer]") {
  manual_seed(70);
  TransformerBlock<double> a(k_d, k_heads, k_ff);
  manual_seed(70);
  MultiHeadAttention<double> attention(k_d, k_heads);
  Linear<double> linear1(k_d, k_ff), linear2(k_ff, k_d);
  REQUIRE(a.attention().in_proj_weight() == attention.in_proj_weight());
  REQUIRE(a.attention().out_proj_weight() == attention.out_proj_weight());
  REQUIRE(a.linear1().weight() == linear1.weight());
  REQUIRE(a.linear2().bias() == linear2.bias());
  REQUIRE(a.norm1().weight().isOnes(0.0));
  REQUIRE(a.norm2().bias().isZero(0.0));
  // reset_parameters re-draws the same way, from any generator.
  randomise(a, 71);
  Generator g(70);
  a.reset_parameters(g);
  REQUIRE(a.attention().in_proj_weight() == attention.in_proj_weight());
  REQUIRE(a.linear2().weight() == linear2.weight());
  REQUIRE(a.norm1().weight().isOnes(0.0));
  REQUIRE(a.norm2().bias().isZero(0.0));
  REQUIRE(a.model_dim() == k_d);
  REQUIRE(a.heads() == k_heads);
  REQUIRE(a.feedforward() == k_ff);
  REQUIRE(a.in_features() == k_d);
  REQUIRE(a.out_features() == k_d);
}

TEST_CASE("TransformerBlock: bad sizes and inputs throw clear errors", "[transformer][error]") {
  REQUIRE_THAT(what_of([] { TransformerBlock<float>(8, 3, 16); }), rbtest::contains("not divisible by heads"));
  REQUIRE_THAT(what_of([] { TransformerBlock<float>(8, 2, 0); }),
               rbtest::contains("TransformerBlock: the feed-forward width must be >= 1, got 0"));
  REQUIRE_THAT(what_of([] { TransformerBlock<float, 8>(16, 2, 16); }), rbtest::contains("fixes it to 8"));
  TransformerBlock<double> block(k_d, k_heads, k_ff);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(k_d, 10, 80);
  REQUIRE_THROWS_AS(block.forward(x), std::logic_error);  // no sequence length yet
  REQUIRE_THAT(what_of([&] { block.forward(x); }), rbtest::contains("set_sequence_length"));
  block.set_sequence_length(4);
  REQUIRE_THAT(what_of([&] { block.forward(x); }), rbtest::contains("not a whole number of sequences"));
  block.set_sequence_length(5);
  const auto wrong = rbtest::random_batch<Eigen::MatrixXd>(6, 10, 81);
  REQUIRE_THROWS_AS(block.forward(wrong), std::invalid_argument);
  REQUIRE_THAT(what_of([&] { block.forward(wrong); }), rbtest::contains("6x10"));
  REQUIRE_THAT(what_of([&] { block.set_sequence_length(0); }), rbtest::contains(">= 1"));
  block.set_key_padding_mask(std::vector<unsigned char>(7, 0));
  REQUIRE_THAT(what_of([&] { block.forward(x); }), rbtest::contains("key padding mask"));
  TransformerBlock<double> fresh(k_d, k_heads, k_ff);
  REQUIRE_THROWS_AS(fresh.backward(x), std::logic_error);  // backward before forward
}

TEST_CASE("set_sequence_length reaches attention through Sequential, Residual, Repeat and Highway", "[transformer]") {
  using Attention = MultiHeadAttention<double>;
  Residual<Sequential<LayerNorm<double>, Attention>> pre_ln(
      Sequential<LayerNorm<double>, Attention>(LayerNorm<double>(k_d), Attention(k_d, k_heads, {.causal = true})));
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 71);
  REQUIRE_THROWS_AS(pre_ln.forward(x), std::logic_error);  // not set yet
  pre_ln.set_sequence_length(k_length);
  REQUIRE(pre_ln.body().get<1>().sequence_length() == k_length);
  rbtest::require_gradients(pre_ln, x);

  Highway<Attention> gated(Attention(k_d, k_heads));
  gated.set_sequence_length(k_length);
  REQUIRE(gated.h().sequence_length() == k_length);
}

namespace {

/// A block whose every forward re-seeds default_generator() first: the same dropout masks each
/// time, so finite differences see a fixed function.
struct ReseededBlock : TransformerBlock<double> {
  explicit ReseededBlock(TransformerBlock<double> block) : TransformerBlock<double>(std::move(block)) {}
  const Output& forward(const Input& x) {
    manual_seed(53);
    return TransformerBlock<double>::forward(x);
  }
  const Output& forward(Input&&) = delete;
};

}  // namespace

TEST_CASE("TransformerBlock: ReLU, GELU and tanh-GELU, dropout where TransformerEncoderLayer has it",
          "[transformer][dropout]") {
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(k_d, k_length * k_sequences, 50) * 2.0;
  for (auto options : k_all_variants)
    for (const auto activation :
         {FeedForwardActivation::relu, FeedForwardActivation::gelu, FeedForwardActivation::gelu_tanh}) {
      options.activation = activation;
      options.dropout = 0.4;
      INFO(describe(options) << ", activation " << int(activation));
      auto block = make_block<double>(options, 51);
      manual_seed(52);
      const Eigen::MatrixXd y = block.forward(x);
      REQUIRE(block.dropout1().mask().rows() == k_d);
      REQUIRE(block.dropout().mask().rows() == k_ff);
      REQUIRE(block.dropout2().mask().cols() == x.cols());
      REQUIRE(block.attention().options().dropout == 0.4);  // the attention weights drop too, as in torch
      REQUIRE(block.attention().attention_dropout_mask().cols() == k_length * k_heads * k_sequences);
      for (const double zeros : {(block.attention().attention_dropout_mask().array() == 0).cast<double>().mean(),
                                 (block.dropout1().mask().array() == 0).cast<double>().mean(),
                                 (block.dropout().mask().array() == 0).cast<double>().mean(),
                                 (block.dropout2().mask().array() == 0).cast<double>().mean()})
        REQUIRE((zeros > 0.2 && zeros < 0.6));  // p = 0.4 of 80, 100 or 160 elements
      REQUIRE(rbtest::rel_diff(y, by_pieces(block, x, true)) < 1e-13);
      manual_seed(52);
      REQUIRE(block.forward(x) == y);  // seeded: the same masks
      REQUIRE(block.forward(x) != y);  // and new ones next time

      // Eval mode: no dropping, forward and infer agree with the mask-free formula.
      eval(block);
      const Eigen::MatrixXd y_eval = block.forward(x);
      REQUIRE(rbtest::rel_diff(y_eval, by_pieces(block, x)) < 1e-13);
      TransformerBlock<double>::Workspace ws;
      REQUIRE(block.infer(x, ws) == y_eval);
      train(block);

      // Backward goes through the same masks: finite differences of the masked function (two cases
      // of the twelve keep the test fast).
      if (options.with_residual && (options.norm_first ? activation == FeedForwardActivation::relu
                                                       : activation == FeedForwardActivation::gelu_tanh)) {
        ReseededBlock seeded(make_block<double>(options, 54));
        rbtest::require_gradients(seeded, x);
      }
    }
}
