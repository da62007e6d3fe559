#pragma once
/// \file
/// \brief TransformerBlock: a Transformer encoder layer (self-attention and feed-forward sublayers,
/// pre- or post-LayerNorm) composed from Residual, Sequential, LayerNorm, MultiHeadAttention, Linear, GELU.

#include "resblocks/blocks/residual.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/gelu.hpp"
#include "resblocks/layers/layer_norm.hpp"
#include "resblocks/layers/linear.hpp"
#include "resblocks/layers/multi_head_attention.hpp"

#include <Eigen/Core>

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace resblocks {

/// \brief Settings of a TransformerBlock.
struct TransformerOptions {
  bool norm_first = true;      ///< pre-LN `x + F(LN(x))` (torch's norm_first=True); false: post-LN `LN(x + F(x))`
  bool causal = false;         ///< token t attends to tokens <= t only
  bool with_residual = true;   ///< false: both skips removed, the sublayers' bodies chained (a "plain" block)
  double layer_norm_eps = 1e-5;  ///< LayerNorm's ε (torch's layer_norm_eps)
};

/// \brief One Transformer encoder layer, as `torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=0,
/// activation="gelu", norm_first=..., batch_first=True)` with the same parameter names:
/// `self_attn.in_proj_weight`, `self_attn.in_proj_bias`, `self_attn.out_proj.{weight,bias}`,
/// `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`.
///
/// It is a composition of the library's pieces, chosen at run time by TransformerOptions:
///
///     pre-LN  (default): Sequential<Residual<Sequential<LN, MHA>>, Residual<Sequential<LN, Linear, GELU, Linear>>>
///     post-LN:           Sequential<Residual<MHA>, LN, Residual<Sequential<Linear, GELU, Linear>>, LN>
///     with_residual = false: the same without the Residual wrappers (the bodies chained).
///
/// The four compositions are alternatives of one std::variant, so that norm_first and with_residual
/// are run-time options as in torch (a program picks them from its command line without templating
/// its training loop); each call costs one variant dispatch, nanoseconds against the block's
/// microseconds. The skips take no memory pass of their own (Residual's fused add): the last GEMM of
/// each body (out_proj, linear2) starts from x, and backward adds the skip's gradient in the body's
/// first kernel (pre-LN: the LayerNorm's backward; post-LN: in_proj's and linear1's dL/dx GEMMs).
///
/// Layout: rows = d_model, one column per token, token t of sequence b in column t + L·b; set the
/// sequence length L with set_sequence_length() before the first forward. Parameters are visited in
/// forward order (pre-LN: norm1, self_attn, norm2, linear1, linear2).
template <class S = float, int D = Dynamic>
class TransformerBlock {
 public:
  using Scalar = S;
  static constexpr int InFeatures = D;
  static constexpr int OutFeatures = D;
  using Input = Batch<S, D>;
  using Output = Batch<S, D>;
  static constexpr std::string_view name = "TransformerBlock";

  using Attention = MultiHeadAttention<S, D>;
  using Norm = LayerNorm<S, D>;
  using Linear1 = Linear<S, D, Dynamic>;
  using Activation = GELU<S, Dynamic>;
  using Linear2 = Linear<S, Dynamic, D>;
  using FeedForward = Sequential<Linear1, Activation, Linear2>;
  using PreNormAttention = Sequential<Norm, Attention>;
  using PreNormFeedForward = Sequential<Norm, Linear1, Activation, Linear2>;

  /// The four compositions (see the class comment).
  using PreLn = Sequential<Residual<PreNormAttention>, Residual<PreNormFeedForward>>;
  using PostLn = Sequential<Residual<Attention>, Norm, Residual<FeedForward>, Norm>;
  using PreLnPlain = Sequential<PreNormAttention, PreNormFeedForward>;
  using PostLnPlain = Sequential<Attention, Norm, FeedForward, Norm>;
  using Network = std::variant<PreLn, PostLn, PreLnPlain, PostLnPlain>;

  /// \brief Inference buffers of one caller (one set per composition; only the block's own is used).
  struct Workspace {
    std::tuple<typename PreLn::Workspace, typename PostLn::Workspace, typename PreLnPlain::Workspace,
               typename PostLnPlain::Workspace>
        networks;
  };

  /// Static model dimension: `TransformerBlock<float, 256> block(4, 1024);`.
  TransformerBlock(Index heads, Index feedforward, TransformerOptions options = {})
    requires(D != Dynamic)
      : TransformerBlock(D, heads, feedforward, options) {}

  /// `d_model` features (a multiple of `heads`), a feed-forward width `feedforward`. Parameters as
  /// torch initialises them, drawn from default_generator() in torch's order (self_attn, linear1, linear2).
  TransformerBlock(Index d_model, Index heads, Index feedforward, TransformerOptions options = {})
      : m_options(options), m_net(make(d_model, heads, feedforward, options)) {}

  /// Re-draws the parameters as the constructor does, from `g`; LayerNorms back to 1 and 0.
  void reset_parameters(Generator& g) {
    attention().reset_parameters(g);
    linear1().reset_parameters(g);
    linear2().reset_parameters(g);
    for (Norm* n : {&norm1(), &norm2()}) {
      n->weight().setOnes();
      n->bias().setZero();
    }
  }

  [[nodiscard]] const TransformerOptions& options() const noexcept { return m_options; }
  [[nodiscard]] Index in_features() const noexcept { return attention().model_dim(); }
  [[nodiscard]] Index out_features() const noexcept { return attention().model_dim(); }
  [[nodiscard]] Index model_dim() const noexcept { return attention().model_dim(); }
  [[nodiscard]] Index heads() const noexcept { return attention().heads(); }
  [[nodiscard]] Index feedforward() const noexcept { return linear1().out_features(); }

  /// The sequence length L of the inputs (columns = L × sequences); forwarded to the attention.
  void set_sequence_length(Index length) { attention().set_sequence_length(length); }
  [[nodiscard]] Index sequence_length() const noexcept { return attention().sequence_length(); }

  /// Key-padding mask, `mask[t + L·b]` != 0 for a padded token (torch's src_key_padding_mask[b, t]);
  /// see MultiHeadAttention::set_key_padding_mask.
  void set_key_padding_mask(std::span<const unsigned char> mask) { attention().set_key_padding_mask(mask); }
  /// Key-padding mask as an L × batch bool matrix (true = padded).
  template <class Derived>
  void set_key_padding_mask(const Eigen::DenseBase<Derived>& mask) {
    attention().set_key_padding_mask(mask);
  }
  void clear_key_padding_mask() noexcept { attention().clear_key_padding_mask(); }

  /// The pieces, whichever the composition (torch's submodule names).
  Attention& attention() noexcept { return piece<k_attention, Attention>(); }
  const Attention& attention() const noexcept { return piece<k_attention, Attention>(); }
  Norm& norm1() noexcept { return piece<k_norm1, Norm>(); }
  const Norm& norm1() const noexcept { return piece<k_norm1, Norm>(); }
  Norm& norm2() noexcept { return piece<k_norm2, Norm>(); }
  const Norm& norm2() const noexcept { return piece<k_norm2, Norm>(); }
  Linear1& linear1() noexcept { return piece<k_linear1, Linear1>(); }
  const Linear1& linear1() const noexcept { return piece<k_linear1, Linear1>(); }
  Linear2& linear2() noexcept { return piece<k_linear2, Linear2>(); }
  const Linear2& linear2() const noexcept { return piece<k_linear2, Linear2>(); }

  /// The composition itself (one of PreLn, PostLn, PreLnPlain, PostLnPlain).
  Network& network() noexcept { return m_net; }
  const Network& network() const noexcept { return m_net; }

  const Output& forward(const Input& x) {
    return std::visit([&](auto& net) -> const Output& { return net.forward(x); }, m_net);
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    return std::visit([&](auto& net) -> const Input& { return net.backward(dL_dy); }, m_net);
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    return std::visit(
        [&](const auto& net) -> const Output& {
          using Net = std::remove_cvref_t<decltype(net)>;
          return net.infer(x, std::get<typename Net::Workspace>(ws.networks));
        },
        m_net);
  }

  void zero_grad() {
    std::visit([](auto& net) { net.zero_grad(); }, m_net);
  }

  /// Calls `f(composition)` (so for_each_leaf reaches the pieces).
  template <class F>
  void for_each_layer(F&& f) {
    std::visit([&](auto& net) { f(net); }, m_net);
  }

  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    std::visit([&](auto& net) { net.for_each_parameter(f, prefix); }, m_net);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    std::visit([&](const auto& net) { net.for_each_parameter(f, prefix); }, m_net);
  }

 private:
  enum PieceId { k_attention, k_norm1, k_norm2, k_linear1, k_linear2 };

  /// A Residual's body, or the layer itself (the plain compositions have no Residual).
  template <class L>
  static auto& body_of(L& layer) noexcept {
    if constexpr (requires { layer.body(); })
      return layer.body();
    else
      return layer;
  }

  /// Piece `Id` of the composition `net` (const when `net` is).
  template <PieceId Id, class Net>
  static auto& piece_of(Net& net) noexcept {
    using N = std::remove_const_t<Net>;
    if constexpr (std::is_same_v<N, PreLn> || std::is_same_v<N, PreLnPlain>) {
      auto& attn = body_of(net.template get<0>());  // Sequential<Norm, Attention>
      auto& ff = body_of(net.template get<1>());    // Sequential<Norm, Linear1, Activation, Linear2>
      if constexpr (Id == k_norm1)
        return attn.template get<0>();
      else if constexpr (Id == k_attention)
        return attn.template get<1>();
      else if constexpr (Id == k_norm2)
        return ff.template get<0>();
      else if constexpr (Id == k_linear1)
        return ff.template get<1>();
      else
        return ff.template get<3>();
    } else {  // PostLn, PostLnPlain: [Residual<]Attention[>], Norm, [Residual<]FeedForward[>], Norm
      if constexpr (Id == k_attention)
        return body_of(net.template get<0>());
      else if constexpr (Id == k_norm1)
        return net.template get<1>();
      else if constexpr (Id == k_linear1)
        return body_of(net.template get<2>()).template get<0>();
      else if constexpr (Id == k_linear2)
        return body_of(net.template get<2>()).template get<2>();
      else
        return net.template get<3>();
    }
  }

  template <PieceId Id, class P>
  P& piece() noexcept {
    return std::visit([](auto& net) -> P& { return piece_of<Id>(net); }, m_net);
  }
  template <PieceId Id, class P>
  const P& piece() const noexcept {
    return std::visit([](const auto& net) -> const P& { return piece_of<Id>(net); }, m_net);
  }

  /// Builds the composition the options ask for, with torch's parameter names.
  static Network make(Index d_model, Index heads, Index feedforward, const TransformerOptions& o) {
    if (feedforward < 1)
      throw std::invalid_argument(std::string(name) + ": the feed-forward width must be >= 1, got " +
                                  std::to_string(feedforward));
    // Drawn in torch's order (self_attn, linear1, linear2): the arguments below are only moved.
    Attention attention(d_model, heads, AttentionOptions{.causal = o.causal});
    Linear1 linear1(d_model, feedforward);
    Linear2 linear2(feedforward, d_model);
    const LayerNormOptions norm{.eps = o.layer_norm_eps};
    Activation gelu(GELUOp{}, feedforward);
    if (o.norm_first) {
      PreNormAttention attn(Norm(d_model, norm), std::move(attention));
      attn.set_child_names({"norm1", "self_attn"});
      PreNormFeedForward ff(Norm(d_model, norm), std::move(linear1), std::move(gelu), std::move(linear2));
      ff.set_child_names({"norm2", "linear1", "activation", "linear2"});
      if (!o.with_residual) {
        PreLnPlain net(std::move(attn), std::move(ff));
        net.set_child_names({"", ""});
        return Network(std::in_place_type<PreLnPlain>, std::move(net));
      }
      Residual<PreNormAttention> attn_block(std::move(attn));
      attn_block.set_child_names("", "");
      Residual<PreNormFeedForward> ff_block(std::move(ff));
      ff_block.set_child_names("", "");
      PreLn net(std::move(attn_block), std::move(ff_block));
      net.set_child_names({"", ""});
      return Network(std::in_place_type<PreLn>, std::move(net));
    }
    FeedForward ff(std::move(linear1), std::move(gelu), std::move(linear2));
    ff.set_child_names({"linear1", "activation", "linear2"});
    if (!o.with_residual) {
      PostLnPlain net(std::move(attention), Norm(d_model, norm), std::move(ff), Norm(d_model, norm));
      net.set_child_names({"self_attn", "norm1", "", "norm2"});
      return Network(std::in_place_type<PostLnPlain>, std::move(net));
    }
    Residual<Attention> attn_block(std::move(attention));
    attn_block.set_child_names("self_attn", "");
    Residual<FeedForward> ff_block(std::move(ff));
    ff_block.set_child_names("", "");
    PostLn net(std::move(attn_block), Norm(d_model, norm), std::move(ff_block), Norm(d_model, norm));
    net.set_child_names({"", "norm1", "", "norm2"});
    return Network(std::in_place_type<PostLn>, std::move(net));
  }

  TransformerOptions m_options;
  Network m_net;
};

}  // namespace resblocks
