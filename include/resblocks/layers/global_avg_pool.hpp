#pragma once
/// \file
/// \brief GlobalAvgPool: the mean of each channel over each image (adaptive_avg_pool2d(1) + flatten).

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief Global average pooling: channels × (N·H·W) image columns → channels × N, one column per
/// sample holding the mean of its H·W columns. PyTorch's `torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)`;
/// the output feeds a Linear directly.
///
/// `channels` fixes a Dynamic channel count (-1: any). Call set_image_size() before forward.
template <class S = float, int C = Dynamic>
class GlobalAvgPool {
 public:
  using Scalar = S;
  static constexpr int InFeatures = C;
  static constexpr int OutFeatures = C;
  using Input = Batch<S, C>;
  using Output = Batch<S, C>;
  static constexpr std::string_view name = "GlobalAvgPool";

  struct Workspace {
    Output y;
  };

  explicit GlobalAvgPool(Index channels = C) : m_channels(channels) {
    if (channels != -1 || C != Dynamic) detail::check_features(name, "channels", C, channels);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_channels; }
  [[nodiscard]] Index out_features() const noexcept { return m_channels; }

  /// \brief Sets the input image size; the output is one column per sample: {1, 1}.
  /// \param in the input's height and width
  /// \returns {1, 1}
  /// \throws std::invalid_argument on an empty `in`
  ImageSize set_image_size(ImageSize in) {
    if (in.empty()) throw std::invalid_argument(std::string(name) + ": image size " + in.str() + " is empty");
    m_in = in;
    return {1, 1};
  }
  /// \brief The input image size (empty until set_image_size).
  /// \returns the input's height and width
  [[nodiscard]] ImageSize image_size() const noexcept { return m_in; }

  const Output& forward(const Input& x) {
    const Index n = check_input(x);
    m_x = &x;
    pool(x, m_y, n);
    m_area = m_in.area();
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) { return backward_then(dL_dy, detail::NoPrepare{}, detail::NoEpilogue{}); }

  /// backward(dL_dy), then `epilogue(dL_dx, r0, rows, c0, cols)` on each sample's columns of dL/dx as
  /// they are written (Sequential runs the ReLU that ends the network's last block there);
  /// `prepare(dL_dx)` runs first.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \returns dL/dx, in a buffer the layer owns
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, m_y.rows(), m_y.cols(), dL_dy);
    m_dL_dx.resize(x.rows(), x.cols());
    prepare(std::as_const(m_dL_dx));
    const Index area = m_area;
    const S count = static_cast<S>(area);
    detail::parallel_for(dL_dy.cols(), static_cast<double>(x.rows() * area), [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s) {
        for (Index i = 0; i < area; ++i) m_dL_dx.col(s * area + i) = dL_dy.col(s) / count;
        if constexpr (!std::is_same_v<Epilogue, detail::NoEpilogue>)
          epilogue(std::as_const(m_dL_dx), 0, x.rows(), s * area, area);
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

  /// y.col(s) = the mean of sample s's columns: summed in column order, then divided by H·W.
  void pool(const Input& x, Output& y, Index n) const {
    const Index area = m_in.area();
    const S count = static_cast<S>(area);
    y.resize(x.rows(), n);
    detail::parallel_for(n, static_cast<double>(x.rows() * area), [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s) {
        auto out = y.col(s);
        out.setZero();
        for (Index i = 0; i < area; ++i) out += x.col(s * area + i);
        out /= count;
      }
    });
  }

  Index m_channels;
  ImageSize m_in{};
  CachedInput<Input> m_x;
  Index m_area = 0;  // the last forward's H·W
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
