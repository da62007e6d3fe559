#pragma once
/// \file
/// \brief C (+)= op(A)·op(B) on packed kernels (resblocks' own on AVX-512 and AVX2, core/gemm_kernel.hpp;
/// Eigen's elsewhere), with a reused per-thread packing buffer (no heap allocation once warm) and a
/// deterministic split over threads.

#include "resblocks/core/block_fn.hpp"
#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/gemm_kernel.hpp"
#include "resblocks/core/thread_pool.hpp"
#include "resblocks/core/threading.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>

namespace resblocks::detail {

using Eigen::Index;

/// Aligned buffer owned by one thread (or one pool part: part_local); grows to the largest request, then is reused.
template <class S>
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { Eigen::internal::aligned_free(m_data); }
  S* get(std::size_t n) {
    if (n > m_size) {
      Eigen::internal::aligned_free(m_data);
      m_data = nullptr;  // stays valid if the allocation below throws
      m_size = 0;
      m_data = static_cast<S*>(Eigen::internal::aligned_malloc(n * sizeof(S)));
      m_size = n;
    }
    return m_data;
  }

 private:
  S* m_data = nullptr;
  std::size_t m_size = 0;
};

/// The packing buffer of the calling thread, or of the pool part it runs (part_local: sized by whichever thread
/// runs the part, it is sized for the worker too).
template <class S>
PackBuffer<S>& thread_pack_buffer() {
  return part_local<PackBuffer<S>>();
}

/// Elements of Eigen's packed A block (kc × mc), rounded up so that the B block after it starts on a
/// 64-byte boundary, as Eigen's own allocations do.
inline std::size_t packed_a_size(Index kc, Index mc) noexcept {
  return (std::size_t(kc) * std::size_t(mc) + 63) / 64 * 64;
}

/// Packing space (elements) a product with C m×n and depth k takes on one thread: a fixed size
/// with resblocks' kernel, Eigen's blocking for the shape otherwise (A's block first, then B's).
template <class S>
std::size_t gemm_space(Index m, Index n, Index k) {
#if RESBLOCKS_OWN_GEMM_KERNEL
  (void)m, (void)n, (void)k;
  return GemmKernelShape<S>::work_size;
#else
  Index kc = k, mc = m, nc = n;
  Eigen::internal::computeProductBlockingSizes<S, S, 1, Index>(kc, mc, nc, Index(1));
  mc = std::min(mc, m), nc = std::min(nc, n);
  return packed_a_size(kc, mc) + std::size_t(kc) * std::size_t(nc);
#endif
}

/// Eigen's blocking descriptor, pointed at caller-provided packing space.
template <class S>
class FixedBlocking : public Eigen::internal::level3_blocking<S, S> {
 public:
  FixedBlocking(Index mc, Index nc, Index kc, S* block_a, S* block_b) {
    this->m_mc = mc;
    this->m_nc = nc;
    this->m_kc = kc;
    this->m_blockA = block_a;
    this->m_blockB = block_b;
  }
};

/// Plain description of a column-major operand: pointer and leading dimension.
template <class S>
struct Operand {
  const S* data;
  Index ld;
};

/// Below this many multiply-adds a product runs on one thread.
inline constexpr double k_gemm_grain = 1 << 19;

/// The block hook that does nothing: C keeps its contents, the product is added to it.
inline constexpr BlockFn Accumulate{};

/// C(m×n, leading dimension ldc) += op(A)·op(B), where op(A) is m×k and op(B) is k×n,
/// TransA/TransB say whether the stored matrices are transposed.
///
/// Threads own disjoint blocks of C (rows or columns, cut at kernel-panel boundaries). On its block
/// (r0, rows, c0, cols) each thread calls `prologue` (e.g. write the bias or the skip into C),
/// computes the product, then calls `epilogue` (e.g. an activation) while the block is in cache:
/// element-wise work rides in the GEMM's parallel region instead of passes of its own.
/// Blocking depends only on (m, n, k) and every element sums its k terms in the same order, so the
/// result bits do not depend on the thread count.
/// The hooks are type-erased (BlockFn): one instantiation per (TransA, TransB, S) serves every caller.
template <bool TransA, bool TransB, class S>
void gemm_accumulate(Index m, Index n, Index k, Operand<S> a, Operand<S> b, S* c, Index ldc, BlockFn prologue = {},
                     BlockFn epilogue = {});

