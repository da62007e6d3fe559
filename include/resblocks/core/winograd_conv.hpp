#pragma once
/// \file
/// \brief Winograd F(2×2, 3×3) convolution of one channels-last sample, and its weight gradient.
///
/// A 3×3, stride-1 convolution computes each 2×2 tile of output from a 4×4 tile of input with 16
/// products per (input, output) channel pair instead of 36 (Lavin & Gray, 2016): V = Bᵀ d B per
/// input tile, U = G g Gᵀ per kernel (once per call), M_ξ = Σ_ci V_ξ U_ξ for each of the 16 points ξ,
/// y = Aᵀ M A. The weight gradient runs the same way backwards: dL/dU_ξ = Σ_tiles V_ξ ⊙ (A dY Aᵀ)_ξ,
/// dL/dg = Gᵀ dL/dU G. The transforms' coefficients are 0, ±1 and ±½: exact in binary, so the
/// rounding differs from the direct sum only in its order. Tiles are taken TB at a time; for each ξ
/// the products run as in the direct kernels (channels in registers, one operand broadcast), and the
/// block's transforms stay in cache (`winograd_scratch_size`). The padding (1) is read as zeros, not
/// copied.

#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/direct_conv.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>

namespace resblocks::detail {

/// The 2×2 tiles of an out_h × out_w output: ⌈out_h/2⌉ × ⌈out_w/2⌉.
struct WinogradTiles {
  Index rows, cols;
  [[nodiscard]] Index count() const noexcept { return rows * cols; }
};

inline WinogradTiles winograd_tiles(Index out_h, Index out_w) noexcept { return {(out_h + 1) / 2, (out_w + 1) / 2}; }

/// Tiles per block: the direct kernel's register budget over NV packets of output channels, or about
/// half that when it leaves fewer tiles to compute twice in a sample's last, overlapping block
/// (0: fewer tiles than that, use the direct kernel).
template <class S>
int winograd_block_tiles(int nv, Index tiles) noexcept {
  const int full = DirectConvTraits<S>::accumulators / nv, half = (full + 1) / 2;
  const auto computed = [tiles](Index tb) { return (tiles + tb - 1) / tb * tb; };
  if (tiles >= full && computed(full) <= computed(half)) return full;
  if (tiles >= half) return half;
  return 0;
}

/// Scratch (elements) of one caller: the block's transformed input V[16][in/L][TB][L], its products
/// M[16][out/L][TB][L] (TB·NV ≤ accumulators, NV ≥ 1), and a pixel of zeros (the padding).
template <class S>
std::size_t winograd_scratch_size(Index in, Index out) noexcept {
  const auto tb = std::size_t(DirectConvTraits<S>::accumulators);
  return 16 * tb * std::size_t(in + out) + std::size_t(in);
}

/// u[ξ][ci][co] (16·in·out) = (G g Gᵀ)_ξ of the 3×3 kernels g of w, layout [tap][in][out].
template <class S>
void winograd_weights(const S* w, Index in, Index out, S* u) {
  const Index plane = in * out;
  for (Index ci = 0; ci < in; ++ci)
    for (Index co = 0; co < out; ++co) {
      S g[3][3], t[4][3];
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw) g[kh][kw] = w[(kh * 3 + kw) * plane + ci * out + co];
      for (int j = 0; j < 3; ++j) {  // t = G g: rows g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2
        t[0][j] = g[0][j];
        t[1][j] = S(0.5) * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = S(0.5) * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; ++i) {  // U = t Gᵀ
        S* ui = u + Index(4 * i) * plane + ci * out + co;
        ui[0] = t[i][0];
        ui[plane] = S(0.5) * (t[i][0] + t[i][1] + t[i][2]);
        ui[2 * plane] = S(0.5) * (t[i][0] - t[i][1] + t[i][2]);
        ui[3 * plane] = t[i][2];
      }
    }
}

