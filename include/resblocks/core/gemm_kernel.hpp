#pragma once
/// \file
/// \brief resblocks' own GEMM kernel for AVX-512 and AVX2 + FMA: BLIS-style register-blocked outer
/// products on packed panels. Eigen's gebp kernel serves every other target (and this one with
/// RESBLOCKS_EIGEN_GEMM_KERNEL defined, program-wide: the two give different bits).
///
/// C(m×n) += A(m×k)·op(B)(k×n) is cut into blocks of kc depth (deeper for a short A with B read in
/// place), mc rows of A (packed once per block, kept in L2; taller for a product of one depth block:
/// gemm_block_rows) and nc columns of B (packed once per block, in L3); the micro-kernel computes an
/// mr×nr tile of C in registers (mr = 3 SIMD packets and nr = 8 with AVX-512's 32 vector registers, 2
/// and 6 with AVX2's 16; a block's last, shorter panel runs with the packets it fills) over one depth
/// block and adds it to C. Every element of C sums its k terms in k order, one depth block
/// (gemm_depth_block) at a time: the bits depend on the whole product's m and k, on whether B is
/// transposed, and on the cache sizes Eigen reports, never on how the caller splits C between threads.

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>

#if !defined(RESBLOCKS_EIGEN_GEMM_KERNEL) && \
    (defined(EIGEN_VECTORIZE_AVX512) || (defined(EIGEN_VECTORIZE_AVX2) && defined(EIGEN_VECTORIZE_FMA)))
#define RESBLOCKS_OWN_GEMM_KERNEL 1
#else
#define RESBLOCKS_OWN_GEMM_KERNEL 0
#endif

