#pragma once
/// \file
/// \brief ReLU: y = max(x, 0).

#include "resblocks/layers/activation.hpp"

namespace resblocks {

/// \brief The ReLU operation for Activation (derivative taken as 0 at x = 0, as PyTorch).
struct ReLUOp {
  static constexpr std::string_view name = "ReLU";
  template <class X>
  auto forward(const X& x) const {
    return x.cwiseMax(typename X::Scalar(0));
  }
  template <class X, class Y, class G>
  auto backward(const X& x, const Y&, const G& g) const {
    return (x > typename X::Scalar(0)).select(g, typename X::Scalar(0));
  }
};

/// \brief Rectified linear unit layer.
template <class S = float, int N = Dynamic>
using ReLU = Activation<ReLUOp, S, N>;

}  // namespace resblocks
