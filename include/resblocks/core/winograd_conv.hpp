#pragma once
/// \file
/// \brief Winograd F(m×m, 3×3) convolution of one channels-last sample (m = 2 or 4), and its weight
/// gradient.
///
/// A 3×3, stride-1 convolution computes each m×m tile of output from a T×T tile of input (T = m + 2)
/// with T² products per (input, output) channel pair instead of 9m² (Lavin & Gray, 2016): 16 instead
/// of 36 for m = 2, 36 instead of 144 for m = 4. V = Bᵀ d B per input tile, U = G g Gᵀ per kernel
/// (once per call), M_ξ = Σ_ci V_ξ U_ξ for each of the T² points ξ, y = Aᵀ M A. The weight gradient
/// runs the same way backwards: dL/dU_ξ = Σ_tiles V_ξ ⊙ (A dY Aᵀ)_ξ, dL/dg = Gᵀ dL/dU G. F(2×2)'s
/// coefficients are 0, ±1 and ±½, exact in binary, so its rounding differs from the direct sum only
/// in its order; F(4×4)'s reach 8 (and G has sixths): about ten times the rounding error, as in cuDNN
/// and oneDNN. winograd_plan picks m per shape. Tiles are taken TB at a time; for each ξ the products
/// run as in the direct kernels (channels in registers, one operand broadcast), and the block's
/// transforms stay in cache (`winograd_scratch_size`). The padding (1) is read as zeros, not copied.

#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/direct_conv.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace resblocks::detail {

/// The 1-D transforms of Winograd F(M, 3) (Lavin & Gray, 2016; points 0, ±1, ±2, ∞ for M = 4): an
/// M×M tile of outputs from a T×T tile of inputs, T = M + 2. Each takes arrays of packets (or of
/// scalars) and is applied to the columns of a tile, then to its rows.
template <int M>
struct WinogradTransform;

/// F(2, 3): Bᵀ, G and Aᵀ have the coefficients 0, ±1 and ±½, exact in binary.
template <>
struct WinogradTransform<2> {
  static constexpr int t = 4;  ///< points per side of an input tile
  /// r = Bᵀ d: d0−d2, d1+d2, d2−d1, d1−d3.
  template <class P>
  static void input(const P (&d)[4], P (&r)[4]) {
    namespace ei = Eigen::internal;
    r[0] = ei::psub(d[0], d[2]);
    r[1] = ei::padd(d[1], d[2]);
    r[2] = ei::psub(d[2], d[1]);
    r[3] = ei::psub(d[1], d[3]);
  }
  /// o = Aᵀ m: m0+m1+m2, m1−m2−m3.
  template <class P>
  static void output(const P (&m)[4], P (&o)[2]) {
    namespace ei = Eigen::internal;
    o[0] = ei::padd(ei::padd(m[0], m[1]), m[2]);
    o[1] = ei::psub(ei::psub(m[1], m[2]), m[3]);
  }
  /// u = G g: g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2.
  template <class P>
  static void weight(const P (&g)[3], P (&u)[4]) {
    namespace ei = Eigen::internal;
    const P half = ei::pset1<P>(0.5);
    u[0] = g[0];
    u[1] = ei::pmul(half, ei::padd(ei::padd(g[0], g[1]), g[2]));
    u[2] = ei::pmul(half, ei::padd(ei::psub(g[0], g[1]), g[2]));
    u[3] = g[2];
  }
  /// e = A y (the transpose of output): y0, y0+y1, y0−y1, −y1.
  template <class P>
  static void output_grad(const P (&y)[2], P (&e)[4]) {
    namespace ei = Eigen::internal;
    e[0] = y[0];
    e[1] = ei::padd(y[0], y[1]);
    e[2] = ei::psub(y[0], y[1]);
    e[3] = ei::pnegate(y[1]);
  }
  /// g = Gᵀ u (the transpose of weight): u0 + (u1+u2)/2, (u1−u2)/2, (u1+u2)/2 + u3.
  template <class P>
  static void weight_grad(const P (&u)[4], P (&g)[3]) {
    namespace ei = Eigen::internal;
    const P half = ei::pset1<P>(0.5), mid = ei::pmul(half, ei::padd(u[1], u[2]));
    g[0] = ei::padd(u[0], mid);
    g[1] = ei::pmul(half, ei::psub(u[1], u[2]));
    g[2] = ei::padd(mid, u[3]);
  }
};

