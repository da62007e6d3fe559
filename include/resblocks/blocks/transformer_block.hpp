#pragma once
/// \file
/// \brief TransformerBlock: a Transformer encoder layer (self-attention and feed-forward sublayers,
/// pre- or post-LayerNorm) composed from Residual, Sequential, LayerNorm, MultiHeadAttention, Linear,
/// an activation (ReLU, GELU or tanh-GELU) and Dropout.

#include "resblocks/blocks/residual.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/activation.hpp"
#include "resblocks/layers/dropout.hpp"
#include "resblocks/layers/gelu.hpp"
#include "resblocks/layers/layer_norm.hpp"
#include "resblocks/layers/linear.hpp"
#include "resblocks/layers/multi_head_attention.hpp"
#include "resblocks/layers/relu.hpp"

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

/// The feed-forward activation of a TransformerBlock (torch's `activation="relu"`, `"gelu"`, and
/// `nn.GELU(approximate="tanh")` passed as the activation).
enum class FeedForwardActivation { relu, gelu, gelu_tanh };

/// \brief The element-wise op of TransformerBlock's feed-forward activation, chosen at run time (one
/// branch per packet; each form gives the same bits as ReLUOp / GELUOp).
struct FeedForwardActivationOp {
  static constexpr std::string_view name = "FeedForwardActivation";
  FeedForwardActivation kind = FeedForwardActivation::gelu;

  template <class T>
  struct Value {
    FeedForwardActivation kind;
    [[nodiscard]] detail::GeluValueOp<T> gelu() const {
      return {kind == FeedForwardActivation::gelu ? GELUOp::Approximate::none : GELUOp::Approximate::tanh};
    }
    T operator()(const T& x) const { return kind == FeedForwardActivation::relu ? (x > T(0) ? x : T(0)) : gelu()(x); }
    template <class P>
    P packetOp(const P& x) const {
      if (kind == FeedForwardActivation::relu) return Eigen::internal::pmax(x, Eigen::internal::pzero(x));
      return gelu().packetOp(x);
    }
  };
  template <class T>
  struct Grad {
    FeedForwardActivation kind;
    [[nodiscard]] detail::GeluGradOp<T> gelu() const {
      return {kind == FeedForwardActivation::gelu ? GELUOp::Approximate::none : GELUOp::Approximate::tanh};
    }
    T operator()(const T& x, const T& g) const {
      return kind == FeedForwardActivation::relu ? detail::ReLUGradOp{}(x, g) : gelu()(x, g);
    }
    template <class P>
    P packetOp(const P& x, const P& g) const {
      if (kind == FeedForwardActivation::relu) return detail::ReLUGradOp{}.packetOp(x, g);
      return gelu().packetOp(x, g);
    }
  };

  template <class X>
  auto forward(const X& x) const {
    return x.unaryExpr(Value<typename X::Scalar>{kind});
  }
  template <class X, class Y, class G>
  auto backward(const X& x, const Y&, const G& g) const {
    return x.binaryExpr(g, Grad<typename X::Scalar>{kind});
  }
};

}  // namespace resblocks

// Eigen's cost model for the functors above (not part of the API documentation).
/// \cond EIGEN_TRAITS
template <class T>
struct Eigen::internal::functor_traits<resblocks::FeedForwardActivationOp::Value<T>> {
  enum { Cost = 30, PacketAccess = std::is_same_v<T, float> };  // double: the scalar path, as GELU
};
template <class T>
struct Eigen::internal::functor_traits<resblocks::FeedForwardActivationOp::Grad<T>> {
  enum { Cost = 40, PacketAccess = std::is_same_v<T, float> };
};
/// \endcond

