#pragma once
/// \file
/// \brief FusedLayer: the twelve entry points of a layer whose passes can take a skip and an epilogue,
/// written once over three kernels of the derived layer.

#include "resblocks/core/block_fn.hpp"
#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief The "no skip" of forward_add / backward_add / infer_add: `layer.forward_add(x, y, NoSkip{})`
/// writes layer(x) into a buffer of the caller's (y) instead of the layer's own.
struct NoSkip {};

namespace detail {

/// \brief The part of a fused layer's Workspace that FusedLayer uses: the output, and room for a skip
/// given as an expression (evaluated once before the kernel reads it).
template <class S, int Out>
struct FusedWorkspace {
  Batch<S, Out> y;
  Batch<S, Out> skip;
};

/// The skip as a plain batch the kernels read through a pointer: `skip` itself when it is one, else
/// its value evaluated into `scratch` (a Residual inside a Residual hands down a sum of two skips).
template <class Plain, class Skip>
const Plain* plain_skip(const Skip& skip, Plain& scratch) {
  if constexpr (std::is_same_v<Skip, NoSkip>) {
    return nullptr;
  } else if constexpr (std::is_same_v<Skip, Plain>) {
    return &skip;
  } else {
    scratch.resize(skip.rows(), skip.cols());
    parallel_assign(scratch, skip);
    return &scratch;
  }
}

/// The epilogue `e(m, r0, rows, c0, cols)` bound to the matrix `m` it reads, as a kernel's BlockFn hook.
template <class M, class E>
auto bind_epilogue(const M& m, const E& e) {
  return [&m, &e](Index r0, Index rows, Index c0, Index cols) { e(m, r0, rows, c0, cols); };
}

}  // namespace detail

/// \brief Base of the layers that fuse a skip add and a neighbour's element-wise work into their passes
/// (Linear, Conv2d, BatchNorm2d, LayerNorm): it provides `forward`, `forward_then`, `forward_add`,
/// `backward`, `backward_then`, `backward_add`, `infer`, `infer_then` and `infer_add`, and the
/// `*_add_then` passes with both (see the FusesSkipAdd and HasEpilogueHooks concepts) from three
/// kernels of `Derived`:
///
/// - `Index forward_begin(const Input& x)`: checks x, prepares the pass (statistics, weight order);
///   returns the output's column count. FusedLayer then caches x (cached_input()).
///   `void forward_kernel(const Input& x, Output& y, const Output* skip, BlockFn epilogue)`:
///   y (sized) = skip + layer(x); skip is null for none, and may be y itself; `epilogue` runs on each
///   finished block of y.
/// - `Index backward_begin(const Output& dL_dy)`: checks dL_dy against the cached input; returns dL/dx's
///   column count. `void backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
///   BlockFn epilogue)`: dL_dx (sized) = skip_grad + dL/dx, adds dL/dθ.
/// - `Index infer_begin(const Input& x, Workspace& ws) const` and `void infer_kernel(const Input& x,
///   Output& y, const Output* skip, BlockFn epilogue, Workspace& ws) const`: the forward's twins
///   that touch only `ws` (whose type derives from detail::FusedWorkspace).
///
/// The kernels are ordinary (non-template) member functions: each is compiled once per layer type,
/// whatever skips and epilogues the containers around it pass (and once for all programs in the
/// compiled-kernels mode, see resblocks/compiled_kernels.hpp).
template <class Derived, class S, int In, int Out>
class FusedLayer {
 public:
  using Scalar = S;
  static constexpr int InFeatures = In;
  static constexpr int OutFeatures = Out;
  using Input = Batch<S, In>;
  using Output = Batch<S, Out>;

  /// \brief Training forward pass (see the Layer concept); caches a reference to x.
  /// \param x input batch, kept by reference until backward
  /// \returns the output, in a buffer the layer owns
  /// \throws std::invalid_argument when x does not fit the layer
  const Output& forward(const Input& x) {
    run_forward(x, m_y, nullptr, detail::NoPrepare{}, detail::NoEpilogue{});
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// forward(x), then `epilogue(y, r0, rows, c0, cols)` on each finished block of y while it is in
  /// cache (Sequential applies a following activation there); `prepare(y)` runs once, after y is sized.
  /// \param x input batch, kept by reference until backward
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  /// \returns the output, in a buffer the layer owns
  /// \throws std::invalid_argument when x does not fit the layer
  template <class Prepare, class Epilogue>
  const Output& forward_then(const Input& x, const Prepare& prepare, const Epilogue& epilogue) {
    run_forward(x, m_y, nullptr, prepare, epilogue);
    return m_y;
  }

  /// \brief y = skip + layer(x) in the layer's own pass (the residual add costs no pass of its own).
  /// \param x input batch, kept by reference until backward
  /// \param y output, resized by the call
  /// \param skip added to the result: a batch or an expression of the output's shape (may be `y` itself), or
  ///   NoSkip
  /// \throws std::invalid_argument when x does not fit the layer or skip has another shape than the output
  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    run_forward(x, y, detail::plain_skip(skip, m_skip), detail::NoPrepare{}, detail::NoEpilogue{});
  }