/// F(4, 3): 36 products per 4×4 outputs instead of 16 per 2×2 (2.25 against 4 per output and per
/// channel pair), and fewer transform operations per output. Bᵀ and Aᵀ have integer coefficients;
/// G has sixths and 24ths, so the weight transform rounds.
template <>
struct WinogradTransform<4> {
  static constexpr int t = 6;
  /// r = Bᵀ d: 4d0−5d2+d4, −4d1−4d2+d3+d4, 4d1−4d2−d3+d4, −2d1−d2+2d3+d4, 2d1−d2−2d3+d4, 4d1−5d3+d5.
  template <class P>
  static void input(const P (&d)[6], P (&r)[6]) {
    namespace ei = Eigen::internal;
    const P c4 = ei::pset1<P>(4), c2 = ei::pset1<P>(2), m4 = ei::pset1<P>(-4), m5 = ei::pset1<P>(-5);
    const P a = ei::pmadd(m4, d[2], d[4]), b = ei::pmadd(m4, d[1], d[3]);  // d4−4d2, d3−4d1
    const P c = ei::psub(d[4], d[2]), e = ei::psub(d[3], d[1]);
    r[0] = ei::pmadd(c4, d[0], ei::pmadd(m5, d[2], d[4]));
    r[1] = ei::padd(a, b);
    r[2] = ei::psub(a, b);
    r[3] = ei::pmadd(c2, e, c);
    r[4] = ei::pmadd(ei::pset1<P>(-2), e, c);
    r[5] = ei::pmadd(c4, d[1], ei::pmadd(m5, d[3], d[5]));
  }
  /// o = Aᵀ m: m0+m1+m2+m3+m4, m1−m2+2(m3−m4), m1+m2+4(m3+m4), m1−m2+8(m3−m4)+m5.
  template <class P>
  static void output(const P (&m)[6], P (&o)[4]) {
    namespace ei = Eigen::internal;
    const P a = ei::padd(m[1], m[2]), b = ei::psub(m[1], m[2]), c = ei::padd(m[3], m[4]), d = ei::psub(m[3], m[4]);
    o[0] = ei::padd(ei::padd(m[0], a), c);
    o[1] = ei::pmadd(ei::pset1<P>(2), d, b);
    o[2] = ei::pmadd(ei::pset1<P>(4), c, a);
    o[3] = ei::padd(ei::pmadd(ei::pset1<P>(8), d, b), m[5]);
  }
  /// u = G g: g0/4, −(g0+g1+g2)/6, −(g0−g1+g2)/6, g0/24+g1/12+g2/6, g0/24−g1/12+g2/6, g2.
  template <class P>
  static void weight(const P (&g)[3], P (&u)[6]) {
    namespace ei = Eigen::internal;
    using S = typename ei::unpacket_traits<P>::type;
    const P sixth = ei::pset1<P>(S(1) / S(6)), minus_sixth = ei::pset1<P>(S(-1) / S(6));
    const P even = ei::padd(ei::pmul(g[0], ei::pset1<P>(S(1) / S(24))), ei::pmul(g[2], sixth));
    const P odd = ei::pmul(g[1], ei::pset1<P>(S(1) / S(12)));
    u[0] = ei::pmul(g[0], ei::pset1<P>(S(0.25)));
    u[1] = ei::pmul(ei::padd(ei::padd(g[0], g[1]), g[2]), minus_sixth);
    u[2] = ei::pmul(ei::padd(ei::psub(g[0], g[1]), g[2]), minus_sixth);
    u[3] = ei::padd(even, odd);
    u[4] = ei::psub(even, odd);
    u[5] = g[2];
  }
  /// e = A y: y0, y0+y1+y2+y3, y0−y1+y2−y3, y0+2y1+4y2+8y3, y0−2y1+4y2−8y3, y3.
  template <class P>
  static void output_grad(const P (&y)[4], P (&e)[6]) {
    namespace ei = Eigen::internal;
    const P c4 = ei::pset1<P>(4);
    const P a = ei::padd(y[0], y[2]), b = ei::padd(y[1], y[3]);
    const P c = ei::pmadd(c4, y[2], y[0]), d = ei::pmul(ei::pset1<P>(2), ei::pmadd(c4, y[3], y[1]));
    e[0] = y[0];
    e[1] = ei::padd(a, b);
    e[2] = ei::psub(a, b);
    e[3] = ei::padd(c, d);
    e[4] = ei::psub(c, d);
    e[5] = y[3];
  }
  /// g = Gᵀ u: u0/4 − (u1+u2)/6 + (u3+u4)/24, (u2−u1)/6 + (u3−u4)/12, (u3+u4−u1−u2)/6 + u5.
  template <class P>
  static void weight_grad(const P (&u)[6], P (&g)[3]) {
    namespace ei = Eigen::internal;
    using S = typename ei::unpacket_traits<P>::type;
    const P sixth = ei::pset1<P>(S(1) / S(6)), s12 = ei::padd(u[1], u[2]), s34 = ei::padd(u[3], u[4]);
    g[0] = ei::padd(ei::psub(ei::pmul(u[0], ei::pset1<P>(S(0.25))), ei::pmul(s12, sixth)),
                    ei::pmul(s34, ei::pset1<P>(S(1) / S(24))));
    g[1] = ei::padd(ei::pmul(ei::psub(u[2], u[1]), sixth), ei::pmul(ei::psub(u[3], u[4]), ei::pset1<P>(S(1) / S(12))));
    g[2] = ei::padd(ei::pmul(ei::psub(s34, s12), sixth), u[5]);
  }
};

