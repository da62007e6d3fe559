#pragma once
/// \file
/// \brief AvgPool2d: the mean over square windows of each channel, as PyTorch's nn.AvgPool2d.

#include "resblocks/core/layer.hpp"
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
class AvgPool2d : public detail::Pool2dLayer<AvgPool2d<S, C>, S, C> {
  using Base = detail::Pool2dLayer<AvgPool2d<S, C>, S, C>;
  friend Base;

 public:
  using typename Base::Input;
  using typename Base::Output;
  static constexpr std::string_view name = "AvgPool2d";

  /// \brief `stride` -1 means the kernel size. Throws std::invalid_argument on bad arguments.
  /// \param kernel window height and width
  /// \param stride step between windows (-1: the kernel size)
  /// \param padding zero rows and columns on each side, at most half the kernel size
  /// \param channels channels of the input (-1: any, for a Dynamic C)
  /// \throws std::invalid_argument on kernel < 1, a stride below 1 other than -1, a padding outside
  ///   [0, kernel/2], or a channel count disagreeing with C
  explicit AvgPool2d(Index kernel, Index stride = -1, Index padding = 0, Index channels = C)
      : Base(kernel, stride, padding, channels) {}

 private:
  S divisor() const noexcept { return static_cast<S>(this->m_window.kernel() * this->m_window.kernel()); }

  /// y = the window means of x (n samples): the sum in scan order, then one division (as PyTorch).
  void pool(const Input& x, Output& y, Index n) const {
    const Index H = this->m_in.height, W = this->m_in.width, Ho = this->m_out.height, Wo = this->m_out.width;
    const auto& window = this->m_window;
    const S d = divisor();
    const double cost = static_cast<double>(x.rows() * Ho * Wo * window.kernel() * window.kernel());
    detail::parallel_for(n, cost, [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s)
        for (Index oh = 0; oh < Ho; ++oh) {
          const auto hspan = window.span(oh, H);
          for (Index ow = 0; ow < Wo; ++ow) {
            const auto wspan = window.span(ow, W);
            auto out = y.col(ow + Wo * (oh + Ho * s));
            out.setZero();
            for (Index h = hspan.begin; h < hspan.end; ++h)
              for (Index w = wspan.begin; w < wspan.end; ++w) out += x.col(w + W * (h + H * s));
            out /= d;
          }
        }
    });
  }

  /// dL/dx: each output gradient / kernel² spread over its window (sizes of the last forward).
  void backward_into(const Input& x, const Output& dL_dy, Input& dL_dx) const {
    const Index H = this->m_fwd_in.height, W = this->m_fwd_in.width, Ho = this->m_fwd_out.height,
                Wo = this->m_fwd_out.width;
    const auto& window = this->m_window;
    const S d = divisor();
    // Each sample's input columns are written by one call only: deterministic without atomics.
    detail::parallel_for(this->m_samples, static_cast<double>(x.rows() * Ho * Wo * window.kernel() * window.kernel()),
                         [&](Index n0, Index n1) {
                           dL_dx.middleCols(n0 * H * W, (n1 - n0) * H * W).setZero();
                           for (Index s = n0; s < n1; ++s)
                             for (Index oh = 0; oh < Ho; ++oh) {
                               const auto hspan = window.span(oh, H);
                               for (Index ow = 0; ow < Wo; ++ow) {
                                 const auto wspan = window.span(ow, W);
                                 const auto g = dL_dy.col(ow + Wo * (oh + Ho * s));
                                 for (Index h = hspan.begin; h < hspan.end; ++h)
                                   for (Index w = wspan.begin; w < wspan.end; ++w)
                                     dL_dx.col(w + W * (h + H * s)) += g / d;
                               }
                             }
                         });
  }
};

}  // namespace resblocks
