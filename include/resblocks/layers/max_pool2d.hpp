#pragma once
/// \file
/// \brief MaxPool2d: the maximum over square windows of each channel, as PyTorch's nn.MaxPool2d.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/pool_window.hpp"

#include <cmath>
#include <limits>
#include <string_view>

namespace resblocks {

/// \brief 2-D max pooling on image batches (channels × N·H·W), as `nn.MaxPool2d(kernel, stride,
/// padding)`: padding counts as -inf, ceil_mode=False, dilation 1. Backward routes each output
/// gradient to the first maximum of its window in scan order (rows, then columns), as PyTorch.
///
/// `channels` fixes a Dynamic channel count (-1: any). Call set_image_size() before forward.
template <class S = float, int C = Dynamic>
class MaxPool2d {
 public:
  using Scalar = S;
  static constexpr int InFeatures = C;
  static constexpr int OutFeatures = C;
  using Input = Batch<S, C>;
  using Output = Batch<S, C>;
  static constexpr std::string_view name = "MaxPool2d";

  struct Workspace {
    Output y;
  };

  /// `stride` -1 means the kernel size. Throws std::invalid_argument on bad arguments.
  explicit MaxPool2d(Index kernel, Index stride = -1, Index padding = 0, Index channels = C)
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
    m_y.resize(x.rows(), n * m_out.area());
    m_argmax.resize(x.rows(), n * m_out.area());
    pool<true>(x, m_y, n, &m_argmax);
    m_samples = n;
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, m_argmax.rows(), m_argmax.cols(), dL_dy);
    m_dL_dx.resize(x.rows(), x.cols());
    const Index rows = x.rows();
    const Index in_area = m_samples > 0 ? x.cols() / m_samples : 0;
    const Index out_area = m_samples > 0 ? dL_dy.cols() / m_samples : 0;
    // Each sample's input columns are written by one call only: deterministic without atomics.
    detail::parallel_for(m_samples, static_cast<double>(rows * (in_area + out_area)), [&](Index n0, Index n1) {
      m_dL_dx.middleCols(n0 * in_area, (n1 - n0) * in_area).setZero();
      for (Index j = n0 * out_area; j < n1 * out_area; ++j) {
        const S* g = dL_dy.col(j).data();
        const Index* a = m_argmax.col(j).data();
        for (Index c = 0; c < rows; ++c) m_dL_dx(c, a[c]) += g[c];
      }
    });
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    const Index n = check_input(x);
    ws.y.resize(x.rows(), n * m_out.area());
    pool<false>(x, ws.y, n, nullptr);
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

  /// y = the window maxima of x (n samples); with Record, also their input columns in *argmax.
  template <bool Record>
  void pool(const Input& x, Output& y, Index n, Batch<Index, C>* argmax) const {
    const Index rows = x.rows(), H = m_in.height, W = m_in.width, Ho = m_out.height, Wo = m_out.width;
    const double cost = static_cast<double>(rows * Ho * Wo * m_window.kernel() * m_window.kernel());
    detail::parallel_for(n, cost, [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s)
        for (Index oh = 0; oh < Ho; ++oh) {
          const auto hspan = m_window.span(oh, H);
          for (Index ow = 0; ow < Wo; ++ow) {
            const auto wspan = m_window.span(ow, W);
            const Index j = ow + Wo * (oh + Ho * s);
            S* best = y.col(j).data();
            Index* arg = nullptr;
            if constexpr (Record) arg = argmax->col(j).data();
            // PyTorch's scan: -inf, then a strictly larger value (or NaN) replaces the maximum.
            const Index first = wspan.begin + W * (hspan.begin + H * s);
            for (Index c = 0; c < rows; ++c) {
              best[c] = -std::numeric_limits<S>::infinity();
              if constexpr (Record) arg[c] = first;
            }
            for (Index h = hspan.begin; h < hspan.end; ++h)
              for (Index w = wspan.begin; w < wspan.end; ++w) {
                const Index i = w + W * (h + H * s);
                const S* v = x.col(i).data();
                for (Index c = 0; c < rows; ++c)
                  if (v[c] > best[c] || std::isnan(v[c])) {
                    best[c] = v[c];
                    if constexpr (Record) arg[c] = i;
                  }
              }
          }
        }
    });
  }

  detail::PoolWindow m_window;
  Index m_channels;
  ImageSize m_in{};
  ImageSize m_out{};
  CachedInput<Input> m_x;
  Index m_samples = 0;
  Output m_y;
  Batch<Index, C> m_argmax;  // input column of each output's maximum (last forward)
  Input m_dL_dx;
};

}  // namespace resblocks