namespace resblocks {

/// \brief Settings of a TransformerBlock.
struct TransformerOptions {
  bool norm_first = true;        ///< pre-LN `x + F(LN(x))` (torch's norm_first=True); false: post-LN `LN(x + F(x))`
  bool causal = false;           ///< token t attends to tokens <= t only
  bool with_residual = true;     ///< false: both skips removed, the sublayers' bodies chained (a "plain" block)
  double layer_norm_eps = 1e-5;  ///< LayerNorm's ε (torch's layer_norm_eps)
  /// The feed-forward activation. Default GELU (erf), resblocks' choice so far; torch's default is ReLU.
  FeedForwardActivation activation = FeedForwardActivation::gelu;
  /// Dropout probability of the attention weights (inside self_attn), dropout1 (after self-attention),
  /// dropout (after the activation) and dropout2 (after linear2): everywhere nn.TransformerEncoderLayer
  /// applies its `dropout`. Default 0 (torch: 0.1).
  double dropout = 0.0;
};

/// \brief One Transformer encoder layer, as `torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=...,
/// activation=..., norm_first=..., batch_first=True)` with the same parameter names:
/// `self_attn.in_proj_weight`, `self_attn.in_proj_bias`, `self_attn.out_proj.{weight,bias}`,
/// `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`.
///
/// It is a composition of the library's pieces, chosen at run time by TransformerOptions:
///
///     pre-LN  (default): Sequential<Residual<Sequential<LN, MHA, Drop>>,
///                                   Residual<Sequential<LN, Linear, Act, Drop, Linear, Drop>>>
///     post-LN:           Sequential<Residual<Sequential<MHA, Drop>>, LN, Residual<Sequential<Linear, Act, Drop,
///     Linear, Drop>>, LN> with_residual = false: the same without the Residual wrappers (the bodies chained).
///
/// The three Dropouts sit where nn.TransformerEncoderLayer has dropout1, dropout and dropout2, and the
/// attention weights drop inside self_attn as in torch; all drop only in training mode (set_training,
/// or eval(net) / train(net)) and when options.dropout > 0.
///
/// The four compositions are alternatives of one std::variant, so that norm_first and with_residual
/// are run-time options as in torch (a program picks them from its command line without templating
/// its training loop); each call costs one variant dispatch, nanoseconds against the block's
/// microseconds. The skip's add is one element-wise pass after each body's last Dropout, and backward
/// adds the skip's gradient in the body's first kernel (pre-LN: the LayerNorm's backward; post-LN:
/// in_proj's and linear1's dL/dx GEMMs).
///
/// Layout: rows = d_model, one column per token, token t of sequence b in column t + L·b; set the
/// sequence length L with set_sequence_length() before the first forward. Parameters are visited in
/// forward order (pre-LN: norm1, self_attn, norm2, linear1, linear2).
template <class S = float, int D = Dynamic>
class TransformerBlock : public detail::VisitsParameters<TransformerBlock<S, D>> {
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
  using Activation = resblocks::Activation<FeedForwardActivationOp, S, Dynamic>;
  using Linear2 = Linear<S, Dynamic, D>;
  using Drop = Dropout<S, D>;             ///< dropout1, dropout2
  using InnerDrop = Dropout<S, Dynamic>;  ///< dropout (after the activation)
  using AttentionBlock = Sequential<Attention, Drop>;
  using FeedForward = Sequential<Linear1, Activation, InnerDrop, Linear2, Drop>;
  using PreNormAttention = Sequential<Norm, Attention, Drop>;
  using PreNormFeedForward = Sequential<Norm, Linear1, Activation, InnerDrop, Linear2, Drop>;

  /// The four compositions (see the class comment).
  using PreLn = Sequential<Residual<PreNormAttention>, Residual<PreNormFeedForward>>;
  using PostLn = Sequential<Residual<AttentionBlock>, Norm, Residual<FeedForward>, Norm>;
  using PreLnPlain = Sequential<PreNormAttention, PreNormFeedForward>;
  using PostLnPlain = Sequential<AttentionBlock, Norm, FeedForward, Norm>;
  using Network = std::variant<PreLn, PostLn, PreLnPlain, PostLnPlain>;

  /// \brief Inference buffers of one caller (one set per composition; only the block's own is used).
  struct Workspace {
    std::tuple<typename PreLn::Workspace, typename PostLn::Workspace, typename PreLnPlain::Workspace,
               typename PostLnPlain::Workspace>
        networks;
  };

