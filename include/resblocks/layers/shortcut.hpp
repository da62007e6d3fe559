#pragma once
/// \file
/// \brief Shortcut: the skip path of a ResNet block (identity, zero-padding, projection, or none).

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// How a ResNet block's skip maps its input to the block's output shape.
enum class ShortcutKind {
  identity,         ///< y = x (same channels, stride 1)
  zero_pad,         ///< He et al. option A: x subsampled by the stride, extra channels zero (no parameters)
  projection,       ///< He et al. option B: 1×1 convolution with stride, then BatchNorm2d (`0.weight`, `1.*`)
  projection_conv,  ///< 1×1 convolution with stride only (pre-activation blocks: the next block normalises)
  none,             ///< no skip at all, y = 0: the block's body alone (the *plain* networks of He et al.)
};

/// \brief The skip of a ResNet block, chosen at run time so that blocks with and without a
/// projection share one type (and a stage is one `Repeat`). Channels in → out, stride s.
template <class S = float>
class Shortcut : public detail::VisitsParameters<Shortcut<S>>, public detail::VisitsBuffers<Shortcut<S>> {
 public:
  using Scalar = S;
  static constexpr int InFeatures = Dynamic;
  static constexpr int OutFeatures = Dynamic;
  using Input = Batch<S, Dynamic>;
  using Output = Batch<S, Dynamic>;
  static constexpr std::string_view name = "Shortcut";

  struct Workspace {
    typename Conv2d<S>::Workspace conv;
    typename BatchNorm2d<S>::Workspace bn;
    Output y;
  };

  Shortcut(Index in_channels, Index out_channels, Index stride = 1, ShortcutKind kind = ShortcutKind::identity)
      : m_kind(kind), m_in(in_channels), m_out(out_channels), m_stride(stride) {
    detail::check_features(name, "in_channels", Dynamic, in_channels);
    detail::check_features(name, "out_channels", Dynamic, out_channels);
    if (stride < 1) throw std::invalid_argument("Shortcut: stride must be >= 1, got " + std::to_string(stride));
    const std::string shape = std::to_string(in_channels) + " -> " + std::to_string(out_channels) +
                              " channels, stride " + std::to_string(stride);
    if (kind == ShortcutKind::identity && (in_channels != out_channels || stride != 1))
      throw std::invalid_argument("Shortcut: an identity skip cannot map " + shape +
                                  "; use ShortcutKind::projection or zero_pad");
    if (kind == ShortcutKind::zero_pad && out_channels < in_channels)
      throw std::invalid_argument("Shortcut: zero-padding cannot reduce channels (" + shape + ")");
    if (kind == ShortcutKind::projection || kind == ShortcutKind::projection_conv)
      m_conv.emplace(in_channels, out_channels, 1, Conv2dOptions{.stride = stride, .bias = false});
    if (kind == ShortcutKind::projection) m_bn.emplace(out_channels);
  }

  [[nodiscard]] ShortcutKind kind() const noexcept { return m_kind; }
  [[nodiscard]] Index in_features() const noexcept { return m_in; }
  [[nodiscard]] Index out_features() const noexcept { return m_out; }
  [[nodiscard]] Index stride() const noexcept { return m_stride; }
  /// \brief The projection's convolution and batch norm (present for the projection kinds).
  /// \returns the convolution, empty for identity and zero_pad (batch_norm() returns the batch norm)
  std::optional<Conv2d<S>>& conv() noexcept { return m_conv; }
  std::optional<BatchNorm2d<S>>& batch_norm() noexcept { return m_bn; }

  ImageSize set_image_size(ImageSize in) {
    m_in_size = in;
    m_out_size = {(in.height - 1) / m_stride + 1, (in.width - 1) / m_stride + 1};
    if (m_conv) m_conv->set_image_size(in);
    return m_out_size;
  }

  /// \brief Calls `f` on the projection's convolution and batch norm (when present).
  /// \param f callable taking a Conv2d, then a BatchNorm2d (a generic lambda)
  template <class F>
  void for_each_layer(F&& f) {
    if (m_conv) f(*m_conv);
    if (m_bn) f(*m_bn);
  }