/// Points of a tile of F(m×m) (T², T = m + 2): products per tile and per channel pair; the transformed
/// weights hold winograd_points · in · out values.
constexpr Index winograd_points(int m) noexcept { return Index(m + 2) * (m + 2); }

/// The M×M tiles of an out_h × out_w output: ⌈out_h/M⌉ × ⌈out_w/M⌉.
struct WinogradTiles {
  Index rows, cols;
  [[nodiscard]] Index count() const noexcept { return rows * cols; }
};

inline WinogradTiles winograd_tiles(int m, Index out_h, Index out_w) noexcept {
  return {(out_h + m - 1) / m, (out_w + m - 1) / m};
}

/// Tiles computed for `tiles` in blocks of tb: a sample's last block overlaps its neighbour, so some
/// are computed twice.
inline Index winograd_computed_tiles(Index tiles, Index tb) noexcept { return (tiles + tb - 1) / tb * tb; }

/// Tiles per block of F(m×m): the direct kernel's register budget over NV packets of output channels,
/// or about half that when it leaves fewer tiles to compute twice in a sample's last, overlapping
/// block (0: fewer tiles than that, use the direct kernel). F(4×4) takes the half size only: its
/// full blocks ran no faster (their 36 transformed points per tile outgrow L1 either way), and one
/// size halves its compiled code.
template <class S>
int winograd_block_tiles(int m, int nv, Index tiles) noexcept {
  const int full = DirectConvTraits<S>::accumulators / nv, half = (full + 1) / 2;
  if (m == 2 && tiles >= full && winograd_computed_tiles(tiles, full) <= winograd_computed_tiles(tiles, half))
    return full;
  if (tiles >= half) return half;
  return 0;
}

/// Whether S has F(4×4) kernels: float does; double runs F(2×2) only (winograd_plan), so its F(4×4)
/// instances are not compiled (about 0.7 s of a user's build).
template <class S>
inline constexpr bool winograd_has_f4 = sizeof(S) <= 4;

/// f.template operator()<M>() for the tile side m: 4 where S has F(4×4) kernels, else 2.
template <class S, class F>
void winograd_dispatch(int m, const F& f) {
  if constexpr (winograd_has_f4<S>) {
    if (m == 4) return f.template operator()<4>();
  }
  f.template operator()<2>();
}

/// How a convolution runs as Winograd: F(m×m, 3×3) in blocks of tb tiles (m = 0: it does not).
struct WinogradPlan {
  int m = 0, tb = 0;
  [[nodiscard]] bool ok() const noexcept { return m > 0; }
  [[nodiscard]] Index points() const noexcept { return winograd_points(m); }
};

/// The plan of a convolution to NV packets of output channels on out_h × out_w outputs. Double runs
/// F(2×2) (exact transforms). Float runs F(4×4) where it computes at most ¾ of F(2×2)'s products,
/// tiles computed twice by an overlapping last block included: its transforms cost more per point
/// and its blocks need more cache, so a smaller saving is not one (measured: 28×28 at 16 channels
/// 0.64 of the products and 1.26× faster, 7×7 at 64 0.56 and 1.5×, 14×14 at 32 0.96 and 1.4× slower).
template <class S>
WinogradPlan winograd_plan(int nv, Index out_h, Index out_w) noexcept {
  const auto plan = [&](int m) -> WinogradPlan {
    const int tb = winograd_block_tiles<S>(m, nv, winograd_tiles(m, out_h, out_w).count());
    return tb > 0 ? WinogradPlan{m, tb} : WinogradPlan{};
  };
  const auto products = [&](WinogradPlan p) {
    return winograd_computed_tiles(winograd_tiles(p.m, out_h, out_w).count(), p.tb) * p.points();
  };
  const WinogradPlan f2 = plan(2);
  if (!winograd_has_f4<S> || !f2.ok()) return f2;
  const WinogradPlan f4 = plan(4);
  return f4.ok() && 4 * products(f4) <= 3 * products(f2) ? f4 : f2;
}

