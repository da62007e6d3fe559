#include "support/helpers.hpp"

#include <resblocks/core/gemm.hpp>

using resblocks::Index;
using resblocks::detail::gemm;

namespace {

template <bool TA, bool TB>
void check_against_eigen(Index m, Index n, Index k, bool accumulate) {
  const Eigen::MatrixXd a = rbtest::random_batch<Eigen::MatrixXd>(TA ? k : m, TA ? m : k, 1);
  const Eigen::MatrixXd b = rbtest::random_batch<Eigen::MatrixXd>(TB ? n : k, TB ? k : n, 2);
  const Eigen::MatrixXd c0 = rbtest::random_batch<Eigen::MatrixXd>(m, n, 3);
  Eigen::MatrixXd expected = accumulate ? c0 : Eigen::MatrixXd::Zero(m, n);
  // Reference: plain triple loop, independent of Eigen's product kernels.
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j)
      for (Index p = 0; p < k; ++p) expected(i, j) += (TA ? a(p, i) : a(i, p)) * (TB ? b(j, p) : b(p, j));
  Eigen::MatrixXd c = c0;
  gemm<TA, TB>(c, a, b, accumulate);
  INFO("m=" << m << " n=" << n << " k=" << k << " TA=" << TA << " TB=" << TB << " acc=" << accumulate);
  REQUIRE((c - expected).cwiseAbs().maxCoeff() <= 1e-11 * static_cast<double>(k));
}

template <bool TA, bool TB>
void check_all_shapes() {
  // tiny (coefficient path), small (Eigen stack path), large (packed driver, threaded), odd sizes.
  const Index shapes[][3] = {{1, 1, 1},    {3, 1, 5},      {1, 7, 4},       {5, 6, 7},      {33, 17, 9},
                             {64, 32, 64}, {130, 70, 300}, {257, 129, 100}, {100, 300, 257}};
  for (const auto& s : shapes) {
    check_against_eigen<TA, TB>(s[0], s[1], s[2], false);
    check_against_eigen<TA, TB>(s[0], s[1], s[2], true);
  }
}

// float against a double reference, on shapes that cross the packed kernel's blocks: depth past kc
// (384 for float), rows past mc (384) and columns past nc (3072), register-tile edges (rows below
// and between one and three SIMD packets, a block's last panel of one packet, and the last 49-64 rows
// that run as two 2-packet panels: 61 and 100 with AVX-512; columns not a multiple of nr), depth not a
// multiple of a packet; a short A over depth blocks deeper than kc (100 × 20 × 2100: 3 of 704).
template <bool TA, bool TB>
void check_float_blocks() {
  const Index shapes[][3] = {{400, 50, 777}, {17, 13, 390}, {40, 3100, 24}, {24, 7, 1000},
                             {9, 30, 17},    {61, 9, 33},   {100, 20, 400}, {100, 20, 2100}};
  for (const auto& s : shapes) {
    const Index m = s[0], n = s[1], k = s[2];
    const Eigen::MatrixXf a = rbtest::random_batch<Eigen::MatrixXf>(TA ? k : m, TA ? m : k, 6);
    const Eigen::MatrixXf b = rbtest::random_batch<Eigen::MatrixXf>(TB ? n : k, TB ? k : n, 7);
    const Eigen::MatrixXd ad = a.cast<double>(), bd = b.cast<double>();
    Eigen::MatrixXd expected = Eigen::MatrixXd::Zero(m, n);
    for (Index j = 0; j < n; ++j)
      for (Index p = 0; p < k; ++p)
        for (Index i = 0; i < m; ++i) expected(i, j) += (TA ? ad(p, i) : ad(i, p)) * (TB ? bd(j, p) : bd(p, j));
    Eigen::MatrixXf c(m, n);
    gemm<TA, TB>(c, a, b, false);
    INFO("m=" << m << " n=" << n << " k=" << k << " TA=" << TA << " TB=" << TB);
    REQUIRE((c.cast<double>() - expected).cwiseAbs().maxCoeff() <= 2e-7 * static_cast<double>(k));
  }
}

