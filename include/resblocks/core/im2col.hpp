#pragma once
/// \file
/// \brief im2col for the GEMM paths of Conv2d: the patch matrix of a channels-last image, written out
/// (im2col, and its transpose col2im) or read in place while a GEMM packs it (Im2colMapper).

#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/thread_pool.hpp"
#include "resblocks/core/threading.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <vector>

namespace resblocks::detail {

using Eigen::Index;

/// \brief Where the patches of an im2col come from: a source of `channels` rows (`group` of them per
/// group) on src_h × src_w images, read by a k×k kernel at out_h × out_w positions.
struct ConvGeometry {
  Index src_h, src_w, out_h, out_w, channels, group, k, stride, pad, dil;
  [[nodiscard]] Index patch() const noexcept { return group * k * k; }
  [[nodiscard]] Index src_area() const noexcept { return src_h * src_w; }
  [[nodiscard]] Index out_area() const noexcept { return out_h * out_w; }
};

/// \brief An im2col matrix that is never written: element (position, patch row) is read from a
/// channels-last image through a per-position table of tap offsets (-1 in the padding), while
/// Eigen packs it for its GEMM kernel (the implicit GEMM of gemm_mapped). `PatchAlongK`: the
/// matrix is positions × patch (RowMajor packing), else patch × positions (ColMajor packing).
/// The patch row r is (tap r >> shift, channel r & mask): channel counts are powers of two.
template <class S, bool PatchAlongK>
class Im2colMapper {
 public:
  struct LinearMapper {};  // required by Eigen's packing routines' typedefs, never used

  Im2colMapper(const S* image, const Index* offsets, Index taps, int shift, Index pos0 = 0, Index patch0 = 0) noexcept
      : m_image(image), m_offsets(offsets), m_taps(taps), m_shift(shift), m_pos0(pos0), m_patch0(patch0) {}

  [[nodiscard]] S operator()(Index i, Index k) const noexcept {
    const Index pos = m_pos0 + (PatchAlongK ? i : k), patch = m_patch0 + (PatchAlongK ? k : i);
    const Index off = m_offsets[pos * m_taps + (patch >> m_shift)];
    return off < 0 ? S(0) : m_image[off + (patch & mask())];
  }

  /// The packet of patch rows starting at this element (along the patch: one tap's channels).
  template <class Packet>
  [[nodiscard]] Packet loadPacket(Index i, Index k) const noexcept {
    constexpr int size = Eigen::internal::unpacket_traits<Packet>::size;
    const Index pos = m_pos0 + (PatchAlongK ? i : k), patch = m_patch0 + (PatchAlongK ? k : i);
    const Index channel = patch & mask();
    if (channel + size <= mask() + 1) {  // within one tap: one load
      const Index off = m_offsets[pos * m_taps + (patch >> m_shift)];
      return off < 0 ? Eigen::internal::pset1<Packet>(S(0)) : Eigen::internal::ploadu<Packet>(m_image + off + channel);
    }
    alignas(64) S values[size];  // straddles two taps (a cache block edge inside a tap run)
    for (int e = 0; e < size; ++e) values[e] = PatchAlongK ? (*this)(i, k + e) : (*this)(i + e, k);
    return Eigen::internal::pload<Packet>(values);
  }

  [[nodiscard]] Im2colMapper getSubMapper(Index i, Index k) const noexcept {
    return Im2colMapper(m_image, m_offsets, m_taps, m_shift, m_pos0 + (PatchAlongK ? i : k),
                        m_patch0 + (PatchAlongK ? k : i));
  }