/// V = Bᵀ d B of the nt tiles from tile b of the sample src (s.src_h × s.src_w pixels, s.in
/// channels, padding 1 read as zeros) into v, layout [16][in/L][TB][L]: rows r = Bᵀ d (d0−d2, d1+d2,
/// d2−d1, d1−d3), then the same on the columns of r, a packet of channels at a time.
template <class S, int TB>
void winograd_input_tiles(const DirectConvShape& s, WinogradTiles tiles, Index b, Index nt, const S* src, S* v,
                          const S* zeros) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  constexpr int L = DirectConvTraits<S>::lanes;
  const Index in = s.in, point = in / L * TB * L;       // V[ξ] to V[ξ+1]
  const auto transform = [&](Index t, const auto& d) {  // pixel (i, j) of the tile at d(i, j)
    S* vt = v + t * L;
    for (Index c = 0; c < in; c += L, vt += TB * L) {
      P r[4][4];
      for (int j = 0; j < 4; ++j) {
        const P x0 = ei::ploadu<P>(d(0, j) + c), x1 = ei::ploadu<P>(d(1, j) + c), x2 = ei::ploadu<P>(d(2, j) + c),
                x3 = ei::ploadu<P>(d(3, j) + c);
        r[0][j] = ei::psub(x0, x2);
        r[1][j] = ei::padd(x1, x2);
        r[2][j] = ei::psub(x2, x1);
        r[3][j] = ei::psub(x1, x3);
      }
      for (int i = 0; i < 4; ++i) {
        S* vi = vt + Index(4 * i) * point;
        ei::pstoreu(vi, ei::psub(r[i][0], r[i][2]));
        ei::pstoreu(vi + point, ei::padd(r[i][1], r[i][2]));
        ei::pstoreu(vi + 2 * point, ei::psub(r[i][2], r[i][1]));
        ei::pstoreu(vi + 3 * point, ei::psub(r[i][1], r[i][3]));
      }
    }
  };
  const Index row = s.src_w * in;
  for (Index t = 0; t < nt; ++t) {
    const Index tr = (b + t) / tiles.cols, tc = (b + t) % tiles.cols;
    const Index h0 = 2 * tr - 1, w0 = 2 * tc - 1;
    if (t + 2 < nt) {  // the rows of the tile after next, from wherever the sample is
      const Index tn = b + t + 2, hn = 2 * (tn / tiles.cols) - 1, wn = 2 * (tn % tiles.cols) - 1;
      for (Index i = std::max<Index>(hn, 0); i < std::min(hn + 4, s.src_h); ++i)
        for (Index e = std::max<Index>(wn, 0) * in; e < std::min(wn + 4, s.src_w) * in; e += 64 / Index(sizeof(S)))
          ei::prefetch(src + i * row + e);
    }
    if (h0 >= 0 && w0 >= 0 && h0 + 4 <= s.src_h && w0 + 4 <= s.src_w) {
      const S* d = src + h0 * row + w0 * in;
      transform(t, [d, row, in](int i, int j) { return d + i * row + j * in; });
    } else {  // pixels in the padding read zeros
      const S* d[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          const Index h = h0 + i, w = w0 + j;
          d[i][j] = h >= 0 && h < s.src_h && w >= 0 && w < s.src_w ? src + h * row + w * in : zeros;
        }
      transform(t, [&d](int i, int j) { return d[i][j]; });
    }
  }
}

/// One block of TB tiles from tile b: V = Bᵀ d B into v, the 16 products into m, y = Aᵀ M A. The
/// layouts keep every address inside the loops a constant offset from one pointer.
template <class S, int NV, int TB>
void winograd_block(const DirectConvShape& s, WinogradTiles tiles, Index b, const S* src, const S* u, S* y, S* v, S* m,
                    const S* zeros) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  constexpr int L = DirectConvTraits<S>::lanes;
  const Index in = s.in, out = s.out, in_packets = in / L;
  winograd_input_tiles<S, TB>(s, tiles, b, TB, src, v, zeros);
  // M_ξ[t][co] = Σ_ci V_ξ[t][ci] U_ξ[ci][co], TB × NV packets in registers.
  for (int xi = 0; xi < 16; ++xi) {
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
  // Output transform: a = Aᵀ M (m0+m1+m2, m1−m2−m3) on the rows, then on the columns; a 2×2 tile,
  // cut at the bottom and right edges of an odd-sized output.
  constexpr Index point = Index(NV) * TB * L;  // M[ξ] to M[ξ+1]
  for (int t = 0; t < TB; ++t) {
    const Index tr = (b + t) / tiles.cols, tc = (b + t) % tiles.cols;
    const Index ho = 2 * tr, wo = 2 * tc;
    const bool row2 = ho + 1 < s.out_h, col2 = wo + 1 < s.out_w;
    S* y0 = y + (ho * s.out_w + wo) * out;
    for (int k = 0; k < NV; ++k) {
      const S* mt = m + (k * TB + t) * L;
      P a[2][4];
      for (int j = 0; j < 4; ++j) {
        const P m0 = ei::ploadu<P>(mt + j * point), m1 = ei::ploadu<P>(mt + (4 + j) * point),
                m2 = ei::ploadu<P>(mt + (8 + j) * point), m3 = ei::ploadu<P>(mt + (12 + j) * point);
        a[0][j] = ei::padd(ei::padd(m0, m1), m2);
        a[1][j] = ei::psub(ei::psub(m1, m2), m3);
      }
      for (int i = 0; i < 2; ++i) {
        if (i == 1 && !row2) break;
        S* yi = y0 + i * s.out_w * out + k * L;
        ei::pstoreu(yi, ei::padd(ei::padd(a[i][0], a[i][1]), a[i][2]));
        if (col2) ei::pstoreu(yi + out, ei::psub(ei::psub(a[i][1], a[i][2]), a[i][3]));
      }
    }
  }
}

