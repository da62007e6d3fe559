#pragma once
/// \file
/// \brief ReLU: y = max(x, 0).

#include "resblocks/layers/activation.hpp"

#include <Eigen/Core>

namespace resblocks::detail {
/// dL/dx of ReLU, `x > 0 ? g : 0`, as a functor with a packet path: Eigen 3.4's select() runs
/// scalar with a branch per element (about 40x slower on random signs).
struct ReLUGradOp {
  template <class T>
  T operator()(const T& x, const T& g) const {
    return x > T(0) ? g : T(0);
  }
  template <class P>
  P packetOp(const P& x, const P& g) const {
    return Eigen::internal::pand(Eigen::internal::pcmp_lt(Eigen::internal::pzero(x), x), g);
  }
};
}  // namespace resblocks::detail

// Eigen's cost model for the functors above (not part of the API documentation).
/// \cond EIGEN_TRAITS
template <>
struct Eigen::internal::functor_traits<resblocks::detail::ReLUGradOp> {
  enum { Cost = 2, PacketAccess = true };
};
/// \endcond

namespace resblocks {

/// \brief The ReLU operation for Activation (derivative taken as 0 at x = 0, as PyTorch).
struct ReLUOp {
  static constexpr std::string_view name = "ReLU";
  static constexpr bool in_place = true;  ///< backward(x, ...) needs only x > 0, and y > 0 exactly then
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