/// The tile side of the weight gradient on out_h × out_w outputs: 2 in double; in float 4 where a
/// sample has at least half a block of F(4×4) tiles (14 with AVX-512). Below that F(4×4) lost: 7×7 at
/// 64 channels (4 tiles) ran 1.14× slower than F(2×2), its 36-point transformed tiles costing more
/// stores than its products saved (blocks of tiles spanning samples did not help: tried).
template <class S>
int winograd_weight_m(Index out_h, Index out_w) noexcept {
  if (!winograd_has_f4<S>) return 2;
  return 2 * winograd_tiles(4, out_h, out_w).count() >= DirectConvTraits<S>::accumulators ? 4 : 2;
}

/// Scratch (elements) of one caller: the block's transformed input V[T²][in/L][TB][L], its products
/// M[T²][out/L][TB][L] (TB·NV ≤ accumulators, NV ≥ 1), and a pixel of zeros (the padding); T ≤ 6.
template <class S>
std::size_t winograd_scratch_size(Index in, Index out) noexcept {
  const auto tb = std::size_t(DirectConvTraits<S>::accumulators);
  return std::size_t(winograd_points(4)) * tb * std::size_t(in + out) + std::size_t(in);
}

/// The pixel of zeros at the end of a winograd_scratch_size scratch (`in` values, zeroed here): what
/// a tile reads in the padding.
template <class S>
S* winograd_zeros(S* scratch, Index in, Index out) {
  S* zeros = scratch + (winograd_scratch_size<S>(in, out) - std::size_t(in));
  std::fill_n(zeros, in, S(0));
  return zeros;
}

/// f(e) with Q = a packet for whole packets of e in [0, n), then Q = S for the rest (e contiguous on
/// every side of the loop's body: it loads and stores with winograd_load and winograd_store).
template <class S, class F>
void winograd_for_each(Index n, const F& f) {
  using P = typename DirectConvTraits<S>::Packet;
  constexpr Index L = DirectConvTraits<S>::lanes;
  const Index whole = n / L * L;
  for (Index e = 0; e < whole; e += L) f.template operator()<P>(e);
  if (whole < n)  // (a separate test: GCC 12 warns of the tail loop of a constant n it never enters)
    for (Index e = whole; e < n; ++e) f.template operator()<S>(e);
}

template <class Q, class S>
Q winograd_load(const S* p) {
  if constexpr (std::is_same_v<Q, S>)
    return *p;
  else
    return Eigen::internal::ploadu<Q>(p);
}

template <class Q, class S>
void winograd_store(S* p, const Q& x) {
  if constexpr (std::is_same_v<Q, S>)
    *p = x;
  else
    Eigen::internal::pstoreu(p, x);
}

/// u[ξ][ci][co] (T²·in·out) = (G g Gᵀ)_ξ of the 3×3 kernels g of w, layout [tap][in][out]: a packet
/// of (ci, co) pairs at a time.
template <class S, int M>
void winograd_weights_m(const S* w, Index in, Index out, S* u) {
  using W = WinogradTransform<M>;
  constexpr int T = W::t;
  const Index plane = in * out;
  winograd_for_each<S>(plane, [&]<class Q>(Index e) {
    Q gt[3][T];
    for (int kw = 0; kw < 3; ++kw) {  // G g, column by column, stored transposed
      const Q col[3] = {winograd_load<Q>(w + kw * plane + e), winograd_load<Q>(w + (3 + kw) * plane + e),
                        winograd_load<Q>(w + (6 + kw) * plane + e)};
      Q gc[T];
      W::weight(col, gc);
      for (int i = 0; i < T; ++i) gt[kw][i] = gc[i];
    }
    for (int i = 0; i < T; ++i) {  // then G on each row of G g
      const Q row3[3] = {gt[0][i], gt[1][i], gt[2][i]};
      Q row[T];
      W::weight(row3, row);
      for (int j = 0; j < T; ++j) winograd_store(u + Index(T * i + j) * plane + e, row[j]);
    }
  });
}

