#pragma once
/// \file
/// \brief GELU: x Φ(x), exact (erf) or with PyTorch's tanh approximation.

#include "resblocks/layers/activation.hpp"

#include <cmath>

namespace resblocks {

/// \brief The GELU operation, as `torch.nn.GELU(approximate="none" | "tanh")`.
struct GELUOp {
  enum class Approximate { none, tanh };
  static constexpr std::string_view name = "GELU";
  Approximate approximate = Approximate::none;

  template <class X>
  auto forward(const X& x) const {
    using T = typename X::Scalar;
    return x.unaryExpr([a = approximate](T v) { return value(v, a); });
  }
  template <class X, class Y, class G>
  auto backward(const X& x, const Y&, const G& g) const {
    using T = typename X::Scalar;
    return g * x.unaryExpr([a = approximate](T v) { return derivative(v, a); });
  }

  template <class T>
  static T value(T v, Approximate a) {
    if (a == Approximate::none) return T(0.5) * v * (T(1) + std::erf(v * T(0.70710678118654752440)));
    const T inner = T(0.79788456080286535588) * (v + T(0.044715) * v * v * v);  // √(2/π)(x + 0.044715x³)
    return T(0.5) * v * (T(1) + std::tanh(inner));
  }
  template <class T>
  static T derivative(T v, Approximate a) {
    if (a == Approximate::none) {
      const T cdf = T(0.5) * (T(1) + std::erf(v * T(0.70710678118654752440)));
      const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * v * v);
      return cdf + v * pdf;
    }
    const T k = T(0.79788456080286535588);
    const T t = std::tanh(k * (v + T(0.044715) * v * v * v));
    return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3 * 0.044715) * v * v);
  }
};

/// \brief Gaussian-error linear unit layer: `GELU<float> g(GELUOp{GELUOp::Approximate::tanh});`.
template <class S = float, int N = Dynamic>
using GELU = Activation<GELUOp, S, N>;

}  // namespace resblocks
