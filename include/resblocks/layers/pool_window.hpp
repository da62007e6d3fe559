#pragma once
/// \file
/// \brief PoolWindow: the square window of MaxPool2d and AvgPool2d (kernel, stride, padding), and
/// Pool2dLayer, the layer shell both share.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
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

/// \brief What MaxPool2d and AvgPool2d share: the Layer members, the window, the image sizes and the
/// checks; `Pool` (CRTP) supplies `name`, `pool(x, y, n)` (y sized here; forward calls it on a
/// non-const layer, which may record what backward needs, infer on a const one) and
/// `backward_into(x, dL_dy, dL_dx)` (dL_dx sized here).
template <class Pool, class S, int C>
class Pool2dLayer {
 public:
  using Scalar = S;
  static constexpr int InFeatures = C;
  static constexpr int OutFeatures = C;
  using Input = Batch<S, C>;
  using Output = Batch<S, C>;

  /// \brief Inference buffers.
  struct Workspace {
    Output y;
  };

  [[nodiscard]] Index in_features() const noexcept { return m_channels; }
  [[nodiscard]] Index out_features() const noexcept { return m_channels; }
  [[nodiscard]] Index kernel_size() const noexcept { return m_window.kernel(); }
  [[nodiscard]] Index stride() const noexcept { return m_window.stride(); }
  [[nodiscard]] Index padding() const noexcept { return m_window.padding(); }

  /// Sets the input image size; returns the output's. Throws std::invalid_argument if it is too small.
  ImageSize set_image_size(ImageSize in) {
    m_out = m_window.output_size(Pool::name, in);
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
    self().pool(x, m_y, n);
    m_samples = n;
    m_fwd_in = m_in;
    m_fwd_out = m_out;
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    const Input& x = m_x.get(Pool::name);
    check_output_gradient(Pool::name, m_y.rows(), m_y.cols(), dL_dy);
    m_dL_dx.resize(x.rows(), x.cols());
    self().backward_into(x, dL_dy, m_dL_dx);
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    const Index n = check_input(x);
    ws.y.resize(x.rows(), n * m_out.area());
    self().pool(x, ws.y, n);
    return ws.y;
  }

  void zero_grad() noexcept {}
  template <class F>
  void for_each_parameter(F&&, const ParameterName& = {}) const noexcept {}  // no parameters

 protected:
  /// `stride` -1 means the kernel size. Throws std::invalid_argument on bad arguments.
  Pool2dLayer(Index kernel, Index stride, Index padding, Index channels)
      : m_window(Pool::name, kernel, stride, padding), m_channels(channels) {
    if (channels != -1 || C != Dynamic) check_features(Pool::name, "channels", C, channels);
  }

  PoolWindow m_window;
  ImageSize m_in{};
  ImageSize m_out{};
  Index m_samples = 0;                // the last forward's sample count
  ImageSize m_fwd_in{}, m_fwd_out{};  // and its image sizes

 private:
  Pool& self() noexcept { return static_cast<Pool&>(*this); }
  const Pool& self() const noexcept { return static_cast<const Pool&>(*this); }

  /// The number of samples in x, after checking its channels and columns.
  Index check_input(const Input& x) const {
    check_input_features(Pool::name, m_channels, x);
    return samples_in(Pool::name, m_in, x.rows(), x.cols());
  }

  Index m_channels;
  CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks::detail