/// winograd_weights_m for the plan's tile side m (2, or 4 where S has F(4×4) kernels): u holds
/// (m+2)²·in·out values.
template <class S>
void winograd_weights(const S* w, Index in, Index out, int m, S* u) {
  winograd_dispatch<S>(m, [&]<int M>() { winograd_weights_m<S, M>(w, in, out, u); });
}

/// V = Bᵀ d B of the nt tiles from tile b of the sample src (s.src_h × s.src_w pixels, s.in
/// channels, padding 1 read as zeros) into v, layout [T²][in/L][TB][L]: Bᵀ on the columns of the
/// T×T tile, then on the rows, a packet of channels at a time.
template <class S, int M, int TB>
void winograd_input_tiles(const DirectConvShape& s, WinogradTiles tiles, Index b, Index nt, const S* src, S* v,
                          const S* zeros) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  using W = WinogradTransform<M>;
  constexpr int L = DirectConvTraits<S>::lanes, T = W::t;
  const Index in = s.in, point = in / L * TB * L;       // V[ξ] to V[ξ+1]
  const auto transform = [&](Index t, const auto& d) {  // pixel (i, j) of the tile at d(i, j)
    S* vt = v + t * L;
    for (Index c = 0; c < in; c += L, vt += TB * L) {
      P r[T][T];
      for (int j = 0; j < T; ++j) {
        P x[T], col[T];
        for (int i = 0; i < T; ++i) x[i] = ei::ploadu<P>(d(i, j) + c);
        W::input(x, col);
        for (int i = 0; i < T; ++i) r[i][j] = col[i];
      }
      for (int i = 0; i < T; ++i) {
        P row[T];
        W::input(r[i], row);
        S* vi = vt + Index(T * i) * point;
        for (int j = 0; j < T; ++j) ei::pstoreu(vi + j * point, row[j]);
      }
    }
  };
  const Index row = s.src_w * in;
  for (Index t = 0; t < nt; ++t) {
    const Index tr = (b + t) / tiles.cols, tc = (b + t) % tiles.cols;
    const Index h0 = M * tr - 1, w0 = M * tc - 1;
    if (t + 2 < nt) {  // the rows of the tile after next, from wherever the sample is
      const Index tn = b + t + 2, hn = M * (tn / tiles.cols) - 1, wn = M * (tn % tiles.cols) - 1;
      for (Index i = std::max<Index>(hn, 0); i < std::min(hn + T, s.src_h); ++i)
        for (Index e = std::max<Index>(wn, 0) * in; e < std::min(wn + T, s.src_w) * in; e += 64 / Index(sizeof(S)))
          ei::prefetch(src + i * row + e);
    }
    if (h0 >= 0 && w0 >= 0 && h0 + T <= s.src_h && w0 + T <= s.src_w) {
      const S* d = src + h0 * row + w0 * in;
      transform(t, [d, row, in](int i, int j) { return d + i * row + j * in; });
    } else {  // pixels in the padding read zeros
      const S* d[T][T];
      for (int i = 0; i < T; ++i)
        for (int j = 0; j < T; ++j) {
          const Index h = h0 + i, w = w0 + j;
          d[i][j] = h >= 0 && h < s.src_h && w >= 0 && w < s.src_w ? src + h * row + w * in : zeros;
        }
      transform(t, [&d](int i, int j) { return d[i][j]; });
    }
  }
}

