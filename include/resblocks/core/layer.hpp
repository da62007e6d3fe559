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
/// The members above, `Scalar`, `Input`, `Output`, `InFeatures`, `OutFeatures`, `Workspace`, a
/// `static constexpr std::string_view name` (used in error messages) and
/// `for_each_parameter(f, prefix)` (containers name their children's parameters) are what every
/// container needs: a type that satisfies Layer composes in Sequential, Residual, Repeat and Highway.
///
/// Optional protocols, each a concept below; containers use them when a layer offers them and
/// otherwise fall back to the plain members:
/// - FusesSkipAdd: `forward_add` / `backward_add` / `infer_add` take the residual add into the
///   layer's own pass (see detail::forward_add); `forward_add_then` / `backward_add_then` /
///   `infer_add_then` take a neighbour's element-wise work too (FusedLayer, Sequential, Residual).
/// - HasEpilogueHooks: `forward_then` / `backward_then` / `infer_then` run a neighbour's element-wise
///   work on each finished block (Linear, Conv2d, BatchNorm2d, LayerNorm through FusedLayer; Sequential
///   and Residual pass them to the layer that writes the result).
/// - ElementWise: the `fused_*` block functions of an element-wise layer (Activation), which
///   Sequential runs inside a HasEpilogueHooks neighbour's pass.
/// - ImageLayer: `ImageSize set_image_size(ImageSize in)` configures the input's spatial size and
///   returns the output's (Conv2d, pooling; a network is configured once, and again when it changes;
///   BatchNorm2d keeps it to sum its statistics one sample per partition).
/// - SequenceLayer: `set_sequence_length(Index)` sets the tokens per sequence (attention).
/// - HasTrainingMode: `set_training(bool)` switches train/eval behaviour (BatchNorm2d: batch vs
///   running statistics).
/// - HasBuffers: `for_each_buffer(f, prefix)` calls `f(name, value)` on every non-trainable state
///   tensor (`running_mean`, `running_var` as vectors, `num_batches_tracked` as a `std::int64_t&`).
/// Composites forward each protocol to every child that offers it.

#include "resblocks/core/image_size.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <concepts>
#include <memory>
#include <string_view>
#include <type_traits>
#include <utility>