template <bool TransA, bool TransB, class S>
void gemm_accumulate(Index m, Index n, Index k, Operand<S> a, Operand<S> b, S* c, Index ldc, BlockFn prologue,
                     BlockFn epilogue) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    prologue(0, m, 0, n);
    epilogue(0, m, 0, n);
    return;
  }
#if RESBLOCKS_OWN_GEMM_KERNEL
  // Rows split at packets, not whole panels: 256 rows run as 128 + 128, not 144 + 112 (48-row panels).
  constexpr Index unit_rows = GemmKernelShape<S>::packet, unit_cols = GemmKernelShape<S>::nr;
#else
  using Gemm = Eigen::internal::general_matrix_matrix_product<Index, S, TransA ? Eigen::RowMajor : Eigen::ColMajor,
                                                              false, S, TransB ? Eigen::RowMajor : Eigen::ColMajor,
                                                              false, Eigen::ColMajor, 1>;
  using Traits = typename Gemm::Traits;
  constexpr Index unit_rows = Traits::mr, unit_cols = Traits::nr;
  Index kc = k, mc = m, nc = n;
  Eigen::internal::computeProductBlockingSizes<S, S, 1, Index>(kc, mc, nc, Index(1));
#endif

  const int threads = threads_for(double(m) * double(n) * double(k), k_gemm_grain);
  // Split the longer side at register-tile boundaries; each thread packs its own panels into its own buffer.
  const bool split_rows = m >= n;
  const Index unit = split_rows ? unit_rows : unit_cols;
  const Index extent = split_rows ? m : n;
  const Index units = (extent + unit - 1) / unit;

  auto run = [&](Index begin, Index end) {
    const Index r0 = split_rows ? begin : 0, rows = split_rows ? end - begin : m;
    const Index c0 = split_rows ? 0 : begin, cols = split_rows ? n : end - begin;
    const S* pa = TransA ? a.data + r0 * a.ld : a.data + r0;
    const S* pb = TransB ? b.data + c0 : b.data + c0 * b.ld;
#if RESBLOCKS_OWN_GEMM_KERNEL
    // A prologue that zeroes C: the kernel writes the first depth block's sums instead (no pass of zeros).
    const bool overwrite = prologue.zeroes(c, ldc);
    if (!overwrite) prologue(r0, rows, c0, cols);
    constexpr int order = TransA ? Eigen::RowMajor : Eigen::ColMajor;
    const Eigen::internal::const_blas_data_mapper<S, Index, order> lhs(pa, a.ld);
    gemm_packed<order, TransB>(rows, cols, k, gemm_depth_block<S>(m, k, TransB), lhs, pb, b.ld, c + r0 + c0 * ldc, ldc,
                               thread_pack_buffer<S>().get(GemmKernelShape<S>::work_size), overwrite);
#else
    prologue(r0, rows, c0, cols);
    const Index mc_t = std::min(mc, rows), nc_t = std::min(nc, cols);
    const std::size_t size_a = packed_a_size(kc, mc_t);
    // Sized for the whole product, not this range: a thread may run another's range (a pool running
    // alone), and its buffer then never grows in a later step.
    S* space = thread_pack_buffer<S>().get(packed_a_size(kc, std::min(mc, m)) +
                                           std::size_t(kc) * std::size_t(std::min(nc, n)));
    FixedBlocking<S> blocking(mc_t, nc_t, kc, space, space + size_a);
    Gemm::run(rows, cols, k, pa, a.ld, pb, b.ld, c + r0 + c0 * ldc, 1, ldc, S(1), blocking, nullptr);
#endif
    epilogue(r0, rows, c0, cols);
  };

  if (threads <= 1 || units < 2) {
    run(0, extent);
    return;
  }
  // A static split: each thread packs the whole of the short side's operand for its range, so more
  // ranges than threads cost packing (measured: cut in 4 per thread, BM_MlpBlockTrain/1024/128 took
  // 8-20% longer, and a co-tenant slowed it no less).
  parallel_region(static_cast<int>(std::min<Index>(threads, units)), [&](Index t, Index nt) {
    const Index begin = std::min(extent, units * t / nt * unit), end = std::min(extent, units * (t + 1) / nt * unit);
    if (end > begin) run(begin, end);
  });
}