/// One block of TB tiles from tile b: V = Bᵀ d B into v, the T² products into m, y = Aᵀ M A. The
/// layouts keep every address inside the loops a constant offset from one pointer. Not inlined: its
/// TB × NV accumulators need the whole register file, which an inlining caller's variables can
/// crowd into spills (seen with GCC 12: twice the time).
template <class S, int M, int NV, int TB>
[[gnu::noinline]] void winograd_block(const DirectConvShape& s, WinogradTiles tiles, Index b, const S* src, const S* u,
                                      S* y, S* v, S* m, const S* zeros) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  using W = WinogradTransform<M>;
  constexpr int L = DirectConvTraits<S>::lanes, T = W::t;
  const Index in = s.in, out = s.out, in_packets = in / L;
  winograd_input_tiles<S, M, TB>(s, tiles, b, TB, src, v, zeros);
  // M_ξ[t][co] = Σ_ci V_ξ[t][ci] U_ξ[ci][co], TB × NV packets in registers.
  for (int xi = 0; xi < T * T; ++xi) {
    P acc[TB][NV];
    static_for<TB>([&](auto t) { static_for<NV>([&](auto k) { acc[t][k] = ei::pzero(P{}); }); });
    const S* vx = v + xi * in * TB;
    const S* ux = u + xi * in * out;
    for (Index cp = 0; cp < in_packets; ++cp, vx += TB * L)
      for (int l = 0; l < L; ++l, ux += out) {
        P uv[NV];
        static_for<NV>([&](auto k) { uv[k] = ei::ploadu<P>(ux + k * L); });
        static_for<TB>([&](auto t) {
          const P xb = ei::pset1<P>(vx[t * L + l]);
          static_for<NV>([&](auto k) { acc[t][k] = ei::pmadd(xb, uv[k], acc[t][k]); });
        });
      }
    S* mx = m + xi * NV * TB * L;
    static_for<TB>([&](auto t) { static_for<NV>([&](auto k) { ei::pstoreu(mx + (k * TB + t) * L, acc[t][k]); }); });
  }
  // Output transform: Aᵀ on the columns of M, then on the rows; an M×M tile, cut at the bottom and
  // right edges of the output.
  constexpr Index point = Index(NV) * TB * L;  // M[ξ] to M[ξ+1]
  for (int t = 0; t < TB; ++t) {
    const Index tr = (b + t) / tiles.cols, tc = (b + t) % tiles.cols;
    const Index ho = M * tr, wo = M * tc;
    const Index rows = std::min<Index>(M, s.out_h - ho), cols = std::min<Index>(M, s.out_w - wo);
    S* y0 = y + (ho * s.out_w + wo) * out;
    for (int k = 0; k < NV; ++k) {
      const S* mt = m + (k * TB + t) * L;
      P a[M][T];
      for (int j = 0; j < T; ++j) {
        P col[T], o[M];
        for (int i = 0; i < T; ++i) col[i] = ei::ploadu<P>(mt + (T * i + j) * point);
        W::output(col, o);
        for (int i = 0; i < M; ++i) a[i][j] = o[i];
      }
      for (Index i = 0; i < rows; ++i) {
        P o[M];
        W::output(a[i], o);
        S* yi = y0 + i * s.out_w * out + k * L;
        if (cols == M) {
          for (int j = 0; j < M; ++j) ei::pstoreu(yi + j * out, o[j]);
        } else {
          for (Index j = 0; j < cols; ++j) ei::pstoreu(yi + j * out, o[j]);
        }
      }
    }
  }
}

/// y (out_h·out_w × out, channels fastest) = the 3×3, stride-1, padding-1 convolution of the sample
/// src (s.src_h × s.src_w pixels = out_h × out_w, s.in channels; the padding is not stored) by
/// F(M×M, 3×3) with the transformed weights u (winograd_weights_m), in blocks of tb tiles
/// (winograd_block_tiles with M; the last block overlaps its neighbour: the same values are written twice).
/// s.in and s.out are whole packets, s.out 1, 2 or 4 of them; scratch holds winograd_scratch_size
/// elements.
template <class S, int M>
void winograd_conv_m(const DirectConvShape& s, int tb, const S* src, const S* u, S* y, S* scratch) {
  constexpr int A = DirectConvTraits<S>::accumulators, L = DirectConvTraits<S>::lanes;
  const WinogradTiles tiles = winograd_tiles(M, s.out_h, s.out_w);
  const S* zeros = winograd_zeros(scratch, s.in, s.out);
  auto run = [&]<int NV, int TB>() {
    S* v = scratch;
    S* m = scratch + winograd_points(M) * TB * s.in;
    for (Index b0 = 0;; b0 += TB) {
      const Index b = std::min(b0, tiles.count() - TB);
      winograd_block<S, M, NV, TB>(s, tiles, b, src, u, y, v, m, zeros);
      if (b + TB >= tiles.count()) break;
    }
  };
  auto pick = [&]<int NV>() {
    if constexpr (M == 2) {  // F(4×4) has the half size only (winograd_block_tiles)
      if (tb == A / NV) return run.template operator()<NV, A / NV>();
    }
    run.template operator()<NV, (A / NV + 1) / 2>();
  };
  const Index nv = s.out / L;
  if (nv == 1)
    pick.template operator()<1>();
  else if (nv == 2)
    pick.template operator()<2>();
  else
    pick.template operator()<4>();
}

/// winograd_conv_m by the plan (winograd_plan): F(plan.m × plan.m) in blocks of plan.tb tiles, u from
/// winograd_weights with plan.m.
template <class S>
void winograd_conv(const DirectConvShape& s, WinogradPlan plan, const S* src, const S* u, S* y, S* scratch) {
  winograd_dispatch<S>(plan.m, [&]<int M>() { winograd_conv_m<S, M>(s, plan.tb, src, u, y, scratch); });
}

