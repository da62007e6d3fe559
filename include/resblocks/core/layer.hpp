#pragma once
/// \file
/// \brief The Layer concept: the contract every layer and block of resblocks meets.
///
/// A layer maps a batch `Input` (Scalar, InFeatures rows, one column per sample or position)
/// to a batch `Output` (OutFeatures rows, same columns). Sizes are `int` constants, or `Dynamic`.
///
/// Training:
/// - `const Output& forward(const Input& x)` computes the output into a buffer the layer owns and
///   caches what backward needs. It may keep a *reference* to `x`: `x` must stay alive and unchanged
///   until the matching backward(). Rvalues and inputs of other types are rejected at compile time.
///   It runs in the layer's current mode, training by default (BatchNorm2d: batch statistics;
///   Dropout: drops); `eval(net)` / `set_training(net, false)` (core/training_mode.hpp) switch a
///   whole network to eval mode.
/// - `const Input& backward(const Output& dL_dy)` uses the last forward's cache, returns dL/dx in a
///   buffer the layer owns, and **adds** dL/dθ into every parameter gradient (call zero_grad() to reset).
/// - The returned references stay valid until the next forward/backward of the same layer.
///
/// Inference:
/// - `const Output& infer(const Input& x, Workspace& ws) const` touches no member state: one trained
///   network may be run by several threads at once, each with its own `Workspace`. The result lives
///   in `ws` and equals forward(x) bit for bit in the same mode — infer does not switch to eval mode
///   by itself (call `eval(net)` before predicting), except that Dropout's infer never drops.
///
/// Parameters:
/// - `for_each_parameter(f)` calls `f(name, value, grad)` for every trainable tensor, with PyTorch
///   `state_dict` names (`0.weight`, `body.1.bias`); a const layer gives const references. A layer
///   whose tensor has another shape in torch (Conv2d's weight) passes that shape as a fourth argument
///   `const TorchShape&` to visitors that take one (core/torch_shape.hpp).
/// - `zero_grad()` sets every gradient to zero. `in_features()` / `out_features()` give the run-time
///   sizes (-1 for a shape-preserving layer that takes any size, e.g. a Dynamic activation).
///
/// Buffers are sized on the first call and reused: with unchanged batch size, a training or
/// inference step performs no heap allocation.
///
/// Optional, for fusing the residual add into the neighbouring kernels (see detail::forward_add):
/// `forward_add(x, y, skip)` sets y = skip + F(x); `backward_add(dL_dy, dL_dx, skip_grad)` sets
/// dL_dx = skip_grad + dL/dx (accumulating dL/dθ as backward does); `infer_add(x, y, skip, ws)`.
/// Layers without them still compose: the add then takes a pass of its own.
/// Optional, for image layers and training state (composites forward them to every child;
/// layers without them are unaffected, see the detail helpers below):
/// - `ImageSize set_image_size(ImageSize in)` configures the input's spatial size and returns the
///   output's (Conv2d, pooling; a network is configured once, and again when the size changes).
/// - `set_training(bool)` switches train/eval behaviour (BatchNorm2d: batch vs running statistics).
/// - `for_each_buffer(f, prefix)` calls `f(name, value)` on every non-trainable state tensor
///   (`running_mean`, `running_var`, and `num_batches_tracked` as a `std::int64_t&`).
/// Optional, for fusing element-wise layers into GEMM epilogues (Sequential pairs them up):
/// `has_epilogue_hooks` with forward_then/backward_then/infer_then (Linear), and `is_elementwise`
/// with the fused_* block functions (Activation).

#include "resblocks/core/image_size.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <concepts>
#include <string_view>

