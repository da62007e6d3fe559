#pragma once
/// \file
/// \brief Identity: y = x, without a copy. The default skip of Residual.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <string_view>

namespace resblocks {

/// \brief The identity layer: forward returns its input, backward its output gradient (no copies).
template <class S = float, int N = Dynamic>
class Identity {
 public:
  using Scalar = S;
  static constexpr int InFeatures = N;
  static constexpr int OutFeatures = N;
  using Input = Batch<S, N>;
  using Output = Batch<S, N>;
  static constexpr std::string_view name = "Identity";
  struct Workspace {};

  explicit Identity(Index features = N) : m_features(features) {
    if (N != Dynamic) detail::check_features(name, "features", N, features);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_features; }
  [[nodiscard]] Index out_features() const noexcept { return m_features; }

  const Output& forward(const Input& x) {
    detail::check_input_features(name, m_features, x);
    return x;
  }
  const Output& forward(Input&&) = delete;
  const Input& backward(const Output& dL_dy) { return dL_dy; }
  const Output& infer(const Input& x, Workspace&) const {
    detail::check_input_features(name, m_features, x);
    return x;
  }
  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    add(x, y, skip);
  }
  template <class Skip>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace&) const {
    add(x, y, skip);
  }
  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    dL_dx.resize(dL_dy.rows(), dL_dy.cols());
    detail::parallel_assign(dL_dx, skip_grad + dL_dy);
  }

  void zero_grad() noexcept {}
  template <class F>
  void for_each_parameter(F&&, const ParameterName& = {}) const noexcept {}

 private:
  template <class Skip>
  void add(const Input& x, Output& y, const Skip& skip) const {
    detail::check_input_features(name, m_features, x);
    y.resize(x.rows(), x.cols());
    detail::parallel_assign(y, skip + x);
  }
  Index m_features;
};

}  // namespace resblocks
