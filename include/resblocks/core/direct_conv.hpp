#pragma once
/// \file
/// \brief Direct convolution kernels on channels-last images: no im2col matrix, no packing.
///
/// A k×k convolution of one zero-padded sample, channels fastest, with the output channels held in
/// SIMD registers: each input value is broadcast once per tap and multiplied into a whole row block
/// of outputs (PB pixels × NV packets of output channels, all accumulators in registers). The same
/// kernel computes dL/dx of a stride-1 convolution (dL/dy padded by k−1−p, the flipped weights);
/// a third kernel accumulates dL/dW. Conv2d uses them where they apply (see direct_conv_plan).

#include "resblocks/core/compiled_kernels.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <utility>

namespace resblocks::detail {

using Eigen::Index;

/// One sample's geometry: a padded source of src_h × src_w pixels with `in` channels, read by a
/// k×k kernel with `stride` at out_h × out_w positions, `out` output channels.
struct DirectConvShape {
  Index in, out, k, stride, src_h, src_w, out_h, out_w;
};

/// Calls f(std::integral_constant<int, i>{}) for i = 0 … N−1, unrolled.
template <int N, class F>
inline void static_for(const F& f) {
  [&]<int... i>(std::integer_sequence<int, i...>) { (f(std::integral_constant<int, i>{}), ...); }
  (std::make_integer_sequence<int, N>{});
}

/// The register blocking of the kernels for this scalar: accumulators held (28 of 32 AVX-512
/// registers; 12 of 16 on AVX2/SSE), and the SIMD width.
template <class S>
struct DirectConvTraits {
  using Packet = typename Eigen::internal::packet_traits<S>::type;
  static constexpr int lanes = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr int accumulators = lanes * int(sizeof(S)) >= 64 ? 28 : 12;
};

/// y[p][co] = Σ_{kh,kw,ci} src[(kh·src_w + kw + p·stride)·in + ci] · w[((kh·k + kw)·in + ci)·out + co]
/// for the PB output pixels of one row block (src points at its first tap, y at its first pixel).
template <class S, int NV, int PB>
void direct_conv_block(const DirectConvShape& s, const S* src, const S* w, S* y) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  constexpr int L = DirectConvTraits<S>::lanes;
  P acc[PB][NV];
  static_for<PB>([&](auto p) { static_for<NV>([&](auto v) { acc[p][v] = ei::pzero(P{}); }); });
  const Index step = s.stride * s.in;
  for (Index kh = 0; kh < s.k; ++kh)
    for (Index kw = 0; kw < s.k; ++kw) {
      const S* x = src + (kh * s.src_w + kw) * s.in;
      const S* wt = w + (kh * s.k + kw) * s.in * s.out;
      for (Index ci = 0; ci < s.in; ++ci, wt += s.out) {
        P wv[NV];
        static_for<NV>([&](auto v) { wv[v] = ei::ploadu<P>(wt + v * L); });
        static_for<PB>([&](auto p) {
          const P xb = ei::pset1<P>(x[p * step + ci]);
          static_for<NV>([&](auto v) { acc[p][v] = ei::pmadd(xb, wv[v], acc[p][v]); });
        });
      }
    }
  static_for<PB>([&](auto p) { static_for<NV>([&](auto v) { ei::pstoreu(y + p * s.out + v * L, acc[p][v]); }); });
}

/// The whole output of one sample, row by row in blocks of PB pixels (the last block of a row
/// overlaps its neighbour when PB does not divide out_w: the same values are written twice).
template <class S, int NV, int PB>
void direct_conv_rows(const DirectConvShape& s, const S* src, const S* w, S* y) {
  for (Index ho = 0; ho < s.out_h; ++ho)
    for (Index wo = 0;; wo += PB) {
      const Index w0 = std::min(wo, s.out_w - PB);
      direct_conv_block<S, NV, PB>(s, src + (ho * s.stride * s.src_w + w0 * s.stride) * s.in, w,
                                   y + (ho * s.out_w + w0) * s.out);
      if (w0 + PB >= s.out_w) break;
    }
}

/// dw[((kh·k + kw)·in + ci)·out + co] += Σ_pixels src[pixel under tap (kh, kw)][ci] · dy[pixel][co],
/// for the CB input channels from ci0 and output rows [h0, h1), accumulators in registers.
template <class S, int NV, int CB>
void direct_conv_weight_block(const DirectConvShape& s, const S* src, const S* dy, Index kh, Index kw, Index ci0,
                              Index h0, Index h1, S* dw) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  constexpr int L = DirectConvTraits<S>::lanes;
  S* out = dw + ((kh * s.k + kw) * s.in + ci0) * s.out;
  P acc[CB][NV];
  static_for<CB>([&](auto c) { static_for<NV>([&](auto v) { acc[c][v] = ei::ploadu<P>(out + c * s.out + v * L); }); });
  for (Index ho = h0; ho < h1; ++ho) {
    const S* x = src + ((ho * s.stride + kh) * s.src_w + kw) * s.in + ci0;
    const S* g = dy + ho * s.out_w * s.out;
    for (Index wo = 0; wo < s.out_w; ++wo, x += s.stride * s.in, g += s.out) {
      P gv[NV];
      static_for<NV>([&](auto v) { gv[v] = ei::ploadu<P>(g + v * L); });
      static_for<CB>([&](auto c) {
        const P xb = ei::pset1<P>(x[c]);
        static_for<NV>([&](auto v) { acc[c][v] = ei::pmadd(xb, gv[v], acc[c][v]); });
      });
    }
  }
  static_for<CB>([&](auto c) { static_for<NV>([&](auto v) { ei::pstoreu(out + c * s.out + v * L, acc[c][v]); }); });
}

