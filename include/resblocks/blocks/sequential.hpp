#pragma once
/// \file
/// \brief Sequential<Ls...>: layers applied one after another, composed by type.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/norm_gradient.hpp"
#include "resblocks/core/norm_input.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/types.hpp"

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace resblocks {

namespace detail {

/// Instantiated for each pair of neighbours: a mismatch names both layer types in the error.
template <class Prev, class Next>
struct LayersChain {
  static_assert(
      std::is_same_v<typename Prev::Scalar, typename Next::Scalar>,
      "resblocks: neighbouring layers (the two types of LayersChain<Prev, Next> below) use different Scalar types");
  static_assert(Prev::OutFeatures == Next::InFeatures,
                "resblocks: a layer's output features do not match the next layer's input features "
                "(see LayersChain<Prev, Next> below; Dynamic only chains with Dynamic)");
  static constexpr bool value = true;
};

template <class... Ls, std::size_t... I>
constexpr bool chain_checked(std::index_sequence<I...>) {
  using T = std::tuple<Ls...>;
  return (LayersChain<std::tuple_element_t<I, T>, std::tuple_element_t<I + 1, T>>::value && ... && true);
}

/// A layer whose output feature count differs from its input's even when it reports -1 (unknown
/// yet), e.g. Flatten before its image size is set.
template <class L>
concept ChangesFeatures = requires {
  requires L::changes_features;
};

/// Run-time link check for Dynamic sizes. `features` carries the feature count so far (-1: unknown).
template <class L>
void check_link(const L& layer, std::size_t index, Index& features, std::string_view container) {
  const Index in = layer.in_features(), out = layer.out_features();
  if (in >= 0 && features >= 0 && in != features)
    throw std::invalid_argument(std::string(container) + ": layer " + std::to_string(index) + " (" +
                                std::string(L::name) + ") takes " + std::to_string(in) +
                                " features but the layer before it gives " + std::to_string(features));
  if (out >= 0)
    features = out;
  else if constexpr (ChangesFeatures<L>)
    features = -1;
}

/// A GEMM layer followed by an element-wise one: Sequential runs the latter inside the former's
/// GEMM region (forward), and the former's dL/dx GEMM feeds the latter's backward the same way.
template <class G, class E>
concept FusedPair = HasEpilogueHooks<G> && ElementWise<E> && std::is_same_v<typename G::Output, typename E::Input>;

/// An element-wise layer followed by a layer with backward_then (a GEMM layer, or a container whose
/// first layer runs the hooks: Sequential, Residual, Repeat): its dL/dx blocks feed the former's backward.
template <class E, class G>
concept FusedBackwardPair = ElementWise<E> && std::is_same_v<typename E::Output, typename G::Input> &&
    requires(G& layer, const typename G::Output& dy) {
  { layer.backward_then(dy, NoPrepare{}, NoEpilogue{}) } -> std::same_as<const typename G::Input&>;
};

/// A layer whose backward can read dL/dy as the following normalisation's unwritten dL/dx (Conv2d →
/// BatchNorm2d, see detail::NormGradient), when its takes_norm_gradient() says so at run time.
template <class P, class N>
concept NormGradientPair = std::is_same_v<typename P::Output, typename N::Input> &&
    requires(P& layer, const P& const_layer, N& norm, const typename N::Output& g) {
  { const_layer.takes_norm_gradient() } -> std::same_as<bool>;
  layer.set_norm_gradient(norm.backward_deferred(g));
};

/// A normalisation, a ReLU and a layer that can read its input as the ReLU's output from the
/// normalisation's input and coefficients (BatchNorm2d → ReLU → Conv2d, see detail::NormInput), when
/// its takes_norm_input() says so at run time: neither the normalisation nor the ReLU writes its output.
template <class N, class A, class C>
concept NormInputTriple =
    std::is_same_v<typename N::Input, typename C::Input> && std::is_same_v<typename N::Output, typename A::Input> &&
    std::is_same_v<typename A::Output, typename C::Input> && requires {
  requires A::is_relu;
} && requires(N& norm, const N& const_norm, C& conv, const C& const_conv, const typename N::Input& x,
              typename N::Workspace& norm_ws, typename C::Workspace& conv_ws) {
  { const_conv.takes_norm_input() } -> std::same_as<bool>;
  { const_conv.read_norm_input() } -> std::same_as<bool>;
  { const_conv.infers_norm_input() } -> std::same_as<bool>;
  conv.set_norm_input(norm.forward_deferred(x));
  conv_ws.set_norm_input(const_norm.infer_deferred(x, norm_ws));
};

/// A layer whose forward epilogue runs on whole samples (Conv2d's forward_sample_blocks) followed by a
/// normalisation that can take its batch statistics summed on those samples (BatchNorm2d): the sums
/// run in the former's pass while each sample's output is in cache, not in a pass of their own.
template <class P, class N>
concept SampleMomentsPair = HasEpilogueHooks<P> && std::is_same_v<typename P::Output, typename N::Input> &&
    requires(const P& layer, N& norm, const typename P::Input& x, const typename N::Input& y, SampleBlocks blocks) {
  { layer.forward_sample_blocks(x) } -> std::same_as<SampleBlocks>;
  { norm.takes_sample_moments(blocks) } -> std::same_as<bool>;
  norm.begin_sample_moments(blocks);
  norm.sample_moments(y, Index{}, Index{});
  norm.end_sample_moments(y);
};

}  // namespace detail

/// \brief Layers applied in order: `Sequential<Linear<float,8,16>, ReLU<float,16>, Linear<float,16,8>>`.
/// Parameters are named by position (`0.weight`, `2.bias`), as `torch.nn.Sequential`, or by the
/// names given to set_child_names() (`conv1.weight`; an empty name puts a child's parameters
/// directly under this one's prefix).
template <class... Ls>
class Sequential {
  static_assert(sizeof...(Ls) >= 1, "resblocks::Sequential needs at least one layer");
  static_assert((Layer<Ls> && ...), "resblocks::Sequential: every element must satisfy resblocks::Layer");
  static constexpr std::size_t N = sizeof...(Ls);
  using Layers = std::tuple<Ls...>;
  template <std::size_t I>
  using At = std::tuple_element_t<I, Layers>;
  static_assert(detail::chain_checked<Ls...>(std::make_index_sequence<N - 1>{}));

 public:
  using Scalar = typename At<0>::Scalar;
  static constexpr int InFeatures = At<0>::InFeatures;
  static constexpr int OutFeatures = At<N - 1>::OutFeatures;
  using Input = typename At<0>::Input;
  using Output = typename At<N - 1>::Output;
  static constexpr std::string_view name = "Sequential";

  /// \brief Inference buffers: one workspace per layer.
  struct Workspace {
    std::tuple<typename Ls::Workspace...> layers;
  };

  Sequential() requires(std::is_default_constructible_v<Ls>&&...) { check_links(); }
  /// Takes the layers. Build them in braces, `Net net{Linear(...), ReLU(), Linear(...)}`: list
  /// initialisation constructs them left to right, so they draw their initial weights from the
  /// generator in that order with every compiler; in parentheses the order is unspecified (GCC and
  /// Clang differ) and so are the weights a seed gives.
  /// \param layers the layers, first to last
  /// \throws std::invalid_argument when a layer does not take the features the one before it gives
  explicit Sequential(Ls... layers) : m_layers(std::move(layers)...) { check_links(); }

  template <std::size_t I>
  At<I>& get() noexcept {
    return std::get<I>(m_layers);
  }
  template <std::size_t I>
  const At<I>& get() const noexcept {
    return std::get<I>(m_layers);
  }
  static constexpr std::size_t size() noexcept { return N; }

  /// Names the children in parameter names instead of their positions. The views must stay valid
  /// as long as the Sequential (string literals do).
  /// \param names one name per layer (empty: the layer's parameters directly under this prefix)
  /// \returns `*this`
  Sequential& set_child_names(const std::array<std::string_view, N>& names) {
    m_names = names;
    m_named = true;
    return *this;
  }

  /// \brief Configures every image layer for inputs of `size`; returns the output's size.
  /// \param size the input's height and width
  /// \returns the output's height and width
  /// \throws std::invalid_argument when a layer rejects its input size, or when the sizes this fixes (Flatten's
  ///   output) do not match the next layer
  ImageSize set_image_size(ImageSize size) {
    std::apply([&](auto&... l) { ((size = detail::propagate_image_size(l, size)), ...); }, m_layers);
    check_links();  // sizes that depend on the image (Flatten's output) are known now
    return size;
  }

  /// \brief Tokens per sequence for every attention layer inside (see MultiHeadAttention).
  /// \param length tokens per sequence L
  /// \throws std::invalid_argument when a layer inside rejects it (an attention layer: length < 1)
  void set_sequence_length(Index length) {
    std::apply([&](auto&... l) { (detail::propagate_sequence_length(l, length), ...); }, m_layers);
  }

  /// \brief Training (true) or evaluation (false) behaviour for every layer.
  /// \param training true for training mode, false for evaluation
  void set_training(bool training) {
    std::apply([&](auto&... l) { (detail::propagate_training(l, training), ...); }, m_layers);
  }

  /// \brief `f(name, value)` on every buffer (BatchNorm running statistics, …).
  /// \param f visitor, called as `f(name, value)`
  /// \param prefix prepended to every name (the Sequential's own name in its parent)
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) {
    visit_buffers(m_layers, f, prefix, std::make_index_sequence<N>{});
  }
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) const {
    visit_buffers(m_layers, f, prefix, std::make_index_sequence<N>{});
  }

  [[nodiscard]] Index in_features() const noexcept { return m_in_features; }
  [[nodiscard]] Index out_features() const noexcept { return m_out_features; }

  const Output& forward(const Input& x) {
    detail::check_input_features(name, m_in_features, x);
    return forward_from<0>(x);
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    forward_add_then(x, y, skip, detail::NoPrepare{}, detail::NoEpilogue{});
  }
  /// forward_add with a following element-wise layer's hooks, run by the last layer (see FusedLayer).
  /// \param x input batch
  /// \param y output, resized by the call
  /// \param skip added to the last layer's result
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  template <class Skip, class Prepare, class Epilogue>
  void forward_add_then(const Input& x, Output& y, const Skip& skip, const Prepare& prepare, const Epilogue& epilogue) {
    detail::check_input_features(name, m_in_features, x);
    forward_add_from<0>(x, y, skip, prepare, epilogue);
  }

  const Input& backward(const Output& dL_dy) { return backward_from<N - 1>(dL_dy); }

  /// backward(dL_dy), then `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx, run
  /// by the first layer's pass when it offers backward_then (Repeat runs the block before's last
  /// activation there); `prepare(dL_dx)` runs first.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \returns dL/dx, in a buffer the first layer owns
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    return backward_from<N - 1>(dL_dy, prepare, epilogue);
  }

  /// The last layer, element-wise: Repeat runs its backward inside the next block's pass
  /// (fused_backward_block), then the rest of this Sequential with backward_below_last.
  /// \returns the last layer
  auto& last_layer() noexcept requires(N >= 2 && ElementWise<At<N - 1>>) { return get<N - 1>(); }
  /// The layer before the last one: Repeat sums its backward sums in the next block's pass, on the
  /// last layer's dL/dx (detail::backward_summing), when it takes them.
  /// \returns layer N − 2
  auto& before_last_layer() noexcept requires(N >= 2) { return get<N - 2>(); }

  /// The blocks backward_then's epilogue runs on, when they are whole samples: its first layer's
  /// (whose pass runs the hooks), see detail::HasBackwardSampleBlocks.
  /// \returns the first layer's blocks
  [[nodiscard]] detail::SampleBlocks backward_sample_blocks()
      const noexcept requires detail::HasBackwardSampleBlocks<At<0>> {
    return get<0>().backward_sample_blocks();
  }
  /// The last layer's (which gets dL/dy as it is) detail::TakesSampleGradientSums protocol.
  /// \param blocks the samples of dL/dy
  /// \returns true when the last layer takes sums summed on them
  [[nodiscard]] bool takes_sample_gradient_sums(
      detail::SampleBlocks blocks) const noexcept requires detail::TakesSampleGradientSums<At<N - 1>> {
    return get<N - 1>().takes_sample_gradient_sums(blocks);
  }
  void begin_sample_gradient_sums(detail::SampleBlocks blocks) requires detail::TakesSampleGradientSums<At<N - 1>> {
    get<N - 1>().begin_sample_gradient_sums(blocks);
  }
  void sample_gradient_sums(const Output& dL_dy, Index c0,
                            Index n) requires detail::TakesSampleGradientSums<At<N - 1>> {
    get<N - 1>().sample_gradient_sums(dL_dy, c0, n);
  }
  void end_sample_gradient_sums(const Output& dL_dy) noexcept requires detail::TakesSampleGradientSums<At<N - 1>> {
    get<N - 1>().end_sample_gradient_sums(dL_dy);
  }

  /// backward of every layer but the last, from the gradient with respect to the last layer's input
  /// (computed by the caller, e.g. inside the next block's pass); the hooks as backward_then's.
  /// \param dL_dz gradient of the loss with respect to the last layer's input
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \returns dL/dx, in a buffer the first layer owns
  template <class Prepare = detail::NoPrepare, class Epilogue = detail::NoEpilogue>
  const Input& backward_below_last(const typename At<N - 1>::Input& dL_dz, const Prepare& prepare = {},
                                   const Epilogue& epilogue = {}) requires(N >= 2) {
    return backward_from<N - 2>(dL_dz, prepare, epilogue);
  }

  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    backward_add_from<N - 1>(dL_dy, dL_dx, skip_grad, detail::NoPrepare{}, detail::NoEpilogue{});
  }
  /// backward_add with a preceding element-wise layer's hooks, run by the first layer.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param dL_dx receives skip_grad + dL/dx, resized by the call
  /// \param skip_grad added to the first layer's dL/dx
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  template <class SkipGrad, class Prepare, class Epilogue>
  void backward_add_then(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad, const Prepare& prepare,
                         const Epilogue& epilogue) {
    backward_add_from<N - 1>(dL_dy, dL_dx, skip_grad, prepare, epilogue);
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    detail::check_input_features(name, m_in_features, x);
    return infer_from<0>(x, ws);
  }

  template <class Skip>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace& ws) const {
    infer_add_then(x, y, skip, ws, detail::NoPrepare{}, detail::NoEpilogue{});
  }
  /// infer_add with a following element-wise layer's hooks, run by the last layer.
  /// \param x input batch
  /// \param y output, resized by the call
  /// \param skip added to the last layer's result
  /// \param ws the caller's buffers
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  template <class Skip, class Prepare, class Epilogue>
  void infer_add_then(const Input& x, Output& y, const Skip& skip, Workspace& ws, const Prepare& prepare,
                      const Epilogue& epilogue) const {
    detail::check_input_features(name, m_in_features, x);
    infer_add_from<0>(x, y, skip, ws, prepare, epilogue);
  }

  void zero_grad() {
    std::apply([](auto&... l) { (l.zero_grad(), ...); }, m_layers);
  }

  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    visit(m_layers, f, prefix, std::make_index_sequence<N>{});
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    visit(m_layers, f, prefix, std::make_index_sequence<N>{});
  }

  /// \brief Calls `f(layer)` on each layer in order (for training switches, initialisers, …).
  /// \param f callable taking each layer (a generic lambda)
  template <class F>
  void for_each_layer(F&& f) {
    std::apply([&](auto&... l) { (f(l), ...); }, m_layers);
  }

 private:
  void check_links() {
    Index features = -1;
    std::size_t index = 0;
    std::apply([&](const auto&... l) { (detail::check_link(l, index++, features, name), ...); }, m_layers);
    m_out_features = features;
    // The input size is that of the first layer with a fixed size, if only shape-preserving ones precede it.
    m_in_features = -1;
    bool known = false;
    auto take_first_known = [&](const auto& layer) {
      if (known) return;
      m_in_features = layer.in_features();
      known = m_in_features >= 0 || layer.out_features() >= 0 ||
              detail::ChangesFeatures<std::remove_cvref_t<decltype(layer)>>;
    };
    std::apply([&](const auto&... l) { (take_first_known(l), ...); }, m_layers);
  }

  ParameterName child_name(const ParameterName& prefix, std::size_t i) const {
    return m_named ? prefix.child(m_names[i]) : prefix.child(i);
  }
  template <class Tuple, class F, std::size_t... I>
  void visit(Tuple& layers, F& f, const ParameterName& prefix, std::index_sequence<I...>) const {
    (std::get<I>(layers).for_each_parameter(f, child_name(prefix, I)), ...);
  }
  template <class Tuple, class F, std::size_t... I>
  void visit_buffers(Tuple& layers, F& f, const ParameterName& prefix, std::index_sequence<I...>) const {
    (detail::visit_buffers(std::get<I>(layers), f, child_name(prefix, I)), ...);
  }

  /// Layers I and I+1 are a GEMM layer and an activation that run fused.
  template <std::size_t I>
  static constexpr bool fused_at() {
    if constexpr (I + 1 < N)
      return detail::FusedPair<At<I>, At<I + 1>>;
    else
      return false;
  }

  /// Runs layers I (GEMM) and I+1 (activation) fused; returns the activation's output.
  template <std::size_t I, class X>
  const auto& forward_pair(const X& x) {
    auto& act = get<I + 1>();
    get<I>().forward_then(
        x, [&](const auto& z) { act.fused_forward_prepare(z); },
        [&](const auto& z, Index r0, Index rows, Index c0, Index cols) {
          act.fused_forward_block(z, r0, rows, c0, cols);
        });
    return act.fused_output();
  }
  /// Backward of layer I (from below its last layer when BelowLast: that ran in the pass after it),
  /// with `prepare` and `epilogue` on its dL/dx; returns dL/dx.
  template <std::size_t I, bool BelowLast, class G, class Prepare = detail::NoPrepare,
            class Epilogue = detail::NoEpilogue>
  const auto& layer_backward(const G& g, const Prepare& prepare = {}, const Epilogue& epilogue = {}) {
    if constexpr (BelowLast)
      return get<I>().backward_below_last(g, prepare, epilogue);
    else
      return detail::backward_with_hooks(get<I>(), g, m_dL_dx, prepare, epilogue);
  }
  /// Backward of layer I (see layer_backward) with the backward of the element-wise layer `act` fused
  /// in (layer I-1, or layer I-1's last layer); returns the latter's dL/dx.
  template <std::size_t I, bool BelowLast, class G, class Act>
  const auto& backward_pair(const G& g, Act& act) {
    const auto [prepare, epilogue] = detail::fused_backward_hooks(act);
    layer_backward<I, BelowLast>(g, prepare, epilogue);
    return act.fused_grad();
  }
  /// backward_pair of layer I and the element-wise layer I-1, with the backward sums of the
  /// normalisation I-2 summed on each sample of the latter's dL/dx in the same pass when the three can
  /// run so now (SampleGradientSumsPair); returns layer I-1's dL/dx.
  template <std::size_t I, bool BelowLast, class G>
  const auto& backward_pair_summed(const G& g) {
    if constexpr (I >= 2 && detail::SampleGradientSumsPair<At<I>, At<I - 2>>)
      return detail::backward_summing(
          get<I>().backward_sample_blocks(), get<I - 1>(), get<I - 2>(),
          [&](const auto& prepare, const auto& epilogue) { layer_backward<I, BelowLast>(g, prepare, epilogue); });
    else
      return backward_pair<I, BelowLast>(g, get<I - 1>());
  }
  /// backward_pair of layer I and layer I-1's last layer (split_at), with the backward sums of the
  /// layer before that last layer (a ResNet v1 stage's last residual, ending in BatchNorm2d) summed on
  /// each sample of the last layer's dL/dx in the same pass when they can run so now, as Repeat does
  /// between its blocks; returns the last layer's dL/dx.
  template <std::size_t I, bool BelowLast, class G>
  const auto& backward_split_summed(const G& g) {
    auto& act = get<I - 1>().last_layer();
    if constexpr (split_summing_at<I>())
      return detail::backward_summing(
          get<I>().backward_sample_blocks(), act, get<I - 1>().before_last_layer(),
          [&](const auto& prepare, const auto& epilogue) { layer_backward<I, BelowLast>(g, prepare, epilogue); });
    else
      return backward_pair<I, BelowLast>(g, act);
  }
  template <std::size_t I, class X>
  const auto& infer_pair(const X& x, Workspace& ws) const {
    const auto& act = get<I + 1>();
    auto& act_ws = std::get<I + 1>(ws.layers);
    get<I>().infer_then(
        x, std::get<I>(ws.layers), [&](const auto& z) { act.fused_infer_prepare(z, act_ws); },
        [&](const auto& z, Index r0, Index rows, Index c0, Index cols) {
          act.fused_infer_block(z, act_ws, r0, rows, c0, cols);
        });
    return act_ws.y;
  }

  /// Forward of layer I (not the last), summing the next layer's statistics in its pass when the two
  /// are a SampleMomentsPair that can run so now.
  template <std::size_t I, class X>
  const auto& layer_forward(const X& x) {
    static_assert(I + 1 < N, "layer_forward: layer I has a next layer");
    if constexpr (detail::SampleMomentsPair<At<I>, At<I + 1>>) {
      auto& norm = get<I + 1>();
      if (const detail::SampleBlocks blocks = get<I>().forward_sample_blocks(x); norm.takes_sample_moments(blocks)) {
        norm.begin_sample_moments(blocks);
        const auto& y = get<I>().forward_then(
            x, detail::NoPrepare{},
            [&norm](const auto& z, Index, Index, Index c0, Index cols) { norm.sample_moments(z, c0, cols); });
        norm.end_sample_moments(y);
        return y;
      }
    }
    return get<I>().forward(x);
  }

  /// Layers I, I+1 and I+2 are a normalisation, a ReLU and a convolution that may run as one
  /// (NormInputTriple).
  template <std::size_t I>
  static constexpr bool norm_input_at() {
    if constexpr (I + 2 < N)
      return detail::NormInputTriple<At<I>, At<I + 1>, At<I + 2>>;
    else
      return false;
  }
  /// Backward of layer I, a convolution that read its input through the normalisation I-2 and the ReLU
  /// I-1 (NormInputTriple): the ReLU's backward runs in its pass, and the normalisation's backward sums
  /// on each sample of its dL/dx when it can take them so; returns dL/dx with respect to layer I-2's
  /// output.
  template <std::size_t I, bool BelowLast, class G>
  const auto& backward_norm_input(const G& g) {
    const auto run = [&](const auto& prepare, const auto& epilogue) -> const auto& {
      return layer_backward<I, BelowLast>(g, prepare, epilogue);
    };
    if constexpr (detail::SampleGradientSumsPair<At<I>, At<I - 2>>)
      return detail::norm_summing(get<I>().backward_sample_blocks(), get<I - 2>(), run);
    else
      return run(detail::NoPrepare{}, detail::NoEpilogue{});
  }

  template <std::size_t I, class X>
  const Output& forward_from(const X& x) {
    if constexpr (norm_input_at<I>()) {  // layers I and I+1 inside layer I+2's pass
      if (get<I + 2>().takes_norm_input()) {
        const detail::NormInputScope scope(get<I + 2>(), get<I>().forward_deferred(x));
        return forward_from<I + 2>(x);
      }
    }
    if constexpr (I + 1 == N) {
      return get<I>().forward(x);
    } else if constexpr (fused_at<I>()) {
      if constexpr (I + 2 == N)
        return forward_pair<I>(x);
      else
        return forward_from<I + 2>(forward_pair<I>(x));
    } else {
      return forward_from<I + 1>(layer_forward<I>(x));
    }
  }
  template <std::size_t I, class X, class Skip, class Prepare, class Epilogue>
  void forward_add_from(const X& x, Output& y, const Skip& skip, const Prepare& prepare, const Epilogue& epilogue) {
    if constexpr (norm_input_at<I>()) {
      if (get<I + 2>().takes_norm_input()) {
        const detail::NormInputScope scope(get<I + 2>(), get<I>().forward_deferred(x));
        return forward_add_from<I + 2>(x, y, skip, prepare, epilogue);
      }
    }
    if constexpr (I + 1 == N)
      detail::forward_add(get<I>(), x, y, skip, prepare, epilogue);
    else if constexpr (fused_at<I>() && I + 2 < N)
      forward_add_from<I + 2>(forward_pair<I>(x), y, skip, prepare, epilogue);
    else
      forward_add_from<I + 1>(layer_forward<I>(x), y, skip, prepare, epilogue);
  }
  /// Layers I-1 and I are a convolution and a normalisation whose backward may run as one (NormGradientPair).
  template <std::size_t I>
  static constexpr bool norm_gradient_at() {
    if constexpr (I >= 1)
      return detail::NormGradientPair<At<I - 1>, At<I>>;
    else
      return false;
  }
  /// Layer I-1 ends in an element-wise layer (SplitsLastLayer: a Repeat of ResNet v1 blocks) that runs
  /// inside layer I's backward pass.
  template <std::size_t I>
  static constexpr bool split_at() {
    if constexpr (I >= 1)
      return detail::SplitsLastLayer<At<I - 1>> && has_backward_then<At<I>>;
    else
      return false;
  }
  /// Layer I's pass, which runs layer I-1's last layer (split_at), can also sum the backward sums of
  /// the layer before that last layer (SampleGradientSumsPair).
  template <std::size_t I>
  static constexpr bool split_summing_at() {
    if constexpr (split_at<I>())
      return detail::SumsBeforeLastLayer<At<I>, At<I - 1>>;
    else
      return false;
  }
  template <class L>
  static constexpr bool has_backward_then = requires(L& layer, const typename L::Output& g) {
    layer.backward_then(g, detail::NoPrepare{}, detail::NoEpilogue{});
  };

  /// Backward from layer I down (layer I from below its last layer when BelowLast), with the hooks (if
  /// any) on the first layer's dL/dx. Passes over the batch are saved three ways:
  /// - an element-wise layer before a layer with backward_then runs inside the latter's pass, except an
  ///   activation at 0 when there are hooks (its dL/dx would need the hooks' blocks too): then it runs
  ///   alone, the hooks after it; so does the last layer of a layer that SplitsLastLayer;
  /// - a convolution that takes the normalisation after it computes the latter's dL/dx as it reads it
  ///   (NormGradient);
  /// - a convolution after an element-wise layer after a normalisation sums the latter's backward sums
  ///   on each sample of the element-wise layer's dL/dx in its pass (SampleGradientSumsPair); so does
  ///   a layer whose pass runs the last layer of the one before it, for the layer before that last one
  ///   (a ResNet stage after another: the first stage's last BatchNorm2d), and a Repeat after an
  ///   activation after a normalisation (a ResNet's stem).
  template <std::size_t I, bool BelowLast = false, class G, class Prepare = detail::NoPrepare,
            class Epilogue = detail::NoEpilogue>
  const Input& backward_from(const G& g, const Prepare& prepare = {}, const Epilogue& epilogue = {}) {
    constexpr bool hooks = detail::has_hooks<Prepare, Epilogue>;
    if constexpr (norm_gradient_at<I>() && !BelowLast) {  // the normalisation's dL/dx inside layer I-1's pass
      if (get<I - 1>().takes_norm_gradient()) {
        const detail::NormGradientScope scope(get<I - 1>(), get<I>().backward_deferred(g));
        return backward_from<I - 1>(g, prepare, epilogue);
      }
    }
    if constexpr (split_at<I>()) {
      if (detail::can_split_last_layer(get<I - 1>()))
        return backward_from<I - 1, true>(backward_split_summed<I, BelowLast>(g), prepare, epilogue);
    }
    if constexpr (I >= 2) {
      if constexpr (norm_input_at<I - 2>()) {  // the ReLU's backward inside layer I's pass
        if (get<I>().read_norm_input())
          return backward_from<I - 2>(backward_norm_input<I, BelowLast>(g), prepare, epilogue);
      }
    }
    if constexpr (I == 0) {
      return layer_backward<0, BelowLast>(g, prepare, epilogue);
    } else if constexpr (detail::FusedBackwardPair<At<I - 1>, At<I>> && (I >= 2 || !hooks)) {
      if constexpr (I == 1)
        return backward_pair<I, BelowLast>(g, get<I - 1>());
      else
        return backward_from<I - 2>(backward_pair_summed<I, BelowLast>(g), prepare, epilogue);
    } else {
      return backward_from<I - 1>(layer_backward<I, BelowLast>(g), prepare, epilogue);
    }
  }
  /// backward_from with dx = skip_grad + dL/dx written by layer 0 (which never starts below its last
  /// layer: a split needs I >= 2 here).
  template <std::size_t I, bool BelowLast = false, class G, class SkipGrad, class Prepare, class Epilogue>
  void backward_add_from(const G& g, Input& dx, const SkipGrad& skip_grad, const Prepare& prepare,
                         const Epilogue& epilogue) {
    if constexpr (norm_gradient_at<I>() && !BelowLast) {
      if (get<I - 1>().takes_norm_gradient()) {
        const detail::NormGradientScope scope(get<I - 1>(), get<I>().backward_deferred(g));
        return backward_add_from<I - 1>(g, dx, skip_grad, prepare, epilogue);
      }
    }
    if constexpr (I >= 2 && split_at<I>()) {
      if (detail::can_split_last_layer(get<I - 1>()))
        return backward_add_from<I - 1, true>(backward_split_summed<I, BelowLast>(g), dx, skip_grad, prepare, epilogue);
    }
    if constexpr (I >= 2) {
      if constexpr (norm_input_at<I - 2>()) {
        if (get<I>().read_norm_input())
          return backward_add_from<I - 2>(backward_norm_input<I, BelowLast>(g), dx, skip_grad, prepare, epilogue);
      }
    }
    if constexpr (I == 0)
      detail::backward_add(get<0>(), g, dx, skip_grad, prepare, epilogue);
    else if constexpr (I >= 2 && detail::FusedBackwardPair<At<I - 1>, At<I>>)
      backward_add_from<I - 2>(backward_pair_summed<I, BelowLast>(g), dx, skip_grad, prepare, epilogue);
    else
      backward_add_from<I - 1>(layer_backward<I, BelowLast>(g), dx, skip_grad, prepare, epilogue);
  }
  template <std::size_t I, class X>
  const Output& infer_from(const X& x, Workspace& ws) const {
    if constexpr (norm_input_at<I>()) {  // as forward_from: layers I and I+1 inside layer I+2's pass
      if (get<I + 2>().infers_norm_input()) {
        const detail::NormInputScope scope(std::get<I + 2>(ws.layers),
                                           get<I>().infer_deferred(x, std::get<I>(ws.layers)));
        return infer_from<I + 2>(x, ws);
      }
    }
    if constexpr (I + 1 == N) {
      return get<I>().infer(x, std::get<I>(ws.layers));
    } else if constexpr (fused_at<I>()) {
      if constexpr (I + 2 == N)
        return infer_pair<I>(x, ws);
      else
        return infer_from<I + 2>(infer_pair<I>(x, ws), ws);
    } else {
      return infer_from<I + 1>(get<I>().infer(x, std::get<I>(ws.layers)), ws);
    }
  }
  template <std::size_t I, class X, class Skip, class Prepare, class Epilogue>
  void infer_add_from(const X& x, Output& y, const Skip& skip, Workspace& ws, const Prepare& prepare,
                      const Epilogue& epilogue) const {
    if constexpr (norm_input_at<I>()) {
      if (get<I + 2>().infers_norm_input()) {
        const detail::NormInputScope scope(std::get<I + 2>(ws.layers),
                                           get<I>().infer_deferred(x, std::get<I>(ws.layers)));
        return infer_add_from<I + 2>(x, y, skip, ws, prepare, epilogue);
      }
    }
    if constexpr (I + 1 == N)
      detail::infer_add(get<I>(), x, y, skip, std::get<I>(ws.layers), prepare, epilogue);
    else if constexpr (fused_at<I>() && I + 2 < N)
      infer_add_from<I + 2>(infer_pair<I>(x, ws), y, skip, ws, prepare, epilogue);
    else
      infer_add_from<I + 1>(get<I>().infer(x, std::get<I>(ws.layers)), y, skip, ws, prepare, epilogue);
  }

  Layers m_layers;
  Input m_dL_dx;  ///< dL/dx for backward hooks when the first layer passes dL/dy through (run_epilogue_owned)
  std::array<std::string_view, N> m_names{};
  bool m_named = false;
  Index m_in_features = -1;
  Index m_out_features = -1;
};

}  // namespace resblocks