  /// \brief Static model dimension: `TransformerBlock<float, 256> block(4, 1024);`.
  /// \param heads attention heads (D must be a multiple)
  /// \param feedforward width of the feed-forward layer (linear1's outputs)
  /// \param options composition, masking, activation, LayerNorm ε and dropout
  /// \throws std::invalid_argument on heads < 1 or not dividing D, feedforward < 1, a dropout outside [0, 1] or
  ///   layer_norm_eps <= 0
  TransformerBlock(Index heads, Index feedforward, TransformerOptions options = {}) requires(D != Dynamic)
      : TransformerBlock(D, heads, feedforward, options) {}

  /// `d_model` features (a multiple of `heads`), a feed-forward width `feedforward`. Parameters as
  /// torch initialises them, drawn from default_generator() in torch's order (self_attn, linear1, linear2).
  /// \param d_model model dimension d (must agree with a static D)
  /// \param heads attention heads (d_model must be a multiple)
  /// \param feedforward width of the feed-forward layer (linear1's outputs)
  /// \param options composition, masking, activation, LayerNorm ε and dropout
  /// \throws std::invalid_argument on a d_model that is negative or disagrees with D, heads < 1 or not dividing
  ///   d_model, feedforward < 1, a dropout outside [0, 1] or layer_norm_eps <= 0
  TransformerBlock(Index d_model, Index heads, Index feedforward, TransformerOptions options = {})
      : m_options(options), m_net(make(d_model, heads, feedforward, options)) {}

  /// \brief Re-draws the parameters as the constructor does, from `g`; LayerNorms back to 1 and 0.
  /// \param g generator the attention's and the linear layers' parameters are drawn from
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

  /// \brief The sequence length L of the inputs (columns = L × sequences); forwarded to the attention.
  /// \param length tokens per sequence L
  /// \throws std::invalid_argument on length < 1
  void set_sequence_length(Index length) { attention().set_sequence_length(length); }
  [[nodiscard]] Index sequence_length() const noexcept { return attention().sequence_length(); }

  /// Key-padding mask, `mask[t + L·b]` != 0 for a padded token (torch's src_key_padding_mask[b, t]);
  /// see MultiHeadAttention::set_key_padding_mask.
  /// \param mask L·batch flags, nonzero for a padded token
  void set_key_padding_mask(std::span<const unsigned char> mask) { attention().set_key_padding_mask(mask); }
  /// \brief Key-padding mask as an L × batch bool matrix (true = padded).
  /// \param mask L × batch, true for a padded token
  template <class Derived>
  void set_key_padding_mask(const Eigen::DenseBase<Derived>& mask) {
    attention().set_key_padding_mask(mask);
  }
  void clear_key_padding_mask() noexcept { attention().clear_key_padding_mask(); }

  /// \brief The pieces, whichever the composition (torch's submodule names).
  /// \returns the self-attention (`self_attn`)
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
  Drop& dropout1() noexcept { return piece<k_dropout1, Drop>(); }
  const Drop& dropout1() const noexcept { return piece<k_dropout1, Drop>(); }
  InnerDrop& dropout() noexcept { return piece<k_dropout, InnerDrop>(); }
  const InnerDrop& dropout() const noexcept { return piece<k_dropout, InnerDrop>(); }
  Drop& dropout2() noexcept { return piece<k_dropout2, Drop>(); }
  const Drop& dropout2() const noexcept { return piece<k_dropout2, Drop>(); }

  /// \brief The composition itself (one of PreLn, PostLn, PreLnPlain, PostLnPlain).
  /// \returns the variant holding the composition
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

  /// \brief Training mode (the default): the Dropouts drop (when options().dropout > 0); eval: they pass through.
  /// \param training true for training mode, false for evaluation
  void set_training(bool training) {
    std::visit([&](auto& net) { net.set_training(training); }, m_net);
  }