  /// \brief forward_add(x, y, skip) with the hooks of forward_then (on blocks of y, skip included).
  /// \param x input batch, kept by reference until backward
  /// \param y output, resized by the call
  /// \param skip added to the result (see forward_add), or NoSkip
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  /// \throws std::invalid_argument when x does not fit the layer or skip has another shape than the output
  template <class Skip, class Prepare, class Epilogue>
  void forward_add_then(const Input& x, Output& y, const Skip& skip, const Prepare& prepare, const Epilogue& epilogue) {
    run_forward(x, y, detail::plain_skip(skip, m_skip), prepare, epilogue);
  }

  /// \brief Backward pass: returns dL/dx and adds dL/dθ to the parameter gradients.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \returns dL/dx, in a buffer the layer owns
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  const Input& backward(const Output& dL_dy) {
    run_backward(dL_dy, m_dL_dx, nullptr, detail::NoPrepare{}, detail::NoEpilogue{});
    return m_dL_dx;
  }

  /// backward(dL_dy), then `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// (Sequential applies a preceding activation's backward there); `prepare(dL_dx)` runs first.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \returns dL/dx, in a buffer the layer owns
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    run_backward(dL_dy, m_dL_dx, nullptr, prepare, epilogue);
    return m_dL_dx;
  }

  /// \brief dL_dx = skip_grad + dL/dx in the layer's own pass.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param dL_dx receives skip_grad + dL/dx, resized by the call
  /// \param skip_grad added to dL/dx: a batch or an expression of the input's shape, or NoSkip
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's or skip_grad's not the input's
  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    run_backward(dL_dy, dL_dx, detail::plain_skip(skip_grad, m_skip_grad), detail::NoPrepare{}, detail::NoEpilogue{});
  }

  /// \brief backward_add(dL_dy, dL_dx, skip_grad) with the hooks of backward_then (on blocks of dL_dx).
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param dL_dx receives skip_grad + dL/dx, resized by the call
  /// \param skip_grad added to dL/dx (see backward_add), or NoSkip
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's or skip_grad's not the input's
  template <class SkipGrad, class Prepare, class Epilogue>
  void backward_add_then(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad, const Prepare& prepare,
                         const Epilogue& epilogue) {
    run_backward(dL_dy, dL_dx, detail::plain_skip(skip_grad, m_skip_grad), prepare, epilogue);
  }

  /// Inference: the forward's result (in the current training/evaluation mode) into ws.y, touching
  /// no member state (several threads may run one layer, each with its own workspace).
  /// \param x input batch
  /// \param ws the caller's buffers
  /// \returns the output, in `ws.y`
  /// \throws std::invalid_argument when x does not fit the layer
  template <class Workspace>
  const Output& infer(const Input& x, Workspace& ws) const {
    run_infer(x, ws.y, nullptr, ws, detail::NoPrepare{}, detail::NoEpilogue{});
    return ws.y;
  }

  /// \brief infer(x, ws) with the hooks of forward_then.
  /// \param x input batch
  /// \param ws the caller's buffers
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  /// \returns the output, in `ws.y`
  /// \throws std::invalid_argument when x does not fit the layer
  template <class Workspace, class Prepare, class Epilogue>
  const Output& infer_then(const Input& x, Workspace& ws, const Prepare& prepare, const Epilogue& epilogue) const {
    run_infer(x, ws.y, nullptr, ws, prepare, epilogue);
    return ws.y;
  }

  /// \brief y = skip + layer(x), inference.
  /// \param x input batch
  /// \param y output, resized by the call
  /// \param skip added to the result: a batch or an expression of the output's shape (may be `y` itself), or
  ///   NoSkip
  /// \param ws the caller's buffers
  /// \throws std::invalid_argument when x does not fit the layer or skip has another shape than the output
  template <class Skip, class Workspace>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace& ws) const {
    run_infer(x, y, detail::plain_skip(skip, ws.skip), ws, detail::NoPrepare{}, detail::NoEpilogue{});
  }

  /// \brief infer_add(x, y, skip, ws) with the hooks of infer_then (on blocks of y).
  /// \param x input batch
  /// \param y output, resized by the call
  /// \param skip added to the result (see infer_add), or NoSkip
  /// \param ws the caller's buffers
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  /// \throws std::invalid_argument when x does not fit the layer or skip has another shape than the output
  template <class Skip, class Workspace, class Prepare, class Epilogue>
  void infer_add_then(const Input& x, Output& y, const Skip& skip, Workspace& ws, const Prepare& prepare,
                      const Epilogue& epilogue) const {
    run_infer(x, y, detail::plain_skip(skip, ws.skip), ws, prepare, epilogue);
  }

 protected:
  FusedLayer() = default;

  /// \brief The last forward's input; throws std::logic_error when no forward ran.
  /// \returns the input of the last forward
  /// \throws std::logic_error when no forward ran
  const Input& cached_input() const { return m_x.get(Derived::name); }
  /// \brief The last forward's input, or null when no forward ran.
  /// \returns the input of the last forward, or null
  const Input* cached_input_if() const noexcept { return m_x.get_if(); }
  /// \brief The training forward's checks and preparation (forward_begin) with x cached, and no kernel: a
  /// layer whose output the next layer computes as it reads it (BatchNorm2d::forward_deferred).
  /// \param x input batch, kept by reference until backward
  /// \returns the output's column count
  Index forward_deferred_begin(const Input& x) {
    const Index cols = self().forward_begin(x);
    m_x = &x;
    return cols;
  }
  /// \brief The training pass's own output and input-gradient buffers.
  /// \returns the output buffer
  Output& own_output() noexcept { return m_y; }
  Input& own_input_gradient() noexcept { return m_dL_dx; }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }

  /// A skip must have the output's shape (checked before any work).
  template <class M>
  static void check_skip(const M* skip, Index rows, Index cols, const char* what) {
    if (skip && (skip->rows() != rows || skip->cols() != cols))
      throw std::invalid_argument(std::string(Derived::name) + ": the " + what + " is " +
                                  detail::shape_string(skip->rows(), skip->cols()) + ", expected " +
                                  detail::shape_string(rows, cols));
  }

  template <class Prepare, class Epilogue>
  void run_forward(const Input& x, Output& y, const Output* skip, const Prepare& prepare, const Epilogue& epilogue) {
    const Index cols = self().forward_begin(x);
    check_skip(skip, self().out_features(), cols, "skip");
    m_x = &x;
    y.resize(self().out_features(), cols);
    prepare(std::as_const(y));
    if constexpr (std::is_same_v<Epilogue, detail::NoEpilogue>) {
      self().forward_kernel(x, y, skip, detail::BlockFn{});
    } else {
      const auto then = detail::bind_epilogue(std::as_const(y), epilogue);
      self().forward_kernel(x, y, skip, then);
    }
  }

  template <class Prepare, class Epilogue>
  void run_backward(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, const Prepare& prepare,
                    const Epilogue& epilogue) {
    const Index cols = self().backward_begin(dL_dy);
    check_skip(skip_grad, self().in_features(), cols, "skip gradient");
    dL_dx.resize(self().in_features(), cols);
    prepare(std::as_const(dL_dx));
    if constexpr (std::is_same_v<Epilogue, detail::NoEpilogue>) {
      self().backward_kernel(dL_dy, dL_dx, skip_grad, detail::BlockFn{});
    } else {
      const auto then = detail::bind_epilogue(std::as_const(dL_dx), epilogue);
      self().backward_kernel(dL_dy, dL_dx, skip_grad, then);
    }
  }

  template <class Workspace, class Prepare, class Epilogue>
  void run_infer(const Input& x, Output& y, const Output* skip, Workspace& ws, const Prepare& prepare,
                 const Epilogue& epilogue) const {
    const Index cols = self().infer_begin(x, ws);
    check_skip(skip, self().out_features(), cols, "skip");
    y.resize(self().out_features(), cols);
    prepare(std::as_const(y));
    if constexpr (std::is_same_v<Epilogue, detail::NoEpilogue>) {
      self().infer_kernel(x, y, skip, detail::BlockFn{}, ws);
    } else {
      const auto then = detail::bind_epilogue(std::as_const(y), epilogue);
      self().infer_kernel(x, y, skip, then, ws);
    }
  }

  CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
  Output m_skip;      ///< a skip expression, evaluated (nested residuals only)
  Input m_skip_grad;  ///< a skip gradient expression, evaluated
};

}  // namespace resblocks