namespace resblocks {

namespace detail {
/// Stands for any callable `f(name, value, grad)` in the concept below.
struct ParameterVisitorArchetype {
  template <class V, class G>
  void operator()(std::string_view, V&, G&) const {}
};
}  // namespace detail

template <class L>
concept Layer = requires(L& layer, const L& const_layer, const typename L::Input& x, const typename L::Output& dy,
                         typename L::Workspace& ws, detail::ParameterVisitorArchetype visit) {
  typename L::Scalar;
  typename L::Workspace;
  { L::InFeatures } -> std::convertible_to<int>;
  { L::OutFeatures } -> std::convertible_to<int>;
  requires std::same_as<typename L::Input, Batch<typename L::Scalar, L::InFeatures>>;
  requires std::same_as<typename L::Output, Batch<typename L::Scalar, L::OutFeatures>>;
  { layer.forward(x) } -> std::same_as<const typename L::Output&>;
  { layer.backward(dy) } -> std::same_as<const typename L::Input&>;
  { const_layer.infer(x, ws) } -> std::same_as<const typename L::Output&>;
  { layer.zero_grad() };
  { const_layer.in_features() } -> std::convertible_to<Index>;
  { const_layer.out_features() } -> std::convertible_to<Index>;
  { layer.for_each_parameter(visit) };
  { const_layer.for_each_parameter(visit) };
};

/// `Next` can consume `Prev`'s output: same Scalar and the same static feature count.
template <class Prev, class Next>
concept ChainsInto = std::same_as<typename Prev::Scalar, typename Next::Scalar> &&
                     std::same_as<typename Prev::Output, typename Next::Input>;

/// Number of scalar parameters of a layer.
template <Layer L>
Index parameter_count(const L& layer) {
  Index n = 0;
  layer.for_each_parameter([&](std::string_view, const auto& value, const auto&) { n += value.size(); });
  return n;
}

/// Calls `f(layer)` on every leaf layer inside `layer` (composites offer `for_each_layer(f)` over
/// their children), in forward order; on `layer` itself when it is not a composite.
template <class L, class F>
void for_each_leaf(L& layer, F&& f) {
  if constexpr (requires { layer.for_each_layer([](auto&) {}); })
    layer.for_each_layer([&](auto& child) { for_each_leaf(child, f); });
  else
    f(layer);
}

namespace detail {

/// The hooks of forward_then / backward_then / infer_then that do nothing (the plain passes).
struct NoPrepare {
  template <class M>
  void operator()(const M&) const noexcept {}
};
struct NoEpilogue {
  template <class M>
  void operator()(const M&, Index, Index, Index, Index) const noexcept {}
};

/// The layer's set_image_size(in) if it has one; otherwise the size passes through unchanged.
template <class L>
ImageSize propagate_image_size(L& layer, ImageSize in) {
  if constexpr (requires { layer.set_image_size(in); })
    return layer.set_image_size(in);
  else
    return in;
}

/// The layer's set_sequence_length(length) if it has one (attention, and the containers holding it).
template <class L>
void propagate_sequence_length(L& layer, Index length) {
  if constexpr (requires { layer.set_sequence_length(length); }) layer.set_sequence_length(length);
}

/// The layer's set_training(training) if it has one.
template <class L>
void propagate_training(L& layer, bool training) {
  if constexpr (requires { layer.set_training(training); }) layer.set_training(training);
}

/// The layer's for_each_buffer(f, prefix) if it has one.
template <class L, class F>
void visit_buffers(L& layer, F& f, const ParameterName& prefix) {
  if constexpr (requires { layer.for_each_buffer(f, prefix); }) layer.for_each_buffer(f, prefix);
}

/// y = skip + layer(x), fused into the layer's last kernel when it offers forward_add.
template <class L, class Skip>
void forward_add(L& layer, const typename L::Input& x, typename L::Output& y, const Skip& skip) {
  if constexpr (requires { layer.forward_add(x, y, skip); }) {
    layer.forward_add(x, y, skip);
  } else {
    const auto& f = layer.forward(x);
    y.resize(f.rows(), f.cols());
    parallel_assign(y, skip + f);
  }
}

/// dL_dx = skip_grad + dL/dx of the layer, fused into its first kernel when it offers backward_add.
template <class L, class SkipGrad>
void backward_add(L& layer, const typename L::Output& dy, typename L::Input& dx, const SkipGrad& skip_grad) {
  if constexpr (requires { layer.backward_add(dy, dx, skip_grad); }) {
    layer.backward_add(dy, dx, skip_grad);
  } else {
    const auto& g = layer.backward(dy);
    dx.resize(g.rows(), g.cols());
    parallel_assign(dx, skip_grad + g);
  }
}

/// Inference twin of forward_add.
template <class L, class Skip>
void infer_add(const L& layer, const typename L::Input& x, typename L::Output& y, const Skip& skip,
               typename L::Workspace& ws) {
  if constexpr (requires { layer.infer_add(x, y, skip, ws); }) {
    layer.infer_add(x, y, skip, ws);
  } else {
    const auto& f = layer.infer(x, ws);
    y.resize(f.rows(), f.cols());
    parallel_assign(y, skip + f);
  }
}

}  // namespace detail
}  // namespace resblocks