/// dw += the weight gradient of one sample, over chunks of output rows that stay in L1.
template <class S, int NV, int CB>
void direct_conv_weight_rows(const DirectConvShape& s, const S* src, const S* dy, S* dw) {
  const Index rows = std::max<Index>(1, 64 / std::max<Index>(s.out_w, 1));  // ≥ 64 pixels per chunk
  for (Index h0 = 0; h0 < s.out_h; h0 += rows) {
    const Index h1 = std::min(s.out_h, h0 + rows);
    for (Index kh = 0; kh < s.k; ++kh)
      for (Index kw = 0; kw < s.k; ++kw) {
        Index ci = 0;
        for (; ci + CB <= s.in; ci += CB) direct_conv_weight_block<S, NV, CB>(s, src, dy, kh, kw, ci, h0, h1, dw);
        for (; ci < s.in; ++ci) direct_conv_weight_block<S, NV, 1>(s, src, dy, kh, kw, ci, h0, h1, dw);
      }
  }
}

/// Which kernels fit a convolution with `out` output channels (forward: `out` of the convolution;
/// dL/dx: its `in`) and rows of out_w pixels: NV packets of output channels, PB pixels per block.
struct DirectConvPlan {
  int nv = 0, pb = 0;
  [[nodiscard]] bool ok() const noexcept { return nv > 0; }
};

/// NV ∈ {1, 2, 4} packets of output channels; PB = accumulators / NV pixels, or half that for
/// narrow images; none (GEMM path) otherwise.
template <class S>
DirectConvPlan direct_conv_plan(Index out_channels, Index out_w) {
  constexpr int L = DirectConvTraits<S>::lanes, A = DirectConvTraits<S>::accumulators;
  if (out_channels % L != 0) return {};
  const Index nv = out_channels / L;
  if (nv != 1 && nv != 2 && nv != 4) return {};
  const int full = A / int(nv);
  if (out_w >= full) return {int(nv), full};
  if (out_w >= full / 2 && full / 2 >= 1) return {int(nv), full / 2};
  return {};
}

/// y (out_h·out_w × out, channels fastest) = the convolution of the padded sample src with w
/// (layout [tap][in][out]), by the kernels `plan` picked.
template <class S>
void direct_conv(const DirectConvPlan& plan, const DirectConvShape& s, const S* src, const S* w, S* y) {
  constexpr int A = DirectConvTraits<S>::accumulators;
  auto run = [&]<int NV>() {
    if (plan.pb == A / NV)
      direct_conv_rows<S, NV, A / NV>(s, src, w, y);
    else
      direct_conv_rows<S, NV, A / NV / 2>(s, src, w, y);
  };
  if (plan.nv == 1)
    run.template operator()<1>();
  else if (plan.nv == 2)
    run.template operator()<2>();
  else
    run.template operator()<4>();
}

/// dw ([tap][in][out], out = NV packets) += the weight gradient of one padded sample src and its dy.
template <class S>
void direct_conv_weight(const DirectConvPlan& plan, const DirectConvShape& s, const S* src, const S* dy, S* dw) {
  constexpr int A = DirectConvTraits<S>::accumulators;
  // CB input channels × NV packets of accumulators: at most ~half the budget, a power of two.
  if (plan.nv == 1)
    direct_conv_weight_rows<S, 1, A >= 28 ? 16 : 8>(s, src, dy, dw);
  else if (plan.nv == 2)
    direct_conv_weight_rows<S, 2, A >= 28 ? 8 : 4>(s, src, dy, dw);
  else
    direct_conv_weight_rows<S, 4, A >= 28 ? 4 : 2>(s, src, dy, dw);
}

/// dst (src_h·src_w × c, zero border of `pad`) = the h × w × c sample src, channels fastest.
template <class S>
void pad_sample(const S* src, Index h, Index w, Index c, Index pad, Index dst_h, Index dst_w, S* dst) {
  using Row = Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, 1>>;
  using ConstRow = Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>>;
  const Index row = dst_w * c;
  Row(dst, pad * row).setZero();
  for (Index y = 0; y < h; ++y) {
    S* d = dst + (pad + y) * row;
    Row(d, pad * c).setZero();
    Row(d + pad * c, w * c) = ConstRow(src + y * w * c, w * c);
    Row(d + (pad + w) * c, (dst_w - pad - w) * c).setZero();
  }
  Row(dst + (pad + h) * row, (dst_h - pad - h) * row).setZero();
}

// The float and double instances compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
// (S is a template argument there: it cannot be parenthesised.)
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RESBLOCKS_DIRECT_CONV_KERNELS(S)                                                                              \
  RESBLOCKS_EXTERN_KERNEL(void direct_conv<S>(const DirectConvPlan&, const DirectConvShape&, const S*, const S*, S*)) \
  RESBLOCKS_EXTERN_KERNEL(                                                                                            \
      void direct_conv_weight<S>(const DirectConvPlan&, const DirectConvShape&, const S*, const S*, S*))              \
  RESBLOCKS_EXTERN_KERNEL(void pad_sample<S>(const S*, Index, Index, Index, Index, Index, Index, S*))
// NOLINTEND(bugprone-macro-parentheses)
RESBLOCKS_DIRECT_CONV_KERNELS(float)
RESBLOCKS_DIRECT_CONV_KERNELS(double)

}  // namespace resblocks::detail