/// dst = prologue-initialised dst + op(a)·op(b), then epilogue, for Eigen matrices (plain,
/// column-major, contiguous columns); see gemm_accumulate for the hooks. Tiny products run
/// coefficient-based (unrolled for fixed sizes), matrix-vector ones on Eigen's GEMV, everything
/// else on gemm_accumulate — never on Eigen's own OpenMP GEMM, which allocates on every call.
template <bool TransA, bool TransB, class Dst, class A, class B>
void gemm_impl(Dst& dst, const A& a, const B& b, BlockFn prologue, BlockFn epilogue) {
  using S = typename Dst::Scalar;
  const Index m = dst.rows(), n = dst.cols(), k = TransA ? a.rows() : a.cols();
  eigen_assert((TransA ? a.cols() : a.rows()) == m && (TransB ? b.rows() : b.cols()) == n &&
               (TransB ? b.cols() : b.rows()) == k);
  const bool tiny = double(m) * double(n) * double(k) <= 32.0 * 32.0 * 32.0;
  if (tiny || n == 1 || m == 1) {
    auto op_a = [&]() -> decltype(auto) {
      if constexpr (TransA)
        return a.transpose();
      else
        return (a);
    };
    auto op_b = [&]() -> decltype(auto) {
      if constexpr (TransB)
        return b.transpose();
      else
        return (b);
    };
    prologue(0, m, 0, n);
    // Operands with a fixed dimension always go coefficient-based: it is as fast for them, and
    // GCC 12 at -O3 warns falsely (-Waggressive-loop-optimizations) inside Eigen's GEMV on them.
    // (`if constexpr`: Eigen's product dispatch, GEMV and GEMM included, is never instantiated for
    // them, which cost about 0.2 s of compile time per fixed-size product type.)
    constexpr bool fixed = A::RowsAtCompileTime != Eigen::Dynamic || A::ColsAtCompileTime != Eigen::Dynamic ||
                           B::RowsAtCompileTime != Eigen::Dynamic || B::ColsAtCompileTime != Eigen::Dynamic;
    if (k == 1) {  // outer product (a weight gradient at batch 1): column by column, vectorised
      dst.noalias() += op_a().col(0) * op_b().row(0);
    } else {
      if constexpr (!fixed) {
        if (!tiny) {  // GEMV: single-threaded in Eigen, no packing
          dst.noalias() += op_a() * op_b();
          epilogue(0, m, 0, n);
          return;
        }
      }
      dst.noalias() += op_a().lazyProduct(op_b());
    }
    epilogue(0, m, 0, n);
    return;
  }
  gemm_accumulate<TransA, TransB, S>(m, n, k, {a.data(), a.outerStride()}, {b.data(), b.outerStride()}, dst.data(),
                                     dst.outerStride(), prologue, epilogue);
}

/// A column-major matrix with any column stride, as the products of all-dynamic operands see them.
template <class S>
using MatrixRef = Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class S>
using ConstMatrixRef =
    Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// gemm on all-dynamic operands, seen through MatrixRef: one instantiation per (TransA, TransB, S),
/// whatever Eigen types (matrices, maps, blocks) the callers hold.
template <bool TransA, bool TransB, class S>
void gemm_dynamic(MatrixRef<S> dst, ConstMatrixRef<S> a, ConstMatrixRef<S> b, BlockFn prologue, BlockFn epilogue);