// Each C element sums its k terms in the same order whatever the row blocking, so the rows [row0, row0 +
// rows) of an m-row product equal, bit for bit, the product of those rows alone (A's rows copied out),
// whose rows are blocked differently; they also match a double product. The depth blocks depend on the
// product's m (gemm_depth_block), so the shapes must give both products the same ones (checked here).
template <class S, bool TA>
void check_row_slice_bits(Index m, Index row0, Index rows, Index n, Index k) {
#if RESBLOCKS_OWN_GEMM_KERNEL
  REQUIRE(resblocks::detail::gemm_depth_block<S>(m, k, false) ==
          resblocks::detail::gemm_depth_block<S>(rows, k, false));
#endif
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const M a = rbtest::random_batch<M>(TA ? k : m, TA ? m : k, 8);
  const M b = rbtest::random_batch<M>(k, n, 9);
  const M a_rows = TA ? M(a.middleCols(row0, rows)) : M(a.middleRows(row0, rows));
  M c(m, n), c_rows(rows, n);
  const int saved = resblocks::num_threads();
  resblocks::set_num_threads(1);
  gemm<TA, false>(c, a, b, false);
  gemm<TA, false>(c_rows, a_rows, b, false);
  resblocks::set_num_threads(saved);
  INFO("m=" << m << " rows " << row0 << "+" << rows << " n=" << n << " k=" << k << " TA=" << TA
            << " scalar bytes=" << sizeof(S));
  REQUIRE(c.middleRows(row0, rows) == c_rows);
  const Eigen::MatrixXd a_op = TA ? Eigen::MatrixXd(a_rows.template cast<double>().transpose())
                                  : Eigen::MatrixXd(a_rows.template cast<double>());
  REQUIRE(c_rows.template cast<double>().isApprox(a_op * b.template cast<double>(), sizeof(S) == 4 ? 1e-5 : 1e-12));
}

template <class S>
void check_row_slice_bits(Index m, Index row0, Index rows, Index n, Index k) {
  check_row_slice_bits<S, false>(m, row0, rows, n, k);
  check_row_slice_bits<S, true>(m, row0, rows, n, k);
}

}  // namespace

TEST_CASE("gemm: float products across the kernel's cache blocks and register-tile edges", "[gemm]") {
  check_float_blocks<false, false>();
  check_float_blocks<true, false>();
  check_float_blocks<false, true>();
  check_float_blocks<true, true>();
}

TEST_CASE("gemm: C = A B and C += A B match a reference loop on all paths", "[gemm]") {
  check_all_shapes<false, false>();
}
TEST_CASE("gemm: transposed A", "[gemm]") { check_all_shapes<true, false>(); }
TEST_CASE("gemm: transposed B", "[gemm]") { check_all_shapes<false, true>(); }

TEST_CASE("gemm: results do not depend on the thread count (bit for bit)", "[gemm][threads]") {
  const Eigen::MatrixXf a = rbtest::random_batch<Eigen::MatrixXf>(517, 300, 4);
  const Eigen::MatrixXf b = rbtest::random_batch<Eigen::MatrixXf>(300, 263, 5);
  const Eigen::MatrixXf bt = b.transpose();
  Eigen::MatrixXf c1(517, 263), c2(517, 263), d1(517, 263), d2(517, 263);
  const int saved = resblocks::num_threads();
  resblocks::set_num_threads(1);
  gemm<false, false>(c1, a, b, false);
  gemm<false, true>(d1, a, bt, false);
  resblocks::set_num_threads(2);
  gemm<false, false>(c2, a, b, false);
  gemm<false, true>(d2, a, bt, false);
  resblocks::set_num_threads(saved);
  REQUIRE(c1 == c2);
  REQUIRE(d1 == d2);
  REQUIRE(c1.isApprox((a * b).eval(), 1e-5f));
}

