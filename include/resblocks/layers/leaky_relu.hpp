#pragma once
/// \file
/// \brief LeakyReLU: y = x for x > 0, slope·x otherwise.

#include "resblocks/layers/activation.hpp"

namespace resblocks {

/// \brief The LeakyReLU operation (PyTorch's default negative_slope 0.01).
struct LeakyReLUOp {
  static constexpr std::string_view name = "LeakyReLU";
  double negative_slope = 0.01;

  template <class X>
  auto forward(const X& x) const {
    using T = typename X::Scalar;
    return (x > T(0)).select(x, x * T(negative_slope));
  }
  template <class X, class Y, class G>
  auto backward(const X& x, const Y&, const G& g) const {
    using T = typename X::Scalar;
    return (x > T(0)).select(g, g * T(negative_slope));
  }
};

/// \brief Leaky rectified linear unit layer: `LeakyReLU<float> a(LeakyReLUOp{0.2});`.
template <class S = float, int N = Dynamic>
using LeakyReLU = Activation<LeakyReLUOp, S, N>;

}  // namespace resblocks