 private:
  [[nodiscard]] Index mask() const noexcept { return (Index(1) << m_shift) - 1; }
  const S* m_image;
  const Index* m_offsets;
  Index m_taps;
  int m_shift;
  Index m_pos0, m_patch0;
};

/// Per-thread (part_local) table of tap offsets for Im2colMapper (grows once, then reused: no allocation per step).
inline std::vector<Index>& im2col_offsets() { return part_local<std::vector<Index>>(); }

/// Calls f(j, row offset in the patch, source column or -1 in the padding, taps) for every kernel
/// tap of positions p0 + j, j in [j0, j1), in order (positions advance without divisions). Taps
/// along a kernel row that read neighbouring source pixels come as one run (`taps` > 1), so that
/// their channels are one contiguous copy (undilated, ungrouped); padding comes as runs of -1.
template <class F>
void for_each_tap(const ConvGeometry& geo, Index p0, Index j0, Index j1, const F& f) {
  const Index ho_count = geo.out_h, wo_count = geo.out_w, area = ho_count * wo_count;
  const Index h = geo.src_h, w = geo.src_w, k = geo.k, cg = geo.group;
  const Index stride = geo.stride, pad = geo.pad, dil = geo.dil;
  const bool runs = dil == 1 && geo.group == geo.channels;
  Index n = (p0 + j0) / area, r = (p0 + j0) - n * area, ho = r / wo_count, wo = r - ho * wo_count;
  for (Index j = j0; j < j1; ++j) {
    const Index base = n * h * w, hb = ho * stride - pad, wb = wo * stride - pad;
    for (Index kh = 0; kh < k; ++kh) {
      const Index hi = hb + kh * dil, row = cg * k * kh;
      if (hi < 0 || hi >= h) {
        f(j, row, Index(-1), k);
      } else if (runs) {
        const Index kw0 = std::max<Index>(0, -wb), kw1 = std::min<Index>(k, w - wb);
        if (kw1 <= kw0) {
          f(j, row, Index(-1), k);
          continue;
        }
        if (kw0 > 0) f(j, row, Index(-1), kw0);
        f(j, row + cg * kw0, base + hi * w + wb + kw0, kw1 - kw0);
        if (kw1 < k) f(j, row + cg * kw1, Index(-1), k - kw1);
      } else {
        for (Index kw = 0; kw < k; ++kw) {
          const Index wi = wb + kw * dil;
          f(j, row + cg * kw, wi >= 0 && wi < w ? base + hi * w + wi : Index(-1), Index(1));
        }
      }
    }
    if (++wo == wo_count) {
      wo = 0;
      if (++ho == ho_count) {
        ho = 0;
        ++n;
      }
    }
  }
}

/// Runs f.template operator()<L>() with L = len when it is a common channel run (16, 32, 64; 12
/// and 48: DenseNet's growth rate k and bottleneck 4k): the copies and adds below then compile to
/// whole-register moves. L = 0: run-time length.
template <class F>
void with_run_length(Index len, const F& f) {
  switch (len) {
    case 12:
      f.template operator()<12>();
      break;
    case 16:
      f.template operator()<16>();
      break;
    case 32:
      f.template operator()<32>();
      break;
    case 48:
      f.template operator()<48>();
      break;
    case 64:
      f.template operator()<64>();
      break;
    default:
      f.template operator()<0>();
      break;
  }
}

/// ⌈log2(c)⌉.
inline int log2_ceil(Index c) noexcept {
  int shift = 0;
  while ((Index(1) << shift) < c) ++shift;
  return shift;
}
/// This thread's table of tap offsets of positions [p0, p0 + pc): offsets[j·k² + tap] = the tap's
/// first element in the image, -1 in the padding.
inline const Index* tap_offsets(const ConvGeometry& geo, Index p0, Index pc) {
  const Index taps = geo.k * geo.k, c = geo.channels;
  std::vector<Index>& offsets = im2col_offsets();
  if (offsets.size() < std::size_t(pc * taps)) offsets.resize(std::size_t(pc * taps));
  Index* table = offsets.data();
  for_each_tap(geo, p0, 0, pc, [=](Index j, Index offset, Index column, Index run) {
    Index* row = table + j * taps + offset / geo.group;
    for (Index t = 0; t < run; ++t) row[t] = column < 0 ? Index(-1) : (column + t) * c;
  });
  return table;
}

/// Columns [p0, p0 + pc) of the im2col matrix of `src` (pointing at the group's first channel):
/// row ci + group·(kw + k·kh) of column j holds channel ci of the source pixel under tap (kh, kw)
/// of position p0 + j (0 in the padding).
template <class S>
void im2col(const ConvGeometry& geo, const S* src, Index p0, Index pc, S* cols) {
  const Index cg = geo.group, kg = geo.patch(), c = geo.channels;
  parallel_for(pc, double(kg), [&](Index j0, Index j1) {
    with_run_length(cg, [&]<int L>() {
      using Run = Eigen::Matrix<S, L == 0 ? Eigen::Dynamic : L, 1>;
      S* dst = cols;
      for_each_tap(geo, p0, j0, j1, [=](Index j, Index offset, Index column, Index taps) {
        S* out = dst + j * kg + offset;
        if (column >= 0) {
          const S* in = src + column * c;  // taps > 1 only when c == cg: the pixels' channels are contiguous
          for (Index t = 0; t < taps; ++t) Eigen::Map<Run>(out + t * cg, cg) = Eigen::Map<const Run>(in + t * cg, cg);
        } else {
          for (Index t = 0; t < taps; ++t) Eigen::Map<Run>(out + t * cg, cg).setZero();
        }
      });
    });
  });
}

/// dst += col2im(dcols) for group g of `geo` (dst points at the image, c channels per pixel): the
/// transpose of im2col, split over channels so that each element of dst is summed by one thread in
/// a fixed order.
template <class S>
void col2im(const ConvGeometry& geo, const S* dcols, Index g, Index p0, Index pc, S* image) {
  const Index cg = geo.group, kg = geo.patch(), c = geo.channels;
  S* dst = image + g * cg;
  parallel_for(cg, double(pc) * double(geo.k * geo.k), [&](Index c0, Index c1) {
    with_run_length(c1 - c0, [&]<int L>() {
      using Run = Eigen::Matrix<S, L == 0 ? Eigen::Dynamic : L, 1>;
      const S* src = dcols + c0;
      const Index len = c1 - c0;
      for_each_tap(geo, p0, 0, pc, [=](Index j, Index offset, Index column, Index taps) {
        if (column < 0) return;
        for (Index t = 0; t < taps; ++t)
          Eigen::Map<Run>(dst + (column + t) * c + c0, len) +=
              Eigen::Map<const Run>(src + j * kg + offset + t * cg, len);
      });
    });
  });
}

// The float and double instances compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
RESBLOCKS_EXTERN_KERNEL(void im2col<float>(const ConvGeometry&, const float*, Index, Index, float*))
RESBLOCKS_EXTERN_KERNEL(void im2col<double>(const ConvGeometry&, const double*, Index, Index, double*))
RESBLOCKS_EXTERN_KERNEL(void col2im<float>(const ConvGeometry&, const float*, Index, Index, Index, float*))
RESBLOCKS_EXTERN_KERNEL(void col2im<double>(const ConvGeometry&, const double*, Index, Index, Index, double*))

}  // namespace resblocks::detail