  /// \brief Calls `f(composition)` (so for_each_leaf reaches the pieces).
  /// \param f callable taking the composition (a generic lambda: its type depends on the options)
  template <class F>
  void for_each_layer(F&& f) {
    std::visit([&](auto& net) { f(net); }, m_net);
  }

 private:
  friend detail::VisitsParameters<TransformerBlock<S, D>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    std::visit([&](auto& net) { net.for_each_parameter(f, prefix); }, self.m_net);
  }

  enum PieceId { k_attention, k_norm1, k_norm2, k_linear1, k_linear2, k_dropout1, k_dropout, k_dropout2 };

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
      auto& attn = body_of(net.template get<0>());  // Sequential<Norm, Attention, Drop>
      auto& ff = body_of(net.template get<1>());    // Sequential<Norm, Linear1, Activation, InnerDrop, Linear2, Drop>
      if constexpr (Id == k_norm1)
        return attn.template get<0>();
      else if constexpr (Id == k_attention)
        return attn.template get<1>();
      else if constexpr (Id == k_dropout1)
        return attn.template get<2>();
      else if constexpr (Id == k_norm2)
        return ff.template get<0>();
      else if constexpr (Id == k_linear1)
        return ff.template get<1>();
      else if constexpr (Id == k_dropout)
        return ff.template get<3>();
      else if constexpr (Id == k_linear2)
        return ff.template get<4>();
      else
        return ff.template get<5>();
    } else {  // PostLn, PostLnPlain: [Residual<]AttentionBlock[>], Norm, [Residual<]FeedForward[>], Norm
      auto& attn = body_of(net.template get<0>());  // Sequential<Attention, Drop>
      auto& ff = body_of(net.template get<2>());    // Sequential<Linear1, Activation, InnerDrop, Linear2, Drop>
      if constexpr (Id == k_attention)
        return attn.template get<0>();
      else if constexpr (Id == k_dropout1)
        return attn.template get<1>();
      else if constexpr (Id == k_norm1)
        return net.template get<1>();
      else if constexpr (Id == k_linear1)
        return ff.template get<0>();
      else if constexpr (Id == k_dropout)
        return ff.template get<2>();
      else if constexpr (Id == k_linear2)
        return ff.template get<3>();
      else if constexpr (Id == k_dropout2)
        return ff.template get<4>();
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
    Attention attention(d_model, heads, AttentionOptions{.causal = o.causal, .dropout = o.dropout});
    Linear1 linear1(d_model, feedforward);
    Linear2 linear2(feedforward, d_model);
    const LayerNormOptions norm{.eps = o.layer_norm_eps};
    Activation activation(FeedForwardActivationOp{o.activation}, feedforward);
    // Each Dropout seeds its own generator from default_generator(), after the parameters.
    Drop dropout1(o.dropout, d_model);
    InnerDrop dropout(o.dropout, feedforward);
    Drop dropout2(o.dropout, d_model);
    if (o.norm_first) {
      PreNormAttention attn(Norm(d_model, norm), std::move(attention), std::move(dropout1));
      attn.set_child_names({"norm1", "self_attn", "dropout1"});
      PreNormFeedForward ff(Norm(d_model, norm), std::move(linear1), std::move(activation), std::move(dropout),
                            std::move(linear2), std::move(dropout2));
      ff.set_child_names({"norm2", "linear1", "activation", "dropout", "linear2", "dropout2"});
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
    FeedForward ff(std::move(linear1), std::move(activation), std::move(dropout), std::move(linear2),
                   std::move(dropout2));
    ff.set_child_names({"linear1", "activation", "dropout", "linear2", "dropout2"});
    AttentionBlock attn(std::move(attention), std::move(dropout1));
    attn.set_child_names({"self_attn", "dropout1"});
    if (!o.with_residual) {
      PostLnPlain net(std::move(attn), Norm(d_model, norm), std::move(ff), Norm(d_model, norm));
      net.set_child_names({"", "norm1", "", "norm2"});
      return Network(std::in_place_type<PostLnPlain>, std::move(net));
    }
    Residual<AttentionBlock> attn_block(std::move(attn));
    attn_block.set_child_names("", "");
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
