#pragma once
/// \file
/// \brief Residual<F, Skip>: y = skip(x) + F(x), with the add fused into F's kernels.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/identity.hpp"

#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief A residual block `y = skip(x) + body(x)`; the skip is the identity unless given
/// (e.g. `Projection` when the body changes the feature count).
///
/// The add costs no memory pass of its own: the skip initialises the accumulator of the body's
/// last GEMM (forward) and of its first layer's dL/dx GEMM (backward). A neighbouring element-wise
/// layer (the ReLU after a ResNet v1 block) runs inside those passes too (forward_then, backward_then,
/// infer_then: the HasEpilogueHooks protocol). Parameters are named `body.*` and `skip.*`.
template <class F, class Skip = Identity<typename F::Scalar, F::InFeatures>>
class Residual : public detail::VisitsParameters<Residual<F, Skip>>, public detail::VisitsBuffers<Residual<F, Skip>> {
  static_assert(Layer<F>, "resblocks::Residual: the body must satisfy resblocks::Layer");
  static_assert(Layer<Skip>, "resblocks::Residual: the skip must satisfy resblocks::Layer");
  static_assert(std::is_same_v<typename Skip::Input, typename F::Input> &&
                    std::is_same_v<typename Skip::Output, typename F::Output>,
                "resblocks::Residual: the skip must map the body's input type to its output type; "
                "when the body changes the feature count, use Residual<Body, Projection<S, In, Out>>");

 public:
  using Scalar = typename F::Scalar;
  static constexpr int InFeatures = F::InFeatures;
  static constexpr int OutFeatures = F::OutFeatures;
  using Input = typename F::Input;
  using Output = typename F::Output;
  static constexpr std::string_view name = "Residual";

  /// \brief Inference buffers of one caller.
  struct Workspace {
    typename F::Workspace body;
    typename Skip::Workspace skip;
    Output y;
  };

  Residual() requires(std::is_default_constructible_v<F>&& std::is_default_constructible_v<Skip>) { check_shapes(); }
  explicit Residual(F body) : m_body(std::move(body)) { check_shapes(); }
  Residual(F body, Skip skip) : m_body(std::move(body)), m_skip(std::move(skip)) { check_shapes(); }

  F& body() noexcept { return m_body; }
  const F& body() const noexcept { return m_body; }
  Skip& skip() noexcept { return m_skip; }
  const Skip& skip() const noexcept { return m_skip; }

  /// Names used for the body's and the skip's parameters (default `body`, `skip`; an empty name puts
  /// them directly under this block's prefix, as torchvision's `conv1` … `downsample`). Views must
  /// outlive the block (string literals do).
  /// \param body name of the body's parameters and buffers
  /// \param skip name of the skip's
  /// \returns `*this`
  Residual& set_child_names(std::string_view body, std::string_view skip) {
    m_body_name = body;
    m_skip_name = skip;
    return *this;
  }

  /// \brief Tokens per sequence for every attention layer inside (see MultiHeadAttention).
  /// \param length tokens per sequence L
  /// \throws std::invalid_argument when a layer inside rejects it (an attention layer: length < 1)
  void set_sequence_length(Index length) {
    detail::propagate_sequence_length(m_body, length);
    detail::propagate_sequence_length(m_skip, length);
  }

  /// \brief Configures body and skip for inputs of `size`; both must give the same output size.
  /// \param size the input's height and width
  /// \returns the output's height and width
  /// \throws std::invalid_argument when body and skip give different sizes (or a child's own check fails)
  ImageSize set_image_size(ImageSize size) {
    const ImageSize body = detail::propagate_image_size(m_body, size);
    const ImageSize skip = detail::propagate_image_size(m_skip, size);
    if (!(body == skip))
      throw std::invalid_argument("Residual: for " + size.str() + " images the body gives " + body.str() +
                                  " but the skip gives " + skip.str() + " (strides differ)");
    return body;
  }

  /// \brief Calls `f(body)`, then `f(skip)`.
  /// \param f callable taking the body, then the skip
  template <class Fn>
  void for_each_layer(Fn&& f) {
    f(m_body);
    f(m_skip);
  }

  void set_training(bool training) {
    detail::propagate_training(m_body, training);
    detail::propagate_training(m_skip, training);
  }

 private:
  friend detail::VisitsBuffers<Residual<F, Skip>>;
  template <class Self, class Fn>
  static void visit_buffers(Self& self, Fn& f, const ParameterName& prefix) {
    detail::visit_buffers(self.m_body, f, prefix.child(self.m_body_name));
    detail::visit_buffers(self.m_skip, f, prefix.child(self.m_skip_name));
  }

 public:
  [[nodiscard]] Index in_features() const noexcept { return m_body.in_features(); }
  [[nodiscard]] Index out_features() const noexcept { return m_body.out_features(); }

  const Output& forward(const Input& x) { return forward_then(x, detail::NoPrepare{}, detail::NoEpilogue{}); }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// forward(x), then a following element-wise layer's `epilogue(y, r0, rows, c0, cols)` on each finished
  /// block of y (skip included), inside the body's last pass (Sequential fuses `Residual, ReLU` so).
  /// \param x input batch, kept by reference until backward
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  /// \returns the output, in a buffer the block owns
  template <class Prepare, class Epilogue>
  const Output& forward_then(const Input& x, const Prepare& prepare, const Epilogue& epilogue) {
    detail::forward_add(m_body, x, m_y, m_skip.forward(x), prepare, epilogue);
    return m_y;
  }