namespace resblocks::detail {

/// Tile and block sizes of the kernel for scalar S (measured on Zen 4/5 and on Intel AVX-512 servers;
/// see the README's GEMM table).
template <class S>
struct GemmKernelShape {
  using Packet = typename Eigen::internal::packet_traits<S>::type;
  static constexpr int packet = Eigen::internal::unpacket_traits<Packet>::size;
#if defined(EIGEN_VECTORIZE_AVX512)
  // 24 accumulators + 3 A packets + broadcasts of 32 registers: 11 loads per 24 FMAs (a 32×12 tile
  // takes 14), and 8 columns divide the usual widths (16, 32, 64 channels; batches of 2^k).
  static constexpr int packets = 3;
  static constexpr Eigen::Index nr = 8;
#else
  static constexpr int packets = 2;  // 12 accumulators + 2 + 1 of 16
  static constexpr Eigen::Index nr = 6;
#endif
  static constexpr Eigen::Index mr = Eigen::Index{packets} * packet;        // rows of a register tile
  static constexpr Eigen::Index kc = sizeof(S) == 4 ? 384 : 256;            // deepest block (gemm_depth_block)
  static constexpr Eigen::Index kc_short = 4096 / Eigen::Index(sizeof(S));  // deepest for a short A, B in place
  static constexpr Eigen::Index mc = sizeof(S) == 4 ? 384 : 192;            // rows of A per packed block
  static constexpr Eigen::Index nc = 3072;                                  // columns of B per packed block
  /// Most values of a packed block of A: mc × kc, or gemm_block_rows' blocks of up to 1 MB.
  static constexpr std::size_t a_space =
      std::max(std::size_t(kc) * std::size_t(mc), (std::size_t(1) << 20) / sizeof(S));
  /// Most values of a packed block of op(B): kc × nc (deeper blocks pack fewer columns at a time).
  static constexpr std::size_t b_space = std::size_t(kc) * std::size_t(nc);
  /// Packing space one thread needs, whatever the product: sized once, never grown.
  static constexpr std::size_t work_size = b_space + a_space + 64;
};

/// Rows of the A panel that starts `remaining` rows before the end of a block: mr, except that a
/// block's last mr + 1 packet rows run as two 2-packet panels (48 + 16 as 32 + 32 with AVX-512: a
/// one-packet kernel issues a broadcast per FMA). Panels are whole packets but for the block's last.
template <class S>
constexpr Eigen::Index gemm_panel_rows(Eigen::Index remaining) noexcept {
  using K = GemmKernelShape<S>;
  if constexpr (K::packets == 3) {
    if (remaining > K::mr && remaining <= K::mr + K::packet) return 2 * K::packet;
  }
  return std::min(K::mr, remaining);
}

/// Packets of rows in an A panel of `rows` rows (≤ mr), the last one zero-padded.
template <class S>
constexpr int gemm_panel_packets(Eigen::Index rows) noexcept {
  constexpr int packet = GemmKernelShape<S>::packet;
  return int((rows + packet - 1) / packet);
}

/// Values of A a packed block may hold: half of L2, at most a_space.
template <class S>
Eigen::Index gemm_a_budget() {
  static const Eigen::Index budget = Eigen::Index(std::min(
      std::size_t(std::max<std::ptrdiff_t>(Eigen::l2CacheSize(), 0)) / 2 / sizeof(S), GemmKernelShape<S>::a_space));
  return budget;
}

/// The depth of the kernel's blocks for the product C(m×n) += A·op(B) of depth k, where m and k are the
/// whole product's (never a thread's part: the depth decides the bits). k is split into the fewest
/// blocks of at most kc, of equal depth rounded up to 8 (k = 512 runs as 256 + 256, not 384 + 128: no
/// short block whose tile updates cost more than its products).
/// A column-major B (read in place) and an A of few rows take deeper blocks, up to kc_short and as deep
/// as half of L2 holds A's m rows and 2/3 of L1 one B panel: C's tiles are then updated once per 1024
/// terms, not per 384 (NN and TN 256 × 1024 × 1024, the Transformer's FFN down and its dL/dx:
/// 164-166 -> 172-174 GFLOP/s on one thread; NN 128 × 1024 × 1024 +4%, 64 × 4096 × 1024 +6%). With Bᵀ
/// (packed) deep blocks were slower (NT 256 × 1024 × 1024 -12%), and so are blocks of A too tall for L2.
template <class S>
Eigen::Index gemm_depth_block(Eigen::Index m, Eigen::Index k, bool trans_b) {
  using K = GemmKernelShape<S>;
  Eigen::Index kc = K::kc;
  if (!trans_b) {
    static const Eigen::Index deepest =
        std::min<Eigen::Index>(K::kc_short, Eigen::Index(std::max<std::ptrdiff_t>(Eigen::l1CacheSize(), 0)) * 2 / 3 /
                                                (K::nr * Eigen::Index(sizeof(S))) / 8 * 8);
    const Eigen::Index rows = (m + K::packet - 1) / K::packet * K::packet;
    kc = std::max(kc, std::min(deepest, gemm_a_budget<S>() / rows / 8 * 8));
  }
  const Eigen::Index blocks = std::max<Eigen::Index>(1, (k + kc - 1) / kc);
  return std::min(kc, ((k + blocks - 1) / blocks + 7) / 8 * 8);
}

/// Rows of A per packed block (gemm_packed) of a product (or a thread's part of one) of m rows and
/// depth k in blocks of kb (gemm_depth_block): mc, or, for a product of one depth block or of blocks
/// deeper than kc, as many as fill gemm_a_budget, cut into blocks of equal height: C's tiles are then
/// written once, not re-read per depth block, and a bigger block of A reads op(B) fewer times (NN 1024 ×
/// 1024 × 256: 166-167 -> 172-175 GFLOP/s, NT 1024 × 1024 × 128: 155-159 -> 162-164 on one thread, 2 MB
/// of L2; 384-row blocks stay faster for several blocks of kc). The blocks only group C's rows: the bits
/// do not depend on them.
template <class S>
Eigen::Index gemm_block_rows(Eigen::Index m, Eigen::Index k, Eigen::Index kb) {
  using K = GemmKernelShape<S>;
  if (m <= K::mc || (kb < k && kb <= K::kc)) return K::mc;
  const Eigen::Index limit = gemm_a_budget<S>() / kb / K::packet * K::packet;
  if (limit <= K::mc) return K::mc;
  const Eigen::Index blocks = (m + limit - 1) / limit;
  return ((m + blocks - 1) / blocks + K::packet - 1) / K::packet * K::packet;
}

/// Columns of op(B) per packed block (gemm_packed) for depth blocks of kb: nc, fewer for blocks deeper
/// than kc, so that a block never needs more than b_space values.
template <class S>
constexpr Eigen::Index gemm_block_cols(Eigen::Index kb) noexcept {
  using K = GemmKernelShape<S>;
  return std::min<Eigen::Index>(K::nc, Eigen::Index(K::b_space) / kb / K::nr * K::nr);
}

#if RESBLOCKS_OWN_GEMM_KERNEL

// The kernel's two hot functions start on a 64-byte line, so their loops sit at the same place in
// every program: where a loop falls in a line had moved the products by 2-5% from build to build
// (README, the GEMM kernel); aligned, the 8 products of bench/gemm_bench.cpp ran 0-3% faster.
#if defined(__GNUC__)
#define RESBLOCKS_GEMM_HOT [[gnu::aligned(64)]]
#else
#define RESBLOCKS_GEMM_HOT
#endif

// PacketBlock<__m512, 16> drops the vector type's alignment attribute in a template argument
// (harmless: it is only a register block); Eigen silences the same warning in its own headers.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#if !defined(__clang__)
// GCC 12 at -O3 reports the _mm512_undefined_ps() inside Eigen's ptranspose (the packing's
// transposes) as maybe uninitialized, 64 times per program with -Wall: the value is never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

/// Adds the tile's sums acc (NP packets × nr columns) to C(rows×cols, leading dimension ldc), or
/// writes them when `overwrite`; rows ≤ NP packets, cols ≤ nr.
template <class S, int NP, class P>
inline void gemm_store_tile(const P (&acc)[NP][GemmKernelShape<S>::nr], S* c, Eigen::Index ldc, Eigen::Index rows,
                            Eigen::Index cols, bool overwrite) {
  namespace ei = Eigen::internal;
  constexpr int packet = GemmKernelShape<S>::packet;
  constexpr Eigen::Index nr = GemmKernelShape<S>::nr, height = Eigen::Index{NP} * packet;
  if (rows == height && cols == nr) {
    for (Eigen::Index j = 0; j < nr; ++j)
      for (int p = 0; p < NP; ++p) {
        S* cj = c + j * ldc + p * packet;
        ei::pstoreu(cj, overwrite ? acc[p][j] : ei::padd(ei::ploadu<P>(cj), acc[p][j]));
      }
    return;
  }
  alignas(64) S tile[height * nr];  // an edge tile: the same sums, then only its valid part is added
  for (Eigen::Index j = 0; j < nr; ++j)
    for (int p = 0; p < NP; ++p) ei::pstore(tile + j * height + p * packet, acc[p][j]);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i)
      c[i + j * ldc] = overwrite ? tile[i + j * height] : c[i + j * ldc] + tile[i + j * height];
}

