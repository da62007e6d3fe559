#pragma once
/// \file
/// \brief MaxPool2d: the maximum over square windows of each channel, as PyTorch's nn.MaxPool2d.

#include "resblocks/core/layer.hpp"
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
class MaxPool2d : public detail::Pool2dLayer<MaxPool2d<S, C>, S, C> {
  using Base = detail::Pool2dLayer<MaxPool2d<S, C>, S, C>;
  friend Base;

 public:
  using typename Base::Input;
  using typename Base::Output;
  static constexpr std::string_view name = "MaxPool2d";

  /// \brief `stride` -1 means the kernel size. Throws std::invalid_argument on bad arguments.
  /// \param kernel window height and width
  /// \param stride step between windows (-1: the kernel size)
  /// \param padding zero rows and columns on each side, at most half the kernel size
  /// \param channels channels of the input (-1: any, for a Dynamic C)
  /// \throws std::invalid_argument on kernel < 1, a stride below 1 other than -1, a padding outside
  ///   [0, kernel/2], or a channel count disagreeing with C
  explicit MaxPool2d(Index kernel, Index stride = -1, Index padding = 0, Index channels = C)
      : Base(kernel, stride, padding, channels) {}

 private:
  /// y = the window maxima of x (n samples); forward also records their input columns (m_argmax).
  void pool(const Input& x, Output& y, Index n) {
    m_argmax.resize(x.rows(), y.cols());
    pool_into<true>(x, y, n, &m_argmax);
  }
  void pool(const Input& x, Output& y, Index n) const { pool_into<false>(x, y, n, nullptr); }

  template <bool Record>
  void pool_into(const Input& x, Output& y, Index n, Batch<Index, C>* argmax) const {
    const Index rows = x.rows(), H = this->m_in.height, W = this->m_in.width, Ho = this->m_out.height,
                Wo = this->m_out.width;
    const auto& window = this->m_window;
    const double cost = static_cast<double>(rows * Ho * Wo * window.kernel() * window.kernel());
    detail::parallel_for(n, cost, [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s)
        for (Index oh = 0; oh < Ho; ++oh) {
          const auto hspan = window.span(oh, H);
          for (Index ow = 0; ow < Wo; ++ow) {
            const auto wspan = window.span(ow, W);
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

  /// dL/dx: each output gradient to its window's recorded maximum.
  void backward_into(const Input& x, const Output& dL_dy, Input& dL_dx) const {
    const Index rows = x.rows(), samples = this->m_samples;
    const Index in_area = samples > 0 ? x.cols() / samples : 0;
    const Index out_area = samples > 0 ? dL_dy.cols() / samples : 0;
    // Each sample's input columns are written by one call only: deterministic without atomics.
    detail::parallel_for(samples, static_cast<double>(rows * (in_area + out_area)), [&](Index n0, Index n1) {
      dL_dx.middleCols(n0 * in_area, (n1 - n0) * in_area).setZero();
      for (Index j = n0 * out_area; j < n1 * out_area; ++j) {
        const S* g = dL_dy.col(j).data();
        const Index* a = m_argmax.col(j).data();
        for (Index c = 0; c < rows; ++c) dL_dx(c, a[c]) += g[c];
      }
    });
  }

  Batch<Index, C> m_argmax;  // input column of each output's maximum (last forward)
};

}  // namespace resblocks