template <bool TransA, bool TransB, class S>
void gemm_dynamic(MatrixRef<S> dst, ConstMatrixRef<S> a, ConstMatrixRef<S> b, BlockFn prologue, BlockFn epilogue) {
  gemm_impl<TransA, TransB>(dst, a, b, prologue, epilogue);
}

/// The product of gemm_impl; operands whose sizes are all dynamic go through gemm_dynamic (compiled
/// once per scalar type), those with a fixed size stay typed (unrolled coefficient-based products).
template <bool TransA, bool TransB, class Dst, class A, class B>
void gemm(Dst& dst, const A& a, const B& b, BlockFn prologue, BlockFn epilogue = {}) {
  constexpr bool fixed = Dst::RowsAtCompileTime != Eigen::Dynamic || Dst::ColsAtCompileTime != Eigen::Dynamic ||
                         A::RowsAtCompileTime != Eigen::Dynamic || A::ColsAtCompileTime != Eigen::Dynamic ||
                         B::RowsAtCompileTime != Eigen::Dynamic || B::ColsAtCompileTime != Eigen::Dynamic;
  if constexpr (fixed) {
    gemm_impl<TransA, TransB>(dst, a, b, prologue, epilogue);
  } else {
    using S = typename Dst::Scalar;
    gemm_dynamic<TransA, TransB, S>(
        MatrixRef<S>(dst.data(), dst.rows(), dst.cols(), Eigen::OuterStride<>(dst.outerStride())),
        ConstMatrixRef<S>(a.data(), a.rows(), a.cols(), Eigen::OuterStride<>(a.outerStride())),
        ConstMatrixRef<S>(b.data(), b.rows(), b.cols(), Eigen::OuterStride<>(b.outerStride())), prologue, epilogue);
  }
}

/// C(m×n, leading dimension ldc) += A·op(B) on the calling thread, with A (m×k) read through `lhs`,
/// a data mapper with Eigen's interface (operator()(i, k), loadPacket<P>(i, k), getSubMapper(i, k)),
/// stored `LhsOrder` (RowMajor: packets run along k). A need not exist in memory: an im2col view
/// reads the patches from the image while they are packed (implicit GEMM). Same blocking, packing
/// and kernel as gemm_accumulate, so the bits equal those of the product of the materialised A.
template <int LhsOrder, bool TransB, class S, class LhsMapper>
void gemm_mapped(Index m, Index n, Index k, const LhsMapper& lhs, Operand<S> b, S* c, Index ldc) {
  if (m == 0 || n == 0 || k == 0) return;
#if RESBLOCKS_OWN_GEMM_KERNEL
  gemm_packed<LhsOrder, TransB>(m, n, k, gemm_depth_block<S>(m, k, TransB), lhs, b.data, b.ld, c, ldc,
                                thread_pack_buffer<S>().get(GemmKernelShape<S>::work_size));
#else
  namespace ei = Eigen::internal;
  using Traits = ei::gebp_traits<S, S>;
  using RhsMapper = ei::const_blas_data_mapper<S, Index, TransB ? Eigen::RowMajor : Eigen::ColMajor>;
  using ResMapper = ei::blas_data_mapper<S, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
  ei::gemm_pack_lhs<S, Index, LhsMapper, Traits::mr, Traits::LhsProgress, typename Traits::LhsPacket4Packing, LhsOrder>
      pack_lhs;
  ei::gemm_pack_rhs<S, Index, RhsMapper, Traits::nr, TransB ? Eigen::RowMajor : Eigen::ColMajor> pack_rhs;
  ei::gebp_kernel<S, S, Index, ResMapper, Traits::mr, Traits::nr, false, false> gebp;
  Index kc = k, mc = m, nc = n;
  ei::computeProductBlockingSizes<S, S, 1, Index>(kc, mc, nc, Index(1));
  mc = std::min(mc, m), nc = std::min(nc, n);
  const std::size_t size_a = packed_a_size(kc, mc);
  S* block_a = thread_pack_buffer<S>().get(size_a + std::size_t(kc) * std::size_t(nc));  // = gemm_space(m, n, k)
  S* block_b = block_a + size_a;
  const RhsMapper rhs(b.data, b.ld);
  const ResMapper res(c, ldc);
  const bool pack_rhs_once = mc != m && kc == k && nc == n;
  for (Index i2 = 0; i2 < m; i2 += mc) {
    const Index actual_mc = std::min(i2 + mc, m) - i2;
    for (Index k2 = 0; k2 < k; k2 += kc) {
      const Index actual_kc = std::min(k2 + kc, k) - k2;
      pack_lhs(block_a, lhs.getSubMapper(i2, k2), actual_kc, actual_mc);
      for (Index j2 = 0; j2 < n; j2 += nc) {
        const Index actual_nc = std::min(j2 + nc, n) - j2;
        if (!pack_rhs_once || i2 == 0) pack_rhs(block_b, rhs.getSubMapper(k2, j2), actual_kc, actual_nc);
        gebp(res.getSubMapper(i2, j2), block_a, block_b, actual_mc, actual_kc, actual_nc, S(1));
      }
    }
  }
#endif
}

