#pragma once
/// \file
/// \brief check_gradients: compares a layer's backward() with central finite differences.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace resblocks::testing {

/// \brief Settings of check_gradients (the defaults are torch.autograd.gradcheck's).
struct GradientCheckOptions {
  double step = 1e-6;  ///< finite-difference step h
  double atol = 1e-5;  ///< an entry passes when |analytic - numeric| <= atol + rtol·|numeric|
  double rtol = 1e-3;
  std::uint64_t seed = 1234;  ///< seed of the random output weights R of the loss L = Σ R ⊙ y
};

/// \brief The comparison for one tensor (the input, or one named parameter).
struct TensorGradientCheck {
  std::string name;
  Index entries = 0;
  double max_abs_error = 0;  ///< max |analytic - numeric|
  double worst_ratio = 0;    ///< max |analytic - numeric| / (atol + rtol·|numeric|); <= 1 passes
  double max_abs_gradient = 0;
};

/// \brief Outcome of check_gradients: dL/dx first, then every parameter.
struct GradientCheckResult {
  std::vector<TensorGradientCheck> tensors;

  [[nodiscard]] bool passed() const {
    return std::all_of(tensors.begin(), tensors.end(), [](const auto& t) { return t.worst_ratio <= 1.0; });
  }
  [[nodiscard]] double worst_ratio() const {
    double w = 0;
    for (const auto& t : tensors) w = std::max(w, t.worst_ratio);
    return w;
  }
  /// \brief One line per tensor: name, entries, max abs error, ratio to the tolerance.
  /// \returns the lines, each ending in a newline
  [[nodiscard]] std::string report() const {
    std::ostringstream os;
    for (const auto& t : tensors)
      os << (t.worst_ratio <= 1.0 ? "  ok   " : "  FAIL ") << t.name << " (" << t.entries
         << " entries): max |analytic - numeric| = " << t.max_abs_error << ", error/tolerance = " << t.worst_ratio
         << ", max |gradient| = " << t.max_abs_gradient << "\n";
    return os.str();
  }
};

namespace detail {

template <class Y, class R>
double weighted_sum(const Y& y, const R& r) {
  double s = 0;
  for (Index j = 0; j < y.cols(); ++j)
    for (Index i = 0; i < y.rows(); ++i) s += static_cast<double>(y(i, j)) * static_cast<double>(r(i, j));
  return s;
}

inline void compare(TensorGradientCheck& t, double analytic, double numeric, const GradientCheckOptions& o) {
  const double err = std::abs(analytic - numeric);
  t.max_abs_error = std::max(t.max_abs_error, err);
  t.worst_ratio = std::max(t.worst_ratio, std::isfinite(err) ? err / (o.atol + o.rtol * std::abs(numeric)) : 1e300);
  t.max_abs_gradient = std::max(t.max_abs_gradient, std::abs(analytic));
  ++t.entries;
}

}  // namespace detail

/// Checks dL/dx and every parameter gradient of `layer` at input `x` against central differences
/// of L = Σ R ⊙ layer.forward(x) for a fixed random R. The layer must use `double` (float round-off
/// swamps finite differences: build the same layer with Scalar = double). Parameter gradients are
/// zeroed first and hold dL/dθ afterwards; parameter values are restored.
/// \param layer the layer under test, with Scalar = double
/// \param x the input the gradients are checked at
/// \param options step, tolerances and the seed of R
/// \returns one entry per checked tensor (dL/dx, then the parameters)
template <Layer L>
GradientCheckResult check_gradients(L& layer, const typename L::Input& x, const GradientCheckOptions& options = {}) {
  static_assert(std::is_same_v<typename L::Scalar, double>,
                "resblocks::testing::check_gradients needs a layer with Scalar = double");
  using Output = typename L::Output;
  using Input = typename L::Input;

  Input xp = x;  // the layer keeps a reference to its input: keep it alive here
  const Output& y0 = layer.forward(xp);
  Output r(y0.rows(), y0.cols());
  Generator g(options.seed);
  fill_uniform(r, 1.0, g);

  layer.zero_grad();
  const Output& y = layer.forward(xp);
  (void)y;
  const Input dL_dx = layer.backward(r);
  std::vector<Eigen::MatrixXd> grads;
  layer.for_each_parameter([&](std::string_view, const auto&, const auto& grad) { grads.emplace_back(grad); });

  const double h = options.step;
  auto loss = [&] { return detail::weighted_sum(layer.forward(xp), r); };
  auto numeric = [&](double& v) {
    const double saved = v;
    v = saved + h;
    const double lp = loss();
    v = saved - h;
    const double lm = loss();
    v = saved;
    return (lp - lm) / (2 * h);
  };

  GradientCheckResult result;
  TensorGradientCheck input{"input"};
  for (Index j = 0; j < xp.cols(); ++j)
    for (Index i = 0; i < xp.rows(); ++i) detail::compare(input, dL_dx(i, j), numeric(xp(i, j)), options);
  result.tensors.push_back(input);

  std::size_t p = 0;
  layer.for_each_parameter([&](std::string_view name, auto& value, const auto&) {
    TensorGradientCheck t{std::string(name)};
    const Eigen::MatrixXd& a = grads[p++];
    for (Index j = 0; j < value.cols(); ++j)
      for (Index i = 0; i < value.rows(); ++i) detail::compare(t, a(i, j), numeric(value(i, j)), options);
    result.tensors.push_back(t);
  });
  layer.forward(xp);  // leave the cache consistent with restored parameters
  return result;
}

}  // namespace resblocks::testing