  template <class S2>
  void forward_add(const Input& x, Output& y, const S2& skip) {
    forward_add_then(x, y, skip, detail::NoPrepare{}, detail::NoEpilogue{});
  }
  template <class S2, class Prepare, class Epilogue>
  void forward_add_then(const Input& x, Output& y, const S2& skip, const Prepare& prepare, const Epilogue& epilogue) {
    detail::forward_add(m_body, x, y, skip + m_skip.forward(x), prepare, epilogue);
  }

  const Input& backward(const Output& dL_dy) { return backward_then(dL_dy, detail::NoPrepare{}, detail::NoEpilogue{}); }

  /// The body's detail::HasBackwardSampleBlocks: its first pass runs the hooks, the skip's gradient
  /// included.
  /// \returns the body's blocks
  [[nodiscard]] detail::SampleBlocks backward_sample_blocks()
      const noexcept requires detail::HasBackwardSampleBlocks<F> {
    return m_body.backward_sample_blocks();
  }
  /// The body's detail::TakesSampleGradientSums protocol: the body gets dL/dy as it is.
  /// \param blocks the samples of dL/dy
  /// \returns true when the body takes sums summed on them
  [[nodiscard]] bool takes_sample_gradient_sums(
      detail::SampleBlocks blocks) const noexcept requires detail::TakesSampleGradientSums<F> {
    return m_body.takes_sample_gradient_sums(blocks);
  }
  void begin_sample_gradient_sums(detail::SampleBlocks blocks) requires detail::TakesSampleGradientSums<F> {
    m_body.begin_sample_gradient_sums(blocks);
  }
  void sample_gradient_sums(const Output& dL_dy, Index c0, Index n) requires detail::TakesSampleGradientSums<F> {
    m_body.sample_gradient_sums(dL_dy, c0, n);
  }
  void end_sample_gradient_sums(const Output& dL_dy) noexcept requires detail::TakesSampleGradientSums<F> {
    m_body.end_sample_gradient_sums(dL_dy);
  }

  /// backward(dL_dy), then a preceding element-wise layer's `epilogue` on each finished block of dL/dx
  /// (skip gradient included), inside the body's first pass.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \returns dL/dx, in a buffer the block owns
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    detail::backward_add(m_body, dL_dy, m_dL_dx, m_skip.backward(dL_dy), prepare, epilogue);
    return m_dL_dx;
  }

  template <class G2>
  void backward_add(const Output& dL_dy, Input& dL_dx, const G2& skip_grad) {
    backward_add_then(dL_dy, dL_dx, skip_grad, detail::NoPrepare{}, detail::NoEpilogue{});
  }
  template <class G2, class Prepare, class Epilogue>
  void backward_add_then(const Output& dL_dy, Input& dL_dx, const G2& skip_grad, const Prepare& prepare,
                         const Epilogue& epilogue) {
    detail::backward_add(m_body, dL_dy, dL_dx, skip_grad + m_skip.backward(dL_dy), prepare, epilogue);
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    return infer_then(x, ws, detail::NoPrepare{}, detail::NoEpilogue{});
  }

  /// infer(x, ws) with the hooks of forward_then.
  /// \param x input batch
  /// \param ws the caller's buffers
  /// \param prepare called as `prepare(y)` once y is sized
  /// \param epilogue called as `epilogue(y, r0, rows, c0, cols)` on each finished block of y
  /// \returns the output, in `ws.y`
  template <class Prepare, class Epilogue>
  const Output& infer_then(const Input& x, Workspace& ws, const Prepare& prepare, const Epilogue& epilogue) const {
    detail::infer_add(m_body, x, ws.y, m_skip.infer(x, ws.skip), ws.body, prepare, epilogue);
    return ws.y;
  }

  template <class S2>
  void infer_add(const Input& x, Output& y, const S2& skip, Workspace& ws) const {
    infer_add_then(x, y, skip, ws, detail::NoPrepare{}, detail::NoEpilogue{});
  }
  template <class S2, class Prepare, class Epilogue>
  void infer_add_then(const Input& x, Output& y, const S2& skip, Workspace& ws, const Prepare& prepare,
                      const Epilogue& epilogue) const {
    detail::infer_add(m_body, x, y, skip + m_skip.infer(x, ws.skip), ws.body, prepare, epilogue);
  }

  void zero_grad() {
    m_body.zero_grad();
    m_skip.zero_grad();
  }

 private:
  friend detail::VisitsParameters<Residual<F, Skip>>;
  template <class Self, class Fn>
  static void visit_parameters(Self& self, Fn& f, const ParameterName& prefix) {
    self.m_body.for_each_parameter(f, prefix.child(self.m_body_name));
    self.m_skip.for_each_parameter(f, prefix.child(self.m_skip_name));
  }

  void check_shapes() const {
    const Index in = m_body.in_features(), out = m_body.out_features();
    const Index sin = m_skip.in_features(), sout = m_skip.out_features();
    const bool skip_fits = (sin < 0 || in < 0 || sin == in) && (sout < 0 || out < 0 || sout == out);
    const bool known_change = in >= 0 && out >= 0 && in != out;
    if (!skip_fits || (known_change && (sin < 0 || sout < 0)))
      throw std::invalid_argument("Residual: the body maps " + std::to_string(in) + " to " + std::to_string(out) +
                                  " features but the skip maps " + std::to_string(sin) + " to " + std::to_string(sout) +
                                  "; use a Projection skip when the sizes differ");
  }

  F m_body;
  Skip m_skip{};
  std::string_view m_body_name = "body";
  std::string_view m_skip_name = "skip";
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