// A short A with B read in place runs deeper blocks (gemm_depth_block), chosen from the whole product's
// rows: 600 rows 1000 deep run as 3 blocks of 336 with 2 MB of L2, while each thread's 300 rows alone
// would take 2 of 504. Split by rows on 2 threads, the bits must still be those of 1 thread.
TEST_CASE("gemm: deep blocks are chosen from the whole product, not a thread's rows", "[gemm][threads]") {
  for (const bool trans_a : {false, true}) {
    const Index m = 600, n = 64, k = 1000;
    const Eigen::MatrixXf a = rbtest::random_batch<Eigen::MatrixXf>(trans_a ? k : m, trans_a ? m : k, 4);
    const Eigen::MatrixXf b = rbtest::random_batch<Eigen::MatrixXf>(k, n, 5);
    Eigen::MatrixXf c1(m, n), c2(m, n);
    const int saved = resblocks::num_threads();
    resblocks::set_num_threads(1);
    trans_a ? gemm<true, false>(c1, a, b, false) : gemm<false, false>(c1, a, b, false);
    resblocks::set_num_threads(2);
    trans_a ? gemm<true, false>(c2, a, b, false) : gemm<false, false>(c2, a, b, false);
    resblocks::set_num_threads(saved);
    INFO("TA=" << trans_a);
    REQUIRE(c1 == c2);
    const Eigen::MatrixXd expected =
        (trans_a ? Eigen::MatrixXd(a.cast<double>().transpose()) : Eigen::MatrixXd(a.cast<double>())) *
        b.cast<double>();
    REQUIRE((c1.cast<double>() - expected).cwiseAbs().maxCoeff() <= 2e-7 * double(k));
  }
#if RESBLOCKS_OWN_GEMM_KERNEL
  using resblocks::detail::gemm_depth_block;
  using K = resblocks::detail::GemmKernelShape<float>;
  if (Eigen::l1CacheSize() >= 48 * 1024 && Eigen::l2CacheSize() >= (std::ptrdiff_t(1) << 21)) {
    CHECK(gemm_depth_block<float>(256, 1024, false) == 1024);  // the Transformer's FFN down: one block
    CHECK(gemm_depth_block<float>(600, 1000, false) < gemm_depth_block<float>(300, 1000, false));
  }
  CHECK(gemm_depth_block<float>(256, 1024, true) <= K::kc);    // Bᵀ is packed: blocks of at most kc
  CHECK(gemm_depth_block<float>(1024, 1024, false) <= K::kc);  // too many rows for L2
  CHECK(gemm_depth_block<float>(16, 5000, false) <= K::kc_short);
#endif
}

// zero_block's prologue lets the kernel write its first partial sums over C instead of zeroing C
// (BlockFn::zeroes); a prologue that zeroes another matrix must still run, and C keep its values.
TEST_CASE("gemm: a prologue that zeroes another matrix still runs", "[gemm]") {
  const Index m = 130, n = 70, k = 300;  // the packed, threaded path
  const Eigen::MatrixXf a = rbtest::random_batch<Eigen::MatrixXf>(m, k, 1);
  const Eigen::MatrixXf b = rbtest::random_batch<Eigen::MatrixXf>(k, n, 2);
  const Eigen::MatrixXf c0 = rbtest::random_batch<Eigen::MatrixXf>(m, n, 3);
  const Eigen::MatrixXf product = (a.cast<double>() * b.cast<double>()).cast<float>();
  Eigen::MatrixXf c = c0, other = Eigen::MatrixXf::Ones(m, n);
  gemm<false, false>(c, a, b, resblocks::detail::zero_block(other));
  CHECK(other.isZero(0));
  CHECK((c - (c0 + product)).cwiseAbs().maxCoeff() <= 1e-4f);
  gemm<false, false>(c, a, b, resblocks::detail::zero_block(c));  // C's old values are not read
  CHECK((c - product).cwiseAbs().maxCoeff() <= 1e-4f);
}

TEST_CASE("gemm: empty operands leave C as it was, or zero", "[gemm]") {
  Eigen::MatrixXf a(4, 0), b(0, 3), c = Eigen::MatrixXf::Ones(4, 3);
  gemm<false, false>(c, a, b, true);
  REQUIRE(c == Eigen::MatrixXf::Ones(4, 3));
  gemm<false, false>(c, a, b, false);
  REQUIRE(c.isZero());
}

// The kernel reads a column-major B in place when A has few row blocks, and packs it otherwise: 1200
// rows take the packed panels (more than 3 blocks of A), 400 rows the in-place reads; 35 columns end
// with a partial panel (packed in both), 700 deep spans depth blocks.
TEST_CASE("gemm: B read in place gives the packed panels' bits", "[gemm]") {
  check_row_slice_bits<float>(1200, 0, 400, 35, 700);
  check_row_slice_bits<double>(1200, 0, 400, 35, 700);
}

// A product of one depth block packs A in blocks taller than mc where L2 holds them (gemm_block_rows):
// 1500 rows 100 deep run as one block of 1500 with 2 MB of L2, two of 750 with 1 MB, three of 500 with
// 512 KB; rows 700-1099 alone run as one block, across those blocks' boundaries.
TEST_CASE("gemm: rows packed in blocks of any height give the same bits", "[gemm]") {
#if RESBLOCKS_OWN_GEMM_KERNEL
  if (Eigen::l2CacheSize() >= (std::ptrdiff_t(1) << 19))
    REQUIRE(resblocks::detail::gemm_block_rows<float>(1500, 100, 100) > resblocks::detail::GemmKernelShape<float>::mc);
#endif
  check_row_slice_bits<float>(1500, 700, 400, 35, 100);
  check_row_slice_bits<double>(1500, 700, 400, 35, 100);
}