/// C(rows×cols, leading dimension ldc) += the product of a packed A panel of NP packets of rows
/// (NP·packet values per k) and a B panel over depth kc (= instead of += when `overwrite`); rows ≤ NP
/// packets, cols ≤ nr. The B panel is packed (nr values per k), or with `DirectB` nr whole columns of a
/// column-major B read where they are (leading dimension ldb). Each accumulator sums its k terms in k
/// order (one FMA per term), so neither the tile shape nor B's packing changes the bits.
template <class S, int NP, bool DirectB = false>
RESBLOCKS_GEMM_HOT inline void gemm_micro_kernel(Eigen::Index kc, const S* __restrict a, const S* __restrict b, S* c,
                                                 Eigen::Index ldc, Eigen::Index rows, Eigen::Index cols, bool overwrite,
                                                 Eigen::Index ldb = 0) {
  namespace ei = Eigen::internal;
  using K = GemmKernelShape<S>;
  using P = typename K::Packet;
  constexpr int packet = K::packet;
  constexpr Eigen::Index nr = K::nr, height = Eigen::Index{NP} * packet;
  P acc[NP][nr];
  for (Eigen::Index j = 0; j < nr; ++j)
    for (int p = 0; p < NP; ++p) acc[p][j] = ei::pset1<P>(S(0));
  // One depth step: a column of the A panel times a row of the B panel, added to the tile.
  const auto step = [&](const S* __restrict ap, const S* __restrict bp) {
    P av[NP];
    for (int p = 0; p < NP; ++p) av[p] = ei::pload<P>(ap + p * packet);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 12
#endif
    for (Eigen::Index j = 0; j < nr; ++j) {
      const P bj = ei::pset1<P>(DirectB ? bp[j * ldb] : bp[j]);
      for (int p = 0; p < NP; ++p) acc[p][j] = ei::pmadd(av[p], bj, acc[p][j]);
    }
  };
  // Two steps per iteration (measured on packed panels in L2: 164-167 -> 173-178 GFLOP/s with AVX-512;
  // the products 1-3% faster, 4-8% with AVX2); every accumulator's terms keep their order.
  constexpr Eigen::Index b_step = DirectB ? 1 : nr;  // B's values per depth step
  Eigen::Index p = 0;
  for (; p + 2 <= kc; p += 2, a += 2 * height, b += 2 * b_step) {
    step(a, b);
    step(a + height, b + b_step);
  }
  if (p < kc) step(a, b);
  gemm_store_tile<S, NP>(acc, c, ldc, rows, cols, overwrite);
}

