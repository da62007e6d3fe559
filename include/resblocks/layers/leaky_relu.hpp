#pragma once
/// \file
/// \brief LeakyReLU: y = x for x > 0, slope·x otherwise.

#include "resblocks/layers/activation.hpp"

#include <Eigen/Core>

namespace resblocks::detail {
/// `x > 0 ? v : slope·v` with a packet path (Eigen 3.4's select() runs scalar, with a branch per
/// element): forward is (x, x), backward (x, dL/dy).
template <class T>
struct LeakyReLUSelectOp {
  T slope;
  T operator()(const T& x, const T& v) const { return x > T(0) ? v : slope * v; }
  template <class P>
  P packetOp(const P& x, const P& v) const {
    using namespace Eigen::internal;
    return pselect(pcmp_lt(pzero(x), x), v, pmul(pset1<P>(slope), v));
  }
};
}  // namespace resblocks::detail

// Eigen's cost model for the functors above (not part of the API documentation).
/// \cond EIGEN_TRAITS
template <class T>
struct Eigen::internal::functor_traits<resblocks::detail::LeakyReLUSelectOp<T>> {
  enum { Cost = 3, PacketAccess = true };
};
/// \endcond

namespace resblocks {

/// \brief The LeakyReLU operation (PyTorch's default negative_slope 0.01).
struct LeakyReLUOp {
  static constexpr std::string_view name = "LeakyReLU";
  double negative_slope = 0.01;

  template <class X>
  auto forward(const X& x) const {
    using T = typename X::Scalar;
    return x.binaryExpr(x, detail::LeakyReLUSelectOp<T>{T(negative_slope)});
  }
  template <class X, class Y, class G>
  auto backward(const X& x, const Y&, const G& g) const {
    using T = typename X::Scalar;
    return x.binaryExpr(g, detail::LeakyReLUSelectOp<T>{T(negative_slope)});
  }
};

/// \brief Leaky rectified linear unit layer: `LeakyReLU<float> a(LeakyReLUOp{0.2});`.
template <class S = float, int N = Dynamic>
using LeakyReLU = Activation<LeakyReLUOp, S, N>;

}  // namespace resblocks