/// \brief The prologue of zero_block. It says which matrix it zeroes (BlockFn::zeroes), so that a
/// product into that matrix writes its first partial sums instead of zeroing, then adding.
template <class Dst>
struct ZeroBlock {
  Dst* dst;
  void operator()(Index r0, Index rows, Index c0, Index cols) const { dst->block(r0, c0, rows, cols).setZero(); }
  [[nodiscard]] const void* zeroed_data() const noexcept { return dst->data(); }
  [[nodiscard]] Index zeroed_stride() const noexcept { return dst->outerStride(); }
};

/// Prologue that zeroes the block: dst = op(a)·op(b).
template <class Dst>
ZeroBlock<Dst> zero_block(Dst& dst) {
  return {&dst};
}

/// Prologue that writes expr's block into dst's: dst = expr + op(a)·op(b).
template <class Dst, class Expr>
auto assign_block(Dst& dst, const Expr& expr) {
  return [&dst, &expr](Index r0, Index rows, Index c0, Index cols) {
    dst.block(r0, c0, rows, cols) = expr.block(r0, c0, rows, cols);
  };
}

/// dst (+)= op(a)·op(b).
template <bool TransA, bool TransB, class Dst, class A, class B>
void gemm(Dst& dst, const A& a, const B& b, bool accumulate) {
  if (accumulate) {
    gemm<TransA, TransB>(dst, a, b, Accumulate);
  } else {
    const auto zero = zero_block(dst);
    gemm<TransA, TransB>(dst, a, b, zero);
  }
}

// The float and double instances compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
// (S, TA and TB are template arguments there: they cannot be parenthesised.)
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RESBLOCKS_GEMM_KERNELS(S, TA, TB)                                                                        \
  RESBLOCKS_EXTERN_KERNEL(                                                                                       \
      void gemm_accumulate<TA, TB, S>(Index, Index, Index, Operand<S>, Operand<S>, S*, Index, BlockFn, BlockFn)) \
  RESBLOCKS_EXTERN_KERNEL(                                                                                       \
      void gemm_dynamic<TA, TB, S>(MatrixRef<S>, ConstMatrixRef<S>, ConstMatrixRef<S>, BlockFn, BlockFn))
#define RESBLOCKS_GEMM_KERNELS_OF(S)      \
  RESBLOCKS_GEMM_KERNELS(S, false, false) \
  RESBLOCKS_GEMM_KERNELS(S, false, true)  \
  RESBLOCKS_GEMM_KERNELS(S, true, false)  \
  RESBLOCKS_GEMM_KERNELS(S, true, true)
RESBLOCKS_GEMM_KERNELS_OF(float)
RESBLOCKS_GEMM_KERNELS_OF(double)
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace resblocks::detail
