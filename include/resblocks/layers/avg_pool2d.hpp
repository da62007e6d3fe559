#pragma once
/// \file
/// \brief AvgPool2d: the mean over square windows of each channel, as PyTorch's nn.AvgPool2d.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/pool_window.hpp"

#include <string_view>

namespace resblocks {

/// \brief 2-D average pooling on image batches (channels × N·H·W), as `nn.AvgPool2d(kernel,
/// stride, padding)` with its defaults count_include_pad=True and ceil_mode=False: padding counts
/// as zeros, so every window sum is divided by kernel².
///
/// `channels` fixes a Dynamic channel count (-1: any). Call set_image_size() before forward.
template <class S = float, int C = Dynamic>
class AvgPool2d {
 public:
  using Scalar = S;
  static constexpr int InFeatures = C;
  static constexpr int OutFeatures = C;
  using Input = Batch<S, C>;
  using Output = Batch<S, C>;
  static constexpr std::string_view name = "AvgPool2d";

  struct Workspace {
    Output y;
  };

  /// `stride` -1 means the kernel size. Throws std::invalid_argument on bad arguments.
  explicit AvgPool2d(Index kernel, Index stride = -1, Index padding = 0, Index channels = C)
      : m_window(name, kernel, stride, padding), m_channels(channels) {
    if (channels != -1 || C != Dynamic) detail::check_features(name, "channels", C, channels);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_channels; }
  [[nodiscard]] Index out_features() const noexcept { return m_channels; }
  [[nodiscard]] Index kernel_size() const noexcept { return m_window.kernel(); }
  [[nodiscard]] Index stride() const noexcept { return m_window.stride(); }
  [[nodiscard]] Index padding() const noexcept { return m_window.padding(); }

  /// Sets the input image size; returns the output's. Throws std::invalid_argument if it is too small.
  ImageSize set_image_size(ImageSize in) {
    m_out = m_window.output_size(name, in);
    m_in = in;
    return m_out;
  }
  /// The input image size (empty until set_image_size).
  [[nodiscard]] ImageSize image_size() const noexcept { return m_in; }
  [[nodiscard]] ImageSize output_image_size() const noexcept { return m_out; }

  const Output& forward(const Input& x) {
    const Index n = check_input(x);
    m_x = &x;
    pool(x, m_y, n);
    m_samples = n;
    m_fwd_in = m_in;
    m_fwd_out = m_out;
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, m_y.rows(), m_y.cols(), dL_dy);
    m_dL_dx.resize(x.rows(), x.cols());
    const Index H = m_fwd_in.height, W = m_fwd_in.width, Ho = m_fwd_out.height, Wo = m_fwd_out.width;
    const S divisor = divisor_();
    // Each sample's input columns are written by one call only: deterministic without atomics.
    detail::parallel_for(m_samples, static_cast<double>(x.rows() * Ho * Wo * m_window.kernel() * m_window.kernel()),
                         [&](Index n0, Index n1) {
                           m_dL_dx.middleCols(n0 * H * W, (n1 - n0) * H * W).setZero();
                           for (Index s = n0; s < n1; ++s)
                             for (Index oh = 0; oh < Ho; ++oh) {
                               const auto hspan = m_window.span(oh, H);
                               for (Index ow = 0; ow < Wo; ++ow) {
                                 const auto wspan = m_window.span(ow, W);
                                 const auto g = dL_dy.col(ow + Wo * (oh + Ho * s));
                                 for (Index h = hspan.begin; h < hspan.end; ++h)
                                   for (Index w = wspan.begin; w < wspan.end; ++w)
                                     m_dL_dx.col(w + W * (h + H * s)) += g / divisor;
                               }
                             }
                         });
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    pool(x, ws.y, check_input(x));
    return ws.y;
  }

  void zero_grad() noexcept {}
  template <class F>
  void for_each_parameter(F&&, const ParameterName& = {}) const noexcept {}  // no parameters

 private:
  /// The number of samples in x, after checking its channels and columns.
  Index check_input(const Input& x) const {
    detail::check_input_features(name, m_channels, x);
    return detail::samples_in(name, m_in, x.rows(), x.cols());
  }

  S divisor_() const noexcept { return static_cast<S>(m_window.kernel() * m_window.kernel()); }

  /// y = the window means of x (n samples): the sum in scan order, then one division (as PyTorch).
  void pool(const Input& x, Output& y, Index n) const {
    const Index H = m_in.height, W = m_in.width, Ho = m_out.height, Wo = m_out.width;
    y.resize(x.rows(), n * Ho * Wo);
    const S divisor = divisor_();
    const double cost = static_cast<double>(x.rows() * Ho * Wo * m_window.kernel() * m_window.kernel());
    detail::parallel_for(n, cost, [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s)
        for (Index oh = 0; oh < Ho; ++oh) {
          const auto hspan = m_window.span(oh, H);
          for (Index ow = 0; ow < Wo; ++ow) {
            const auto wspan = m_window.span(ow, W);
            auto out = y.col(ow + Wo * (oh + Ho * s));
            out.setZero();
            for (Index h = hspan.begin; h < hspan.end; ++h)
              for (Index w = wspan.begin; w < wspan.end; ++w) out += x.col(w + W * (h + H * s));
            out /= divisor;
          }
        }
    });
  }

  detail::PoolWindow m_window;
  Index m_channels;
  ImageSize m_in{};
  ImageSize m_out{};
  CachedInput<Input> m_x;
  Index m_samples = 0;  // the last forward's sample count and image sizes
  ImageSize m_fwd_in{}, m_fwd_out{};
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