/// du[ξ][ci][co] (T²·in·out) += Σ over the sample's tiles of V_ξ[t][ci] · D_ξ[t][co]: V = Bᵀ d B of
/// its input tiles (src: s.src_h × s.src_w pixels, padding 1 read as zeros), D = A dY Aᵀ of its M×M
/// output-gradient tiles (dy: s.out_h × s.out_w × s.out, zero past the edge). That is dL/dU, the
/// gradient of the transformed weights (y = Aᵀ (U ⊙ V) A); winograd_weight_grad turns it into dL/dw.
/// Tiles are taken A at a time (the last block shorter); CB input channels × NV packets of du in
/// registers per pass over a block. With `overwrite`, du's old values are not read (=, not +=): the
/// first block's sums start from zero, as they would from a zeroed du (the same bits, no zeroing pass).
template <class S, int M, int NV, int CB>
void winograd_weight_tiles(const DirectConvShape& s, const S* src, const S* dy, S* du, S* scratch, bool overwrite) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  using W = WinogradTransform<M>;
  constexpr int L = DirectConvTraits<S>::lanes, TB = DirectConvTraits<S>::accumulators, T = W::t, N = T * T;
  static_assert(L % CB == 0, "a block of input channels lies in one packet");
  const WinogradTiles tiles = winograd_tiles(M, s.out_h, s.out_w);
  const Index in = s.in, out = s.out, in_packets = in / L;
  S* v = scratch;
  S* d = scratch + Index(N * TB) * in;
  const S* zeros = winograd_zeros(scratch, in, out);
  for (Index b = 0; b < tiles.count(); b += TB) {
    const Index nt = std::min<Index>(TB, tiles.count() - b);
    winograd_input_tiles<S, M, TB>(s, tiles, b, nt, src, v, zeros);
    // D = A dY Aᵀ: A on the columns of the M×M tile (zero past the edge), then on the rows.
    constexpr Index point = Index(NV) * TB * L;  // D[ξ] to D[ξ+1]
    for (Index t = 0; t < nt; ++t) {
      const Index tr = (b + t) / tiles.cols, tc = (b + t) % tiles.cols, ho = M * tr, wo = M * tc;
      const Index rows = std::min<Index>(M, s.out_h - ho), cols = std::min<Index>(M, s.out_w - wo);
      const S* g = dy + (ho * s.out_w + wo) * out;
      for (int k = 0; k < NV; ++k) {
        P e[T][M];
        for (int j = 0; j < M; ++j) {
          P col[M], ej[T];
          for (int i = 0; i < M; ++i)
            col[i] = i < rows && j < cols ? ei::ploadu<P>(g + (i * s.out_w + j) * out + k * L) : ei::pzero(P{});
          W::output_grad(col, ej);
          for (int i = 0; i < T; ++i) e[i][j] = ej[i];
        }
        S* dt = d + (Index(k) * TB + t) * L;
        for (int i = 0; i < T; ++i) {
          P row[T];
          W::output_grad(e[i], row);
          S* di = dt + Index(T * i) * point;
          for (int j = 0; j < T; ++j) ei::pstoreu(di + j * point, row[j]);
        }
      }
    }
    // du_ξ[ci][co] += Σ_t V_ξ[t][ci] D_ξ[t][co], CB × NV packets in registers.
    for (int xi = 0; xi < N; ++xi)
      for (Index cp = 0; cp < in_packets; ++cp)
        for (int l0 = 0; l0 < L; l0 += CB) {
          S* dux = du + (xi * in + cp * L + l0) * out;
          P acc[CB][NV];
          const bool fresh = overwrite && b == 0;
          static_for<CB>([&](auto c) {
            static_for<NV>([&](auto k) { acc[c][k] = fresh ? ei::pzero(P{}) : ei::ploadu<P>(dux + c * out + k * L); });
          });
          const S* vt = v + ((xi * in_packets + cp) * TB) * L + l0;
          const S* dt = d + xi * point;
          for (Index t = 0; t < nt; ++t, vt += L, dt += L) {
            P gv[NV];
            static_for<NV>([&](auto k) { gv[k] = ei::ploadu<P>(dt + k * TB * L); });
            static_for<CB>([&](auto c) {
              const P xb = ei::pset1<P>(vt[c]);
              static_for<NV>([&](auto k) { acc[c][k] = ei::pmadd(xb, gv[k], acc[c][k]); });
            });
          }
          static_for<CB>(
              [&](auto c) { static_for<NV>([&](auto k) { ei::pstoreu(dux + c * out + k * L, acc[c][k]); }); });
        }
  }
}