namespace resblocks {

namespace detail {
/// Stands for any callable `f(name, value, grad)` in the concepts below.
struct ParameterVisitorArchetype {
  template <class V, class G>
  void operator()(std::string_view, V&, G&) const {}
};
/// Stands for any callable `f(name, value)` over buffers.
struct BufferVisitorArchetype {
  template <class V>
  void operator()(std::string_view, V&) const {}
};

/// The hooks of forward_then / backward_then / infer_then that do nothing (the plain passes).
struct NoPrepare {
  template <class M>
  void operator()(const M&) const noexcept {}
};
struct NoEpilogue {
  template <class M>
  void operator()(const M&, Index, Index, Index, Index) const noexcept {}
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
  {layer.zero_grad()};
  { const_layer.in_features() } -> std::convertible_to<Index>;
  { const_layer.out_features() } -> std::convertible_to<Index>;
  { L::name } -> std::convertible_to<std::string_view>;
  {layer.for_each_parameter(visit)};
  {const_layer.for_each_parameter(visit)};
  {layer.for_each_parameter(visit, ParameterName{})};
  {const_layer.for_each_parameter(visit, ParameterName{})};
};

/// The residual add fused into the layer's passes: `forward_add(x, y, skip)` sets y = skip + F(x),
/// `backward_add(dL_dy, dL_dx, skip_grad)` sets dL_dx = skip_grad + dL/dx (accumulating dL/dθ as
/// backward does), `infer_add(x, y, skip, ws)` is forward_add's inference twin. `skip` may be y itself.
template <class L>
concept FusesSkipAdd = Layer<L> &&
    requires(L& layer, const L& const_layer, const typename L::Input& x, typename L::Output& y,
             const typename L::Output& skip, typename L::Input& dx, const typename L::Input& skip_grad,
             typename L::Workspace& ws) {
  layer.forward_add(x, y, skip);
  layer.backward_add(skip, dx, skip_grad);
  const_layer.infer_add(x, y, skip, ws);
};

/// Epilogue hooks: `forward_then(x, prepare, epilogue)` is forward(x) that calls `prepare(y)` once
/// y is sized, then `epilogue(y, r0, rows, c0, cols)` on each finished block of y while it is in
/// cache; `backward_then(dL_dy, prepare, epilogue)` and `infer_then(x, ws, prepare, epilogue)` alike
/// on dL/dx and on the inference output.
template <class L>
concept HasEpilogueHooks = Layer<L> && requires(L& layer, const L& const_layer, const typename L::Input& x,
                                                const typename L::Output& dy, typename L::Workspace& ws) {
  { layer.forward_then(x, detail::NoPrepare{}, detail::NoEpilogue{}) } -> std::same_as<const typename L::Output&>;
  { layer.backward_then(dy, detail::NoPrepare{}, detail::NoEpilogue{}) } -> std::same_as<const typename L::Input&>;
  {
    const_layer.infer_then(x, ws, detail::NoPrepare{}, detail::NoEpilogue{})
    } -> std::same_as<const typename L::Output&>;
};

/// An element-wise layer whose passes a HasEpilogueHooks neighbour runs block by block:
/// `fused_forward_prepare(x)` then `fused_forward_block(x, r0, rows, c0, cols)` per block, result in
/// `fused_output()`; `fused_backward_prepare` / `fused_backward_block` / `fused_grad()`;
/// `fused_infer_prepare(x, ws)` / `fused_infer_block(x, ws, r0, rows, c0, cols)` with the result in ws.y.
/// The x of fused_forward_prepare and the dL_dy of fused_backward_prepare are the neighbour's own
/// buffers, which the layer may overwrite with its result (Activation does for ReLU: in place).
template <class L>
concept ElementWise = Layer<L> && std::same_as<typename L::Input, typename L::Output> &&
    requires(L& layer, const L& const_layer, const typename L::Input& x, typename L::Workspace& ws, Index i) {
  layer.fused_forward_prepare(x);
  layer.fused_forward_block(x, i, i, i, i);
  { layer.fused_output() } -> std::same_as<const typename L::Output&>;
  layer.fused_backward_prepare(x);
  layer.fused_backward_block(x, i, i, i, i);
  { layer.fused_grad() } -> std::same_as<const typename L::Input&>;
  const_layer.fused_infer_prepare(x, ws);
  const_layer.fused_infer_block(x, ws, i, i, i, i);
};

namespace detail {
/// The prepare and epilogue hooks of a neighbour's `backward_then` that run the ElementWise layer
/// `act`'s backward on each finished block of the neighbour's dL/dx (its result: act.fused_grad()).
template <class Act>
auto fused_backward_hooks(Act& act) {
  return std::pair{[&act](const auto& d) { act.fused_backward_prepare(d); },
                   [&act](const auto& d, Index r0, Index rows, Index c0, Index cols) {
                     act.fused_backward_block(d, r0, rows, c0, cols);
                   }};
}

/// A layer whose backward_then epilogue runs on whole samples of its dL/dx, one or more per block
/// (Conv2d's direct and scatter passes, and a container whose first layer's pass runs the hooks),
/// which it reports: columns per sample and samples, empty when the blocks are not whole samples.
template <class L>
concept HasBackwardSampleBlocks = requires(const L& layer) {
  { layer.backward_sample_blocks() } -> std::same_as<SampleBlocks>;
};

/// A layer (BatchNorm2d, or a container ending in one) whose backward can take its per-channel sums
/// summed sample by sample, on its dL/dy, by a later layer's pass.
template <class L>
concept TakesSampleGradientSums = requires(const L& const_layer, L& layer, const typename L::Output& g,
                                           SampleBlocks blocks) {
  { const_layer.takes_sample_gradient_sums(blocks) } -> std::same_as<bool>;
  layer.begin_sample_gradient_sums(blocks);
  layer.sample_gradient_sums(g, Index{}, Index{});
  layer.end_sample_gradient_sums(g);
};

/// A layer whose backward epilogue runs on whole samples of its dL/dx (HasBackwardSampleBlocks), after
/// an element-wise layer after a normalisation that can take its backward sums summed on those
/// samples (TakesSampleGradientSums): the sums run in the former's pass (backward_summing).
template <class P, class N>
concept SampleGradientSumsPair = HasBackwardSampleBlocks<P> && TakesSampleGradientSums<N>;

/// Layer P's backward pass can sum the backward sums of the layer before B's last layer
/// (B::before_last_layer(): a ResNet v1 block's residual, ending in BatchNorm2d) on the blocks of that
/// last layer's dL/dx (backward_summing): Repeat between its blocks, Sequential after a Repeat.
template <class P, class B>
concept SumsBeforeLastLayer = requires(B& block) {
  block.before_last_layer();
}
&&SampleGradientSumsPair<P, std::remove_cvref_t<decltype(std::declval<B&>().before_last_layer())>>;

/// backward_summing's epilogue: act's backward on each block of the pass's dL/dx, then norm's sums on
/// act's dL/dx there. A named type, one per (act, norm) pair, not a lambda per call site: the layers the
/// pass runs through are then compiled once for every call site that sums the same pair (a ResNet's
/// stage boundaries, a Repeat's blocks).
template <class Act, class Norm>
struct SummingEpilogue {
  Act& act;
  Norm& norm;
  template <class D>
  void operator()(const D& d, Index r0, Index rows, Index c0, Index cols) const {
    act.fused_backward_block(d, r0, rows, c0, cols);
    norm.sample_gradient_sums(act.fused_grad(), c0, cols);
  }
};

/// The epilogue of a pass whose dL/dx norm sums its backward sums on (norm_summing): a named type, as
/// SummingEpilogue.
template <class Norm>
struct NormSumsEpilogue {
  Norm& norm;
  template <class D>
  void operator()(const D& d, Index, Index, Index c0, Index cols) const {
    norm.sample_gradient_sums(d, c0, cols);
  }
};

/// Runs `run(prepare, epilogue)`, a layer's backward pass that returns its dL/dx, with no hooks, or,
/// when `norm` takes sums on `blocks`, with the hook that sums norm's backward sums on each block of
/// that dL/dx while it is in cache (a convolution that applied the ReLU after norm itself: NormInput).
/// \returns the pass's dL/dx
template <class Norm, class Run>
const auto& norm_summing(SampleBlocks blocks, Norm& norm, const Run& run) {
  if (!norm.takes_sample_gradient_sums(blocks)) return run(NoPrepare{}, NoEpilogue{});
  norm.begin_sample_gradient_sums(blocks);
  const auto& dL_dx = run(NoPrepare{}, NormSumsEpilogue<Norm>{norm});
  norm.end_sample_gradient_sums(dL_dx);
  return dL_dx;
}

/// Runs `run(prepare, epilogue)`, a layer's backward pass with the hooks that run the element-wise
/// layer `act`'s backward on each block of its dL/dx (fused_backward_hooks); when `norm` (the layer
/// before act) takes sums on `blocks`, the same pass then sums norm's backward sums on each block of
/// act's dL/dx while it is in cache, instead of norm summing them in a pass of its own.
/// \returns act's dL/dx
template <class Act, class Norm, class Run>
const auto& backward_summing(SampleBlocks blocks, Act& act, Norm& norm, const Run& run) {
  const auto hooks = fused_backward_hooks(act);
  if (!norm.takes_sample_gradient_sums(blocks)) {
    run(hooks.first, hooks.second);
    return act.fused_grad();
  }
  norm.begin_sample_gradient_sums(blocks);
  run(hooks.first, SummingEpilogue<Act, Norm>{act, norm});
  norm.end_sample_gradient_sums(act.fused_grad());
  return act.fused_grad();
}

/// A layer that ends in an element-wise layer and runs its backward without it (Sequential, and Repeat
/// of such blocks): its container runs that last layer inside the next layer's backward pass, on the
/// blocks of the next layer's dL/dx while they are in cache, instead of in a pass of its own.
template <class B>
concept SplitsLastLayer = requires(B& block, const typename B::Output& g) {
  requires resblocks::ElementWise<std::remove_cvref_t<decltype(block.last_layer())>>;
  { block.backward_below_last(g) } -> std::same_as<const typename B::Input&>;
  { block.backward_then(g, NoPrepare{}, NoEpilogue{}) } -> std::same_as<const typename B::Input&>;
  { block.backward_below_last(g, NoPrepare{}, NoEpilogue{}) } -> std::same_as<const typename B::Input&>;
};

/// Whether `block` (SplitsLastLayer) has a last layer now: false for a Repeat without blocks.
template <class B>
bool can_split_last_layer(const B& block) noexcept {
  if constexpr (requires { block.splits_last_layer(); })
    return block.splits_last_layer();
  else
    return true;
}
}  // namespace detail

/// A layer with a spatial input size (Conv2d, pooling, Flatten, BatchNorm2d).
template <class L>
concept ImageLayer = requires(L& layer, ImageSize size) {
  { layer.set_image_size(size) } -> std::same_as<ImageSize>;
};

/// A layer with a sequence length (attention and the containers holding it).
template <class L>
concept SequenceLayer = requires(L& layer, Index length) {
  layer.set_sequence_length(length);
};

/// A layer with a training and an evaluation mode.
template <class L>
concept HasTrainingMode = requires(L& layer, bool training) {
  layer.set_training(training);
};

/// A layer with non-trainable state (buffers).
template <class L>
concept HasBuffers = requires(L& layer, detail::BufferVisitorArchetype& f, const ParameterName& prefix) {
  layer.for_each_buffer(f, prefix);
};

/// `Next` can consume `Prev`'s output: same Scalar and the same static feature count.
template <class Prev, class Next>
concept ChainsInto = std::same_as<typename Prev::Scalar, typename Next::Scalar> &&
    std::same_as<typename Prev::Output, typename Next::Input>;

/// \brief Number of scalar parameters of a layer.
/// \param layer the layer or network
/// \returns the total size of the tensors for_each_parameter visits
template <Layer L>
Index parameter_count(const L& layer) {
  Index n = 0;
  layer.for_each_parameter([&](std::string_view, const auto& value, const auto&) { n += value.size(); });
  return n;
}

/// Calls `f(layer)` on every leaf layer inside `layer` (composites offer `for_each_layer(f)` over
/// their children), in forward order; on `layer` itself when it is not a composite.
/// \param layer the layer or network
/// \param f callable taking each leaf layer (a generic lambda)
template <class L, class F>
void for_each_leaf(L& layer, F&& f) {
  if constexpr (requires { layer.for_each_layer([](auto&) {}); })
    layer.for_each_layer([&](auto& child) { for_each_leaf(child, f); });
  else
    f(layer);
}

namespace detail {

/// The layer's set_image_size(in) if it has one; otherwise the size passes through unchanged.
template <class L>
ImageSize propagate_image_size(L& layer, ImageSize in) {
  if constexpr (ImageLayer<L>)
    return layer.set_image_size(in);
  else
    return in;
}

/// The layer's set_sequence_length(length) if it has one (attention, and the containers holding it).
template <class L>
void propagate_sequence_length(L& layer, Index length) {
  if constexpr (SequenceLayer<L>) layer.set_sequence_length(length);
}

/// The layer's set_training(training) if it has one.
template <class L>
void propagate_training(L& layer, bool training) {
  if constexpr (HasTrainingMode<L>) layer.set_training(training);
}

/// The layer's for_each_buffer(f, prefix) if it has one.
template <class L, class F>
void visit_buffers(L& layer, F& f, const ParameterName& prefix) {
  if constexpr (requires { layer.for_each_buffer(f, prefix); }) layer.for_each_buffer(f, prefix);
}

/// `prepare(m)`, then `epilogue(m, r0, rows, c0, cols)` over all of m by column blocks, in parallel: a
/// neighbour's element-wise work after a pass that could not run it inside (no *_add_then).
template <class M, class Prepare, class Epilogue>
void run_epilogue(const M& m, const Prepare& prepare, const Epilogue& epilogue) {
  prepare(m);
  if constexpr (!std::is_same_v<Epilogue, NoEpilogue>)
    parallel_for(m.cols(), static_cast<double>(m.rows()),
                 [&](Index c0, Index c1) { epilogue(m, 0, m.rows(), c0, c1 - c0); });
}

/// run_epilogue on dx, the dL/dx a backward returned for the dL/dy `dy`; when dx is dy itself (a layer
/// that passes its gradient through, or no layer at all), on a copy of it in `own` instead: the hooks
/// may write into their buffer (an in-place activation), and dy belongs to the caller. Returns the
/// buffer they ran on.
template <class M, class G, class Prepare, class Epilogue>
const M& run_epilogue_owned(const M& dx, const G& dy, M& own, const Prepare& prepare, const Epilogue& epilogue) {
  const M* target = &dx;
  if (static_cast<const void*>(&dx) == static_cast<const void*>(&dy)) {
    own.resize(dx.rows(), dx.cols());
    parallel_assign(own, dx);
    target = &own;
  }
  run_epilogue(*target, prepare, epilogue);
  return *target;
}

/// \brief A type-erased, non-owning reference to a pass's hook `f(d, args...)` on a matrix d of type M.
/// A container (Repeat) hands its layers these instead of its callers' hook types, so the layers are
/// compiled once for all of its callers (a ResNet's stem and each stage boundary give a stage other
/// hooks). The referenced hook must outlive it.
template <class M, class... Args>
class ErasedHook {
 public:
  template <class F>
  requires(!std::is_same_v<F, ErasedHook>) explicit ErasedHook(const F& f) noexcept
      : m_object(std::addressof(f)),
        m_call([](const void* object, const M& d, Args... args) { (*static_cast<const F*>(object))(d, args...); }) {}
  /// Only on the matrix itself: a conversion would hand the hook a temporary, and in-place hooks
  /// (ReLU) write over their argument's buffer.
  template <class D>
  void operator()(const D& d, Args... args) const {
    static_assert(std::is_same_v<D, M>, "resblocks: an erased hook takes the pass's matrix itself");
    m_call(m_object, d, args...);
  }