/// Prefetches A(i, p) where `lhs` reads it from memory (not where it computes it: the im2col mapper).
template <class LhsMapper>
void gemm_prefetch_a(const LhsMapper& lhs, Eigen::Index i, Eigen::Index p) {
  if constexpr (std::is_lvalue_reference_v<decltype(lhs(i, p))>) Eigen::internal::prefetch(&lhs(i, p));
}

/// Packs A(i0 : i0+rows, p0 : p0+depth), read through `lhs` (Eigen's data-mapper interface:
/// operator()(i, k) and loadPacket<P>(i, k), packets along i for ColMajor, along k for RowMajor),
/// into panels of gemm_panel_rows rows (each of gemm_panel_packets(height) packets per depth step,
/// the last one zero-padded to whole packets) of depth steps each. Panel ir starts at out + ir·depth.
template <int LhsOrder, class S, class LhsMapper>
void gemm_pack_a(const LhsMapper& lhs, Eigen::Index i0, Eigen::Index rows, Eigen::Index p0, Eigen::Index depth,
                 S* out) {
  namespace ei = Eigen::internal;
  using K = GemmKernelShape<S>;
  using P = typename K::Packet;
  constexpr int packet = K::packet;
  for (Eigen::Index ir = 0, height = 0; ir < rows; ir += height) {
    height = gemm_panel_rows<S>(rows - ir);
    const Eigen::Index i = i0 + ir;
    const int np = gemm_panel_packets<S>(height);
    const Eigen::Index stride = Eigen::Index{np} * packet;  // values per depth step
    S* dst = out + ir * depth;
    Eigen::Index p = 0;
    if (height == stride) {
      if constexpr (LhsOrder == Eigen::ColMajor) {
        // Each column of the panel is in another page, where the hardware prefetchers do not follow:
        // the panel's column `ahead` steps on is fetched by hand (NN MLP 1024/128: 147 -> 160 GFLOP/s).
        constexpr Eigen::Index ahead = 8;
        for (; p < depth; ++p) {
          if (p + ahead < depth)
            for (Eigen::Index h = 0; h < height; h += 64 / Eigen::Index(sizeof(S)))
              gemm_prefetch_a(lhs, i + h, p0 + p + ahead);
          for (Eigen::Index h = 0; h < np; ++h)
            ei::pstore(dst + p * stride + h * packet, lhs.template loadPacket<P>(i + h * packet, p0 + p));
        }
      } else {  // rows of A are contiguous along k: transpose packet × packet blocks
        // One packet of rows at a time over the whole depth: `packet` streams, which the hardware
        // prefetchers follow (a whole panel's rows at once are more streams than they track). Packing
        // a 1024 × 1024 A from L3: 16.4 GB/s against 12.6 with the panel's rows at once and a
        // prefetch by hand.
        const Eigen::Index whole = depth / packet * packet;
        for (Eigen::Index h = 0; h < np; ++h)
          for (Eigen::Index q = 0; q < whole; q += packet) {
            ei::PacketBlock<P, packet> block;
            for (int r = 0; r < packet; ++r) block.packet[r] = lhs.template loadPacket<P>(i + h * packet + r, p0 + q);
            ei::ptranspose(block);
            for (int r = 0; r < packet; ++r) ei::pstore(dst + (q + r) * stride + h * packet, block.packet[r]);
          }
        p = whole;
      }
    }
    for (; p < depth; ++p) {
      Eigen::Index r = 0;
      for (; r < height; ++r) dst[p * stride + r] = lhs(i + r, p0 + p);
      for (; r < stride; ++r) dst[p * stride + r] = S(0);
    }
  }
}