/// du (T²·in·out, [ξ][in][out]) += the F(M×M) Winograd weight gradient of one sample
/// (winograd_weight_tiles; = with `overwrite`): s.in whole packets, s.out 1, 2 or 4 of them; scratch
/// holds winograd_scratch_size elements.
template <class S, int M>
void winograd_conv_weight_m(const DirectConvShape& s, const S* src, const S* dy, S* du, S* scratch, bool overwrite) {
  constexpr int A = DirectConvTraits<S>::accumulators, L = DirectConvTraits<S>::lanes;
  constexpr int cb1 = std::min(L, A >= 28 ? 16 : 8), cb2 = std::min(L, A >= 28 ? 8 : 4),
                cb4 = std::min(L, A >= 28 ? 4 : 2);
  const Index nv = s.out / L;
  if (nv == 1)
    winograd_weight_tiles<S, M, 1, cb1>(s, src, dy, du, scratch, overwrite);
  else if (nv == 2)
    winograd_weight_tiles<S, M, 2, cb2>(s, src, dy, du, scratch, overwrite);
  else
    winograd_weight_tiles<S, M, 4, cb4>(s, src, dy, du, scratch, overwrite);
}

/// winograd_conv_weight_m for the tile side m (winograd_weight_m): du holds (m+2)²·in·out values.
template <class S>
void winograd_conv_weight(const DirectConvShape& s, int m, const S* src, const S* dy, S* du, S* scratch,
                          bool overwrite) {
  winograd_dispatch<S>(m, [&]<int M>() { winograd_conv_weight_m<S, M>(s, src, dy, du, scratch, overwrite); });
}

/// dw[tap][ci][co] += (Gᵀ du G)[kh][kw] for each (ci, co): dL/dw from dL/dU (U = G g Gᵀ, F(M×M)), a
/// packet of (ci, co) pairs at a time.
template <class S, int M>
void winograd_weight_grad_m(const S* du, Index in, Index out, S* dw) {
  using W = WinogradTransform<M>;
  constexpr int T = W::t;
  const Index plane = in * out;
  winograd_for_each<S>(plane, [&]<class Q>(Index e) {
    Q t[3][T];
    for (int j = 0; j < T; ++j) {  // t = Gᵀ du on the columns
      Q col[T], g[3];
      for (int i = 0; i < T; ++i) col[i] = winograd_load<Q>(du + (T * i + j) * plane + e);
      W::weight_grad(col, g);
      for (int kh = 0; kh < 3; ++kh) t[kh][j] = g[kh];
    }
    for (int kh = 0; kh < 3; ++kh) {  // then on the rows
      Q g[3];
      W::weight_grad(t[kh], g);
      S* w = dw + Index(kh * 3) * plane + e;
      for (int kw = 0; kw < 3; ++kw)
        winograd_store(w + kw * plane, Eigen::internal::padd(winograd_load<Q>(w + kw * plane), g[kw]));
    }
  });
}

/// winograd_weight_grad_m for the tile side m (2 or 4) du was summed with.
template <class S>
void winograd_weight_grad(const S* du, Index in, Index out, int m, S* dw) {
  winograd_dispatch<S>(m, [&]<int M>() { winograd_weight_grad_m<S, M>(du, in, out, dw); });
}

// The float and double instances compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RESBLOCKS_WINOGRAD_KERNELS(S)                                                                                  \
  RESBLOCKS_EXTERN_KERNEL(void winograd_weights<S>(const S*, Index, Index, int, S*))                                   \
  RESBLOCKS_EXTERN_KERNEL(void winograd_conv<S>(const DirectConvShape&, WinogradPlan, const S*, const S*, S*, S*))     \
  RESBLOCKS_EXTERN_KERNEL(void winograd_conv_weight<S>(const DirectConvShape&, int, const S*, const S*, S*, S*, bool)) \
  RESBLOCKS_EXTERN_KERNEL(void winograd_weight_grad<S>(const S*, Index, Index, int, S*))
// NOLINTEND(bugprone-macro-parentheses)
RESBLOCKS_WINOGRAD_KERNELS(float)
RESBLOCKS_WINOGRAD_KERNELS(double)

}  // namespace resblocks::detail