/// y (out_h·out_w × out, channels fastest) = the 3×3, stride-1, padding-1 convolution of the sample
/// src (s.src_h × s.src_w pixels = out_h × out_w, s.in channels; the padding is not stored) with the
/// transformed weights u (winograd_weights), in blocks of tb tiles (winograd_block_tiles; the last
/// block overlaps its neighbour: the same values are written twice). s.in and s.out are whole
/// packets, s.out 1, 2 or 4 of them; scratch holds winograd_scratch_size elements.
template <class S>
void winograd_conv(const DirectConvShape& s, int tb, const S* src, const S* u, S* y, S* scratch) {
  constexpr int A = DirectConvTraits<S>::accumulators, L = DirectConvTraits<S>::lanes;
  const WinogradTiles tiles = winograd_tiles(s.out_h, s.out_w);
  S* zeros = scratch + 16 * std::size_t(A) * std::size_t(s.in + s.out);
  std::fill_n(zeros, s.in, S(0));
  auto run = [&]<int NV, int TB>() {
    S* v = scratch;
    S* m = scratch + Index(16 * TB) * s.in;
    for (Index b0 = 0;; b0 += TB) {
      const Index b = std::min(b0, tiles.count() - TB);
      winograd_block<S, NV, TB>(s, tiles, b, src, u, y, v, m, zeros);
      if (b + TB >= tiles.count()) break;
    }
  };
  auto pick = [&]<int NV>() {
    if (tb == A / NV)
      run.template operator()<NV, A / NV>();
    else
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

/// du[ξ][ci][co] (16·in·out) += Σ over the sample's tiles of V_ξ[t][ci] · D_ξ[t][co]: V = Bᵀ d B of
/// its input tiles (src: s.src_h × s.src_w pixels, padding 1 read as zeros), D = A dY Aᵀ of its 2×2
/// output-gradient tiles (dy: s.out_h × s.out_w × s.out, zero past an odd edge). That is dL/dU, the
/// gradient of the transformed weights (y = Aᵀ (U ⊙ V) A); winograd_weight_grad turns it into dL/dw.
/// Tiles are taken A at a time (the last block shorter); CB input channels × NV packets of du in
/// registers per pass over a block.
template <class S, int NV, int CB>
void winograd_weight_tiles(const DirectConvShape& s, const S* src, const S* dy, S* du, S* scratch) {
  namespace ei = Eigen::internal;
  using P = typename DirectConvTraits<S>::Packet;
  constexpr int L = DirectConvTraits<S>::lanes, TB = DirectConvTraits<S>::accumulators;
  static_assert(L % CB == 0, "a block of input channels lies in one packet");
  const WinogradTiles tiles = winograd_tiles(s.out_h, s.out_w);
  const Index in = s.in, out = s.out, in_packets = in / L;
  S* v = scratch;
  S* d = scratch + Index(16 * TB) * in;
  S* zeros = d + Index(16 * TB) * out;
  std::fill_n(zeros, in, S(0));
  for (Index b = 0; b < tiles.count(); b += TB) {
    const Index nt = std::min<Index>(TB, tiles.count() - b);
    winograd_input_tiles<S, TB>(s, tiles, b, nt, src, v, zeros);
    // D = A dY Aᵀ: e = A dY (y0, y0+y1, y0−y1, −y1) on the rows of the 2×2 tile, then on the columns.
    constexpr Index point = Index(NV) * TB * L;  // D[ξ] to D[ξ+1]
    for (Index t = 0; t < nt; ++t) {
      const Index tr = (b + t) / tiles.cols, tc = (b + t) % tiles.cols, ho = 2 * tr, wo = 2 * tc;
      const bool row2 = ho + 1 < s.out_h, col2 = wo + 1 < s.out_w;
      const S* g = dy + (ho * s.out_w + wo) * out;
      for (int k = 0; k < NV; ++k) {
        const P zero = ei::pzero(P{});
        const P y00 = ei::ploadu<P>(g + k * L), y01 = col2 ? ei::ploadu<P>(g + out + k * L) : zero;
        const P y10 = row2 ? ei::ploadu<P>(g + s.out_w * out + k * L) : zero;
        const P y11 = row2 && col2 ? ei::ploadu<P>(g + (s.out_w + 1) * out + k * L) : zero;
        const P e[4][2] = {{y00, y01},
                           {ei::padd(y00, y10), ei::padd(y01, y11)},
                           {ei::psub(y00, y10), ei::psub(y01, y11)},
                           {ei::pnegate(y10), ei::pnegate(y11)}};
        S* dt = d + (Index(k) * TB + t) * L;
        for (int i = 0; i < 4; ++i) {
          S* di = dt + Index(4 * i) * point;
          ei::pstoreu(di, e[i][0]);
          ei::pstoreu(di + point, ei::padd(e[i][0], e[i][1]));
          ei::pstoreu(di + 2 * point, ei::psub(e[i][0], e[i][1]));
          ei::pstoreu(di + 3 * point, ei::pnegate(e[i][1]));
        }
      }
    }
    // du_ξ[ci][co] += Σ_t V_ξ[t][ci] D_ξ[t][co], CB × NV packets in registers.
    for (int xi = 0; xi < 16; ++xi)
      for (Index cp = 0; cp < in_packets; ++cp)
        for (int l0 = 0; l0 < L; l0 += CB) {
          S* dux = du + (xi * in + cp * L + l0) * out;
          P acc[CB][NV];
          static_for<CB>(
              [&](auto c) { static_for<NV>([&](auto k) { acc[c][k] = ei::ploadu<P>(dux + c * out + k * L); }); });
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

/// du (16·in·out, [ξ][in][out]) += the Winograd weight gradient of one sample (winograd_weight_tiles):
/// s.in whole packets, s.out 1, 2 or 4 of them; scratch holds winograd_scratch_size elements.
template <class S>
void winograd_conv_weight(const DirectConvShape& s, const S* src, const S* dy, S* du, S* scratch) {
  constexpr int A = DirectConvTraits<S>::accumulators, L = DirectConvTraits<S>::lanes;
  constexpr int cb1 = std::min(L, A >= 28 ? 16 : 8), cb2 = std::min(L, A >= 28 ? 8 : 4),
                cb4 = std::min(L, A >= 28 ? 4 : 2);
  const Index nv = s.out / L;
  if (nv == 1)
    winograd_weight_tiles<S, 1, cb1>(s, src, dy, du, scratch);
  else if (nv == 2)
    winograd_weight_tiles<S, 2, cb2>(s, src, dy, du, scratch);
  else
    winograd_weight_tiles<S, 4, cb4>(s, src, dy, du, scratch);
}

/// dw[tap][ci][co] += (Gᵀ du G)[kh][kw] for each (ci, co): dL/dw from dL/dU (U = G g Gᵀ).
template <class S>
void winograd_weight_grad(const S* du, Index in, Index out, S* dw) {
  const Index plane = in * out;
  for (Index e = 0; e < plane; ++e) {
    S t[3][4];
    for (int j = 0; j < 4; ++j) {  // t = Gᵀ du: columns du0 + (du1+du2)/2, (du1−du2)/2, (du1+du2)/2 + du3
      const S d0 = du[(0 + j) * plane + e], d1 = du[(4 + j) * plane + e], d2 = du[(8 + j) * plane + e],
              d3 = du[(12 + j) * plane + e];
      t[0][j] = d0 + S(0.5) * (d1 + d2);
      t[1][j] = S(0.5) * (d1 - d2);
      t[2][j] = S(0.5) * (d1 + d2) + d3;
    }
    for (int kh = 0; kh < 3; ++kh) {  // then t G on the rows
      S* w = dw + Index(kh * 3) * plane + e;
      w[0] += t[kh][0] + S(0.5) * (t[kh][1] + t[kh][2]);
      w[plane] += S(0.5) * (t[kh][1] - t[kh][2]);
      w[2 * plane] += S(0.5) * (t[kh][1] + t[kh][2]) + t[kh][3];
    }
  }
}

// The float and double instances compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RESBLOCKS_WINOGRAD_KERNELS(S)                                                                       \
  RESBLOCKS_EXTERN_KERNEL(void winograd_weights<S>(const S*, Index, Index, S*))                             \
  RESBLOCKS_EXTERN_KERNEL(void winograd_conv<S>(const DirectConvShape&, int, const S*, const S*, S*, S*))   \
  RESBLOCKS_EXTERN_KERNEL(void winograd_conv_weight<S>(const DirectConvShape&, const S*, const S*, S*, S*)) \
  RESBLOCKS_EXTERN_KERNEL(void winograd_weight_grad<S>(const S*, Index, Index, S*))
// NOLINTEND(bugprone-macro-parentheses)
RESBLOCKS_WINOGRAD_KERNELS(float)
RESBLOCKS_WINOGRAD_KERNELS(double)

}  // namespace resblocks::detail
