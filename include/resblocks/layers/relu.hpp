#pragma once
/// \file
/// \brief ReLU: y = max(x, 0).

#include "resblocks/core/relu_grad.hpp"
#include "resblocks/layers/activation.hpp"

#include <Eigen/Core>

namespace resblocks {

/// \brief The ReLU operation for Activation (derivative taken as 0 at x = 0, as PyTorch).
struct ReLUOp {
  static constexpr std::string_view name = "ReLU";
  static constexpr bool in_place = true;  ///< backward(x, ...) needs only x > 0, and y > 0 exactly then
  static constexpr bool is_relu = true;   ///< a convolution after it may read max(·, 0) itself (detail::NormInput)
  template <class X>
  auto forward(const X& x) const {
    return x.cwiseMax(typename X::Scalar(0));
  }
  template <class X, class Y, class G>
  auto backward(const X& x, const Y&, const G& g) const {
    return x.binaryExpr(g, detail::ReLUGradOp{});
  }
};

/// \brief Rectified linear unit layer.
template <class S = float, int N = Dynamic>
using ReLU = Activation<ReLUOp, S, N>;

}  // namespace resblocks