/// Packs op(B)(p0 : p0+depth, j0 : j0+cols) into nr-column panels of depth values each, zero-padded;
/// B is column-major with leading dimension ldb, op(B) = Bᵀ when TransB.
template <bool TransB, class S>
void gemm_pack_b(const S* b, Eigen::Index ldb, Eigen::Index p0, Eigen::Index depth, Eigen::Index j0, Eigen::Index cols,
                 S* out) {
  namespace ei = Eigen::internal;
  using P = typename GemmKernelShape<S>::Packet;
  constexpr int packet = GemmKernelShape<S>::packet;
  constexpr Eigen::Index nr = GemmKernelShape<S>::nr;
  for (Eigen::Index jr = 0; jr < cols; jr += nr) {
    const Eigen::Index width = std::min(nr, cols - jr);
    S* dst = out + jr * depth;
    if constexpr (TransB) {  // op(B)(p, j) = b[j + p·ldb]: a panel's row is contiguous
      const S* src = b + (j0 + jr) + p0 * ldb;
      if (width == nr) {  // a whole panel: rows of nr values, copied with a fixed length (vector moves)
        for (Eigen::Index p = 0; p < depth; ++p) std::memcpy(dst + p * nr, src + p * ldb, sizeof(S) * nr);
        continue;
      }
      for (Eigen::Index p = 0; p < depth; ++p) {
        Eigen::Index j = 0;
        for (; j < width; ++j) dst[p * nr + j] = src[p * ldb + j];
        for (; j < nr; ++j) dst[p * nr + j] = S(0);
      }
    } else {  // op(B)(p, j) = b[p + j·ldb]: a panel's column is contiguous
      const S* src = b + p0 + (j0 + jr) * ldb;
      if (width == nr) {  // whole rows of the panel at a time
        const S* column[nr];
        for (Eigen::Index j = 0; j < nr; ++j) column[j] = src + j * ldb;
        Eigen::Index p = 0;
        using Half = typename ei::unpacket_traits<P>::half;
        constexpr int half = ei::unpacket_traits<Half>::size;
        if constexpr (nr == half && half < packet) {  // nr × nr blocks of half packets, transposed exactly
          for (; p + nr <= depth; p += nr) {
            ei::PacketBlock<Half, half> block;
            for (int j = 0; j < half; ++j) block.packet[j] = ei::ploadu<Half>(column[j] + p);
            ei::ptranspose(block);
            for (int r = 0; r < half; ++r) ei::pstoreu(dst + (p + r) * nr, block.packet[r]);
          }
        } else if constexpr (nr <= packet) {  // a packet of depth from each column, transposed in registers
          for (; p + packet <= depth; p += packet) {
            ei::PacketBlock<P, packet> block;
            for (int j = 0; j < int(nr); ++j) block.packet[j] = ei::ploadu<P>(column[j] + p);
            for (int j = int(nr); j < packet; ++j) block.packet[j] = ei::pset1<P>(S(0));
            ei::ptranspose(block);
            // Row p + r of the panel is the first nr lanes of packet r; its other lanes land where
            // row p + r + 1 is stored next (the last row's: on the next panel, or on packed A's space,
            // both written after this).
            for (int r = 0; r < packet; ++r) ei::pstoreu(dst + (p + r) * nr, block.packet[r]);
          }
        }
        for (; p < depth; ++p)
          for (Eigen::Index j = 0; j < nr; ++j) dst[p * nr + j] = column[j][p];
        continue;
      }
      Eigen::Index j = 0;
      for (; j < width; ++j)
        for (Eigen::Index p = 0; p < depth; ++p) dst[p * nr + j] = src[p + j * ldb];
      for (; j < nr; ++j)
        for (Eigen::Index p = 0; p < depth; ++p) dst[p * nr + j] = S(0);
    }
  }
}

/// C(mc×cols, leading dimension ldc) += one packed block of A (mc rows: gemm_pack_a's panels) times one
/// B panel of cols ≤ nr columns and depth kc (packed, or read in place: see gemm_micro_kernel).
template <class S, bool DirectB>
RESBLOCKS_GEMM_HOT void gemm_panel_column(Eigen::Index mc, Eigen::Index kc, const S* packed_a, const S* b,
                                          Eigen::Index ldb, S* c, Eigen::Index ldc, Eigen::Index cols, bool overwrite) {
  using K = GemmKernelShape<S>;
  for (Eigen::Index ir = 0, rows = 0; ir < mc; ir += rows) {
    rows = gemm_panel_rows<S>(mc - ir);
    S* tile = c + ir;
    const S* pa = packed_a + ir * kc;
    const int np = gemm_panel_packets<S>(rows);
    if (np == K::packets)
      gemm_micro_kernel<S, K::packets, DirectB>(kc, pa, b, tile, ldc, rows, cols, overwrite, ldb);
    else if (np == 1)
      gemm_micro_kernel<S, 1, DirectB>(kc, pa, b, tile, ldc, rows, cols, overwrite, ldb);
    else  // 2 packets of a 3-packet tile
      gemm_micro_kernel<S, 2, DirectB>(kc, pa, b, tile, ldc, rows, cols, overwrite, ldb);
  }
}

