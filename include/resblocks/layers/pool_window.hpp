#pragma once
/// \file
/// \brief PoolWindow: the square window of MaxPool2d and AvgPool2d (kernel, stride, padding).

#include "resblocks/core/image_size.hpp"
#include "resblocks/core/types.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks::detail {

/// \brief A square pooling window with PyTorch's rules (ceil_mode=False): kernel >= 1, stride >= 1
/// (-1: the kernel), 0 <= padding <= kernel/2; an output side is floor((in + 2·padding - kernel)/stride) + 1.
class PoolWindow {
 public:
  /// Validates the arguments; errors are std::invalid_argument naming `layer`.
  PoolWindow(std::string_view layer, Index kernel, Index stride, Index padding)
      : m_kernel(kernel), m_stride(stride == -1 ? kernel : stride), m_padding(padding) {
    const std::string who(layer);
    if (kernel < 1) throw std::invalid_argument(who + ": kernel size must be >= 1, got " + std::to_string(kernel));
    if (m_stride < 1)
      throw std::invalid_argument(who + ": stride must be >= 1 (or -1 for the kernel size), got " +
                                  std::to_string(stride));
    if (padding < 0 || padding > kernel / 2)
      throw std::invalid_argument(who + ": padding must be between 0 and half the kernel size (" +
                                  std::to_string(kernel / 2) + "), got " + std::to_string(padding));
  }

  [[nodiscard]] Index kernel() const noexcept { return m_kernel; }
  [[nodiscard]] Index stride() const noexcept { return m_stride; }
  [[nodiscard]] Index padding() const noexcept { return m_padding; }

  /// The output size for inputs of `in`; throws std::invalid_argument (naming `layer`) when `in`
  /// is empty or the padded input is smaller than the kernel.
  [[nodiscard]] ImageSize output_size(std::string_view layer, ImageSize in) const {
    const std::string who(layer);
    if (in.empty()) throw std::invalid_argument(who + ": image size " + in.str() + " is empty");
    const Index dh = in.height + 2 * m_padding - m_kernel, dw = in.width + 2 * m_padding - m_kernel;
    if (dh < 0 || dw < 0)
      throw std::invalid_argument(who + ": input " + in.str() + " with padding " + std::to_string(m_padding) +
                                  " is smaller than the kernel " + std::to_string(m_kernel) + "x" +
                                  std::to_string(m_kernel));
    return {dh / m_stride + 1, dw / m_stride + 1};
  }

  /// \brief Input indices [begin, end) under one output index (padding excluded).
  struct Span {
    Index begin;
    Index end;
  };
  /// The input rows (or columns) that output row (column) `o` covers, in a dimension of `n`.
  [[nodiscard]] Span span(Index o, Index n) const noexcept {
    const Index start = o * m_stride - m_padding;
    return {std::max<Index>(start, 0), std::min(start + m_kernel, n)};
  }

 private:
  Index m_kernel;
  Index m_stride;
  Index m_padding;
};

}  // namespace resblocks::detail
