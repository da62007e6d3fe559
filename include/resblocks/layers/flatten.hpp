#pragma once
/// \file
/// \brief Flatten: image columns to one feature vector per sample, in torch.flatten(x, 1) order.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief Flattens image batches: channels × (N·H·W) → (channels·H·W) × N, feature
/// `c·H·W + h·W + w` of sample n being pixel (h, w) of channel c, as PyTorch's `torch.flatten(x, 1)`
/// on NCHW tensors; a following Linear takes PyTorch's weights unchanged.
///
/// `channels` fixes a Dynamic channel count (-1: any). Call set_image_size() before forward.
template <class S = float, int C = Dynamic>
class Flatten {
 public:
  using Scalar = S;
  static constexpr int InFeatures = C;
  static constexpr int OutFeatures = Dynamic;
  using Input = Batch<S, C>;
  using Output = Batch<S, Dynamic>;
  static constexpr std::string_view name = "Flatten";
  static constexpr bool changes_features = true;  ///< output size channels·H·W, unknown until set_image_size

  struct Workspace {
    Output y;
  };

  explicit Flatten(Index channels = C) : m_channels(channels) {
    if (channels != -1 || C != Dynamic) detail::check_features(name, "channels", C, channels);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_channels; }
  /// \brief channels·H·W once both are known, else -1.
  /// \returns the output's rows, or -1
  [[nodiscard]] Index out_features() const noexcept {
    return m_channels >= 0 && !m_in.empty() ? m_channels * m_in.area() : -1;
  }

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
    flatten(x, m_y, n);
    m_area = m_in.area();
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, m_y.rows(), m_y.cols(), dL_dy);
    m_dL_dx.resize(x.rows(), x.cols());
    const Index area = m_area, channels = x.rows();
    detail::parallel_for(dL_dy.cols(), static_cast<double>(channels * area), [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s)
        m_dL_dx.middleCols(s * area, area) = ConstSampleMap(dL_dy.col(s).data(), area, channels).transpose();
    });
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    flatten(x, ws.y, check_input(x));
    return ws.y;
  }

  void zero_grad() noexcept {}
  template <class F>
  void for_each_parameter(F&&, const ParameterName& = {}) const noexcept {}  // no parameters

 private:
  // One output column viewed as H·W × channels (column-major): entry (p, c) is feature c·H·W + p.
  using SampleMap = Eigen::Map<Eigen::Matrix<S, Dynamic, C>>;
  using ConstSampleMap = Eigen::Map<const Eigen::Matrix<S, Dynamic, C>>;

  /// The number of samples in x, after checking its channels and columns.
  Index check_input(const Input& x) const {
    detail::check_input_features(name, m_channels, x);
    return detail::samples_in(name, m_in, x.rows(), x.cols());
  }

  /// y.col(s) = sample s's channels × H·W block, transposed (a copy).
  void flatten(const Input& x, Output& y, Index n) const {
    const Index area = m_in.area(), channels = x.rows();
    y.resize(channels * area, n);
    detail::parallel_for(n, static_cast<double>(channels * area), [&](Index n0, Index n1) {
      for (Index s = n0; s < n1; ++s)
        SampleMap(y.col(s).data(), area, channels) = x.middleCols(s * area, area).transpose();
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
