#pragma once
/// \file
/// \brief Tanh: y = tanh(x).

#include "resblocks/layers/activation.hpp"

namespace resblocks {

/// \brief The tanh operation; its derivative 1 - y² uses the cached output.
struct TanhOp {
  static constexpr std::string_view name = "Tanh";
  template <class X>
  auto forward(const X& x) const {
    return x.tanh();
  }
  template <class X, class Y, class G>
  auto backward(const X&, const Y& y, const G& g) const {
    using T = typename X::Scalar;
    return g * (T(1) - y.square());
  }
};

/// \brief Hyperbolic-tangent layer.
template <class S = float, int N = Dynamic>
using Tanh = Activation<TanhOp, S, N>;

}  // namespace resblocks