  void set_training(bool training) {
    if (m_bn) m_bn->set_training(training);
  }

  const Output& forward(const Input& x) {
    detail::check_input_features(name, m_in, x);
    m_cols = x.cols();
    switch (m_kind) {
      case ShortcutKind::identity:
        return x;
      case ShortcutKind::projection:
        return m_bn->forward(m_conv->forward(x));
      case ShortcutKind::projection_conv:
        return m_conv->forward(x);
      default:
        compute(x, m_y);
        return m_y;
    }
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    switch (m_kind) {
      case ShortcutKind::identity:
        return dL_dy;
      case ShortcutKind::projection:
        return m_conv->backward(m_bn->backward(dL_dy));
      case ShortcutKind::projection_conv:
        return m_conv->backward(dL_dy);
      default:
        break;
    }
    if (m_cols < 0) detail::check_forward_done(name, false);
    const Index n = m_cols / m_in_size.area();
    detail::check_output_gradient(name, m_out, n * m_out_size.area(), dL_dy);
    m_dL_dx.resize(m_in, m_cols);
    detail::parallel_assign(m_dL_dx, Input::Zero(m_in, m_cols));
    if (m_kind == ShortcutKind::zero_pad)  // dL/dx: the first m_in rows of dL/dy at the sampled pixels
      for_each_sample(
          n, [&](Index column_in, Index column_out) { m_dL_dx.col(column_in) = dL_dy.col(column_out).head(m_in); });
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    detail::check_input_features(name, m_in, x);
    switch (m_kind) {
      case ShortcutKind::identity:
        return x;
      case ShortcutKind::projection:
        return m_bn->infer(m_conv->infer(x, ws.conv), ws.bn);
      case ShortcutKind::projection_conv:
        return m_conv->infer(x, ws.conv);
      default:
        compute(x, ws.y);
        return ws.y;
    }
  }

  void zero_grad() {
    if (m_conv) m_conv->zero_grad();
    if (m_bn) m_bn->zero_grad();
  }

 private:
  friend detail::VisitsParameters<Shortcut<S>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    if (self.m_conv) self.m_conv->for_each_parameter(f, prefix.child(0));
    if (self.m_bn) self.m_bn->for_each_parameter(f, prefix.child(1));
  }

  friend detail::VisitsBuffers<Shortcut<S>>;
  template <class Self, class F>
  static void visit_buffers(Self& self, F& f, const ParameterName& prefix) {
    if (self.m_bn) self.m_bn->for_each_buffer(f, prefix.child(1));
  }

  /// f(input column, output column) for every sampled pixel (stride s, from the top-left pixel).
  template <class F>
  void for_each_sample(Index n, const F& f) const {
    const Index ho = m_out_size.height, wo = m_out_size.width, h = m_in_size.height, w = m_in_size.width;
    detail::parallel_for(n * ho, double(wo * m_out), [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r) {
        const Index s = r / ho, i = r - s * ho;
        for (Index j = 0; j < wo; ++j) f(s * h * w + i * m_stride * w + j * m_stride, r * wo + j);
      }
    });
  }

  /// zero_pad: y = [x at the sampled pixels; zeros]; none: y = 0.
  void compute(const Input& x, Output& y) const {
    const Index n = detail::samples_in(name, m_in_size, x.rows(), x.cols());
    y.resize(m_out, n * m_out_size.area());
    detail::parallel_assign(y, Output::Zero(m_out, y.cols()));
    if (m_kind == ShortcutKind::zero_pad)
      for_each_sample(n, [&](Index column_in, Index column_out) { y.col(column_out).head(m_in) = x.col(column_in); });
  }

  ShortcutKind m_kind;
  Index m_in, m_out, m_stride;
  ImageSize m_in_size{}, m_out_size{};
  std::optional<Conv2d<S>> m_conv;
  std::optional<BatchNorm2d<S>> m_bn;
  Index m_cols = -1;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
