#pragma once
/// \file
/// \brief GELU: x Φ(x), exact (erf) or with PyTorch's tanh approximation.

#include "resblocks/layers/activation.hpp"

#include <Eigen/Core>

#include <cmath>
#include <type_traits>

namespace resblocks {

/// \brief The GELU operation, as `torch.nn.GELU(approximate="none" | "tanh")`.
///
/// Float runs vectorised (a rational erf accurate to a few ulp, Eigen's packet exp; the same bits
/// for every element); double runs the C library's erf/tanh/exp, for gradient checks.
struct GELUOp {
  enum class Approximate { none, tanh };
  static constexpr std::string_view name = "GELU";
  Approximate approximate = Approximate::none;

  template <class X>
  auto forward(const X& x) const;
  template <class X, class Y, class G>
  auto backward(const X& x, const Y&, const G& g) const;

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

namespace detail {

/// erf of a float packet: a 13/8-degree odd/even rational interpolant on [-4, 4] (outside, erf
/// is ±1 in float), accurate to a few ulp — the approximation Eigen's fast erf uses.
template <class P>
P packet_erf_float(const P& a) {
  using namespace Eigen::internal;
  const P x = pmax(pmin(a, pset1<P>(4.f)), pset1<P>(-4.f));
  const P x2 = pmul(x, x);
  P p = pmadd(x2, pset1<P>(-2.72614225801306e-10f), pset1<P>(2.77068142495902e-08f));
  p = pmadd(x2, p, pset1<P>(-2.10102402082508e-06f));
  p = pmadd(x2, p, pset1<P>(-5.69250639462346e-05f));
  p = pmadd(x2, p, pset1<P>(-7.34990630326855e-04f));
  p = pmadd(x2, p, pset1<P>(-2.95459980854025e-03f));
  p = pmadd(x2, p, pset1<P>(-1.60960333262415e-02f));
  p = pmul(x, p);
  P q = pmadd(x2, pset1<P>(-1.45660718464996e-05f), pset1<P>(-2.13374055278905e-04f));
  q = pmadd(x2, q, pset1<P>(-1.68282697438203e-03f));
  q = pmadd(x2, q, pset1<P>(-7.37332916720468e-03f));
  q = pmadd(x2, q, pset1<P>(-1.42647390514189e-02f));
  return pdiv(p, q);
}

/// Φ(x) (exact form) or ½(1 + tanh(√(2/π)(x + 0.044715x³))) (tanh form) of a float packet;
/// with `with_derivative`, returns Φ(x) + x φ(x) instead (dGELU/dx).
template <bool with_derivative, class P>
P packet_gelu_factor(const P& x, GELUOp::Approximate approximate) {
  using namespace Eigen::internal;
  const P half = pset1<P>(0.5f);
  const P one = pset1<P>(1.f);
  if (approximate == GELUOp::Approximate::none) {
    const P cdf = pmul(half, padd(one, packet_erf_float(pmul(x, pset1<P>(0.70710678118654752440f)))));
    if constexpr (!with_derivative) {
      return cdf;
    } else {
      const P pdf = pmul(pset1<P>(0.39894228040143267794f), pexp(pmul(pset1<P>(-0.5f), pmul(x, x))));
      return pmadd(x, pdf, cdf);
    }
  }
  // Tanh form through a = exp(-2|u|), u = √(2/π)(x + 0.044715x³): ½(1 + tanh u) = 1/(1 + a) for
  // u ≥ 0, a/(1 + a) below, and 1 − tanh²u = 4a/(1 + a)², without the cancellation of 1 ± tanh u
  // in float where tanh u rounds to ±1 (so the tails keep their small values, as in torch).
  const P k = pset1<P>(0.79788456080286535588f);
  const P x2 = pmul(x, x);
  const P u = pmul(k, pmadd(pmul(pset1<P>(0.044715f), x2), x, x));
  const P m = pmul(pset1<P>(-2.f), pabs(u));
  const P a = pselect(pcmp_lt(m, pset1<P>(-87.f)), pzero(m), pexp(m));  // exactly 0 in the far tail, as exp
  const P r = pdiv(one, padd(one, a));
  const P cdf = pselect(pcmp_le(pzero(u), u), r, pmul(a, r));
  if constexpr (!with_derivative) {
    return cdf;
  } else {
    // ½x(1 − tanh²u) k (1 + 3·0.044715 x²)
    const P sech2 = pmul(pset1<P>(4.f), pmul(a, pmul(r, r)));
    const P dt = pmul(pmul(pmul(half, x), sech2), pmul(k, pmadd(pset1<P>(3 * 0.044715f), x2, one)));
    return padd(cdf, dt);
  }
}

/// y = GELU(x), vectorised for float. Float scalars (a column's tail) take the packet path on a
/// broadcast, so every element gets the same bits wherever it sits (fused blocks = whole matrix).
template <class T>
struct GeluValueOp {
  GELUOp::Approximate approximate;
  T operator()(const T& x) const {
    if constexpr (std::is_same_v<T, float>) {
      using P = typename Eigen::internal::packet_traits<float>::type;
      return Eigen::internal::pfirst(packetOp(Eigen::internal::pset1<P>(x)));
    } else {
      return GELUOp::value(x, approximate);
    }
  }
  template <class P>
  P packetOp(const P& x) const {
    return Eigen::internal::pmul(x, packet_gelu_factor<false>(x, approximate));
  }
};

/// dL/dx = dL/dy · GELU'(x), vectorised for float (float scalars as in GeluValueOp).
template <class T>
struct GeluGradOp {
  GELUOp::Approximate approximate;
  T operator()(const T& x, const T& g) const {
    if constexpr (std::is_same_v<T, float>) {
      using P = typename Eigen::internal::packet_traits<float>::type;
      return Eigen::internal::pfirst(packetOp(Eigen::internal::pset1<P>(x), Eigen::internal::pset1<P>(g)));
    } else {
      return g * GELUOp::derivative(x, approximate);
    }
  }
  template <class P>
  P packetOp(const P& x, const P& g) const {
    return Eigen::internal::pmul(g, packet_gelu_factor<true>(x, approximate));
  }
};

}  // namespace detail
}  // namespace resblocks

// Eigen's cost model for the functors above (not part of the API documentation).
/// \cond EIGEN_TRAITS
template <class T>
struct Eigen::internal::functor_traits<resblocks::detail::GeluValueOp<T>> {
  enum { Cost = 30, PacketAccess = std::is_same_v<T, float> };
};
template <class T>
struct Eigen::internal::functor_traits<resblocks::detail::GeluGradOp<T>> {
  enum { Cost = 40, PacketAccess = std::is_same_v<T, float> };
};
/// \endcond

namespace resblocks {

template <class X>
auto GELUOp::forward(const X& x) const {
  return x.unaryExpr(detail::GeluValueOp<typename X::Scalar>{approximate});
}
template <class X, class Y, class G>
auto GELUOp::backward(const X& x, const Y&, const G& g) const {
  return x.binaryExpr(g, detail::GeluGradOp<typename X::Scalar>{approximate});
}

/// \brief Gaussian-error linear unit layer: `GELU<float> g(GELUOp{GELUOp::Approximate::tanh});`.
template <class S = float, int N = Dynamic>
using GELU = Activation<GELUOp, S, N>;

}  // namespace resblocks
