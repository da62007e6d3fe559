#pragma once
/// \file
/// \brief Sigmoid: y = 1 / (1 + e^-x).

#include "resblocks/layers/activation.hpp"

namespace resblocks {

/// \brief The logistic sigmoid (Eigen's overflow-safe `logistic`); derivative y (1 - y).
struct SigmoidOp {
  static constexpr std::string_view name = "Sigmoid";
  template <class X>
  auto forward(const X& x) const {
    return x.logistic();
  }
  template <class X, class Y, class G>
  auto backward(const X&, const Y& y, const G& g) const {
    using T = typename X::Scalar;
    return g * y * (T(1) - y);
  }
};

/// \brief Logistic-sigmoid layer.
template <class S = float, int N = Dynamic>
using Sigmoid = Activation<SigmoidOp, S, N>;

}  // namespace resblocks