 private:
  const void* m_object;
  void (*m_call)(const void*, const M&, Args...);
};
/// A pass's `prepare(d)` hook, erased.
template <class M>
using ErasedPrepare = ErasedHook<M>;
/// A pass's `epilogue(d, r0, rows, c0, cols)` hook, erased.
template <class M>
using ErasedEpilogue = ErasedHook<M, Index, Index, Index, Index>;

/// Whether a pass's prepare and epilogue hooks do anything (are not NoPrepare and NoEpilogue).
template <class Prepare, class Epilogue>
inline constexpr bool has_hooks = !(std::is_same_v<Prepare, NoPrepare> && std::is_same_v<Epilogue, NoEpilogue>);

/// layer.backward(dy) with the hooks on its dL/dx: inside the layer's pass when it offers
/// backward_then, else after it (run_epilogue_owned: on a copy in `own` when the layer passes dy through).
template <class L, class G, class M, class Prepare, class Epilogue>
const typename L::Input& backward_with_hooks(L& layer, const G& dy, M& own, const Prepare& prepare,
                                             const Epilogue& epilogue) {
  if constexpr (!has_hooks<Prepare, Epilogue>)
    return layer.backward(dy);
  else if constexpr (requires { layer.backward_then(dy, prepare, epilogue); })
    return layer.backward_then(dy, prepare, epilogue);
  else
    return run_epilogue_owned(layer.backward(dy), dy, own, prepare, epilogue);
}

/// y = skip + layer(x), fused into the layer's last kernel when it offers forward_add; with hooks,
/// `prepare(y)` once y is sized and `epilogue(y, r0, rows, c0, cols)` on its finished blocks, inside the
/// pass when the layer offers forward_add_then (FusedLayer, Sequential, Residual), else after it.
template <class L, class Skip, class Prepare = NoPrepare, class Epilogue = NoEpilogue>
void forward_add(L& layer, const typename L::Input& x, typename L::Output& y, const Skip& skip,
                 const Prepare& prepare = {}, const Epilogue& epilogue = {}) {
  if constexpr (requires { layer.forward_add_then(x, y, skip, prepare, epilogue); }) {
    layer.forward_add_then(x, y, skip, prepare, epilogue);
  } else {
    if constexpr (requires { layer.forward_add(x, y, skip); }) {
      layer.forward_add(x, y, skip);
    } else {
      const auto& f = layer.forward(x);
      y.resize(f.rows(), f.cols());
      parallel_assign(y, skip + f);
    }
    run_epilogue(std::as_const(y), prepare, epilogue);
  }
}

/// dL_dx = skip_grad + dL/dx of the layer, fused into its first kernel when it offers backward_add;
/// the hooks as forward_add's, on dL_dx (backward_add_then).
template <class L, class SkipGrad, class Prepare = NoPrepare, class Epilogue = NoEpilogue>
void backward_add(L& layer, const typename L::Output& dy, typename L::Input& dx, const SkipGrad& skip_grad,
                  const Prepare& prepare = {}, const Epilogue& epilogue = {}) {
  if constexpr (requires { layer.backward_add_then(dy, dx, skip_grad, prepare, epilogue); }) {
    layer.backward_add_then(dy, dx, skip_grad, prepare, epilogue);
  } else {
    if constexpr (requires { layer.backward_add(dy, dx, skip_grad); }) {
      layer.backward_add(dy, dx, skip_grad);
    } else {
      const auto& g = layer.backward(dy);
      dx.resize(g.rows(), g.cols());
      parallel_assign(dx, skip_grad + g);
    }
    run_epilogue(std::as_const(dx), prepare, epilogue);
  }
}

/// Inference twin of forward_add (infer_add_then).
template <class L, class Skip, class Prepare = NoPrepare, class Epilogue = NoEpilogue>
void infer_add(const L& layer, const typename L::Input& x, typename L::Output& y, const Skip& skip,
               typename L::Workspace& ws, const Prepare& prepare = {}, const Epilogue& epilogue = {}) {
  if constexpr (requires { layer.infer_add_then(x, y, skip, ws, prepare, epilogue); }) {
    layer.infer_add_then(x, y, skip, ws, prepare, epilogue);
  } else {
    if constexpr (requires { layer.infer_add(x, y, skip, ws); }) {
      layer.infer_add(x, y, skip, ws);
    } else {
      const auto& f = layer.infer(x, ws);
      y.resize(f.rows(), f.cols());
      parallel_assign(y, skip + f);
    }
    run_epilogue(std::as_const(y), prepare, epilogue);
  }
}

}  // namespace detail
}  // namespace resblocks