/// C(mc×nc, leading dimension ldc) += one packed block of A (mc rows: gemm_pack_a's panels) times one
/// block of op(B) (nc columns) of depth kc, tile by tile (= when `overwrite`): the micro-kernel calls
/// of one block of gemm_packed. op(B)'s whole nr-column panels are read in place from `direct_b`
/// (column-major, leading dimension ldb) when it is given, the others from `packed_b` (gemm_pack_b's
/// panels, at their usual offsets).
template <class S>
void gemm_packed_block(Eigen::Index mc, Eigen::Index nc, Eigen::Index kc, const S* packed_a, const S* packed_b, S* c,
                       Eigen::Index ldc, bool overwrite, const S* direct_b = nullptr, Eigen::Index ldb = 0) {
  using K = GemmKernelShape<S>;
  for (Eigen::Index jr = 0; jr < nc; jr += K::nr) {
    const Eigen::Index cols = std::min(K::nr, nc - jr);
    if (direct_b && cols == K::nr)
      gemm_panel_column<S, true>(mc, kc, packed_a, direct_b + jr * ldb, ldb, c + jr * ldc, ldc, cols, overwrite);
    else
      gemm_panel_column<S, false>(mc, kc, packed_a, packed_b + jr * kc, 0, c + jr * ldc, ldc, cols, overwrite);
  }
}

/// C(m×n, leading dimension ldc) += A·op(B) on the calling thread (C = A·op(B) when `overwrite`: C's
/// old values are not read) in depth blocks of kb (gemm_depth_block of the whole product), A read
/// through `lhs` (see gemm_pack_a), `work` at least GemmKernelShape<S>::work_size values, 64-byte aligned.
template <int LhsOrder, bool TransB, class S, class LhsMapper>
void gemm_packed(Eigen::Index m, Eigen::Index n, Eigen::Index k, Eigen::Index kb, const LhsMapper& lhs, const S* b,
                 Eigen::Index ldb, S* c, Eigen::Index ldc, S* work, bool overwrite = false) {
  using K = GemmKernelShape<S>;
  S* packed_b = work;
  S* packed_a = work + K::b_space;
  const Eigen::Index mb = gemm_block_rows<S>(m, k, kb);
  const Eigen::Index nb = gemm_block_cols<S>(kb);
  // A column-major B is read where it is, its panels' nr columns being nr streams the prefetchers follow,
  // unless A has more than 3 blocks: each block reads B again, and packed panels read faster (4096 × 64
  // × 576: -3%). No pass that reads B and writes it packed: NN 256 × 1024 × 1024 (the Transformer's FFN
  // down) 146-151 -> 168-169 GFLOP/s on one thread, 1024 × 128 × 1024 (the MLP's W x) 143-145 -> 147-150.
  const bool direct_b = !TransB && m <= 3 * K::mc;
  for (Eigen::Index jc = 0; jc < n; jc += nb) {
    const Eigen::Index nc = std::min(nb, n - jc);
    // Columns read in place: the whole panels (only the edge panel is packed), or none.
    const Eigen::Index in_place = direct_b ? nc / K::nr * K::nr : 0;
    for (Eigen::Index pc = 0; pc < k; pc += kb) {
      const Eigen::Index kc = std::min(kb, k - pc);
      gemm_pack_b<TransB>(b, ldb, pc, kc, jc + in_place, nc - in_place, packed_b + in_place * kc);
      for (Eigen::Index ic = 0; ic < m; ic += mb) {
        const Eigen::Index mc = std::min(mb, m - ic);
        gemm_pack_a<LhsOrder>(lhs, ic, mc, pc, kc, packed_a);
        // The first depth block overwrites C's old values when asked (they are not read).
        gemm_packed_block(mc, nc, kc, packed_a, packed_b, c + ic + jc * ldc, ldc, overwrite && pc == 0,
                          direct_b ? b + pc + jc * ldb : nullptr, ldb);
      }
    }
  }
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#undef RESBLOCKS_GEMM_HOT

#endif  // RESBLOCKS_OWN_GEMM_KERNEL

}  // namespace resblocks::detail
