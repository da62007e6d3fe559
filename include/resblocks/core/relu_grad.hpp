#pragma once
/// \file
/// \brief ReLUGradOp: ReLU's backward, `x > 0 ? g : 0`, as an Eigen functor (ReLU, and the convolutions
/// that apply it themselves: detail::NormInput).

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
