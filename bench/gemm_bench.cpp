// The GEMM kernel alone on the products of the GEMM-bound benchmarks, one thread and two:
//   BM_Gemm/<op>/m/n/k/threads   C += op(A)·op(B), op = NN, NT (Bᵀ: weight gradients), TN (Aᵀ: dL/dx)
// MLP block 1024/128 (its three products) and the Transformer block 256/4/1024/128/8 (QKV, FFN and
// their backward products, 1024 tokens). GFLOP/s counts 2·m·n·k. Against Eigen's kernel: build with
// -DRESBLOCKS_EIGEN_GEMM_KERNEL (README, "The GEMM kernel").
//   BM_GemmMicroKernel/kc        the micro-kernel alone on packed panels in L1/L2 (own kernel only)
//   BM_GemmPrepacked/<op>/m/n/k  one thread, both operands packed once beforehand: the driver's block
//                                loop without its packing, the product's ceiling (own kernel only)
//   BM_GemmHot/<op>/m/n/k        the same loop reading one packed block of each operand over and over:
//                                its ceiling with only C streaming (own kernel only)
#include <resblocks/resblocks.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <utility>

using namespace resblocks;

namespace {
namespace gemm_bench {  // its own names: resblocks_bench can build as one translation unit

/// The GFLOP/s counter of a product (2·m·n·k per iteration).
void set_gemm_rate(benchmark::State& state, Index m, Index n, Index k) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(m) * double(n) * double(k), benchmark::Counter::kIsIterationInvariantRate);
}

/// A (m×k, or k×m when TA), B (k×n, or n×k when TB), uniform in [-1, 1) from seed 3, and C = 0 (m×n).
template <bool TA, bool TB>
std::tuple<Eigen::MatrixXf, Eigen::MatrixXf, Eigen::MatrixXf> gemm_operands(Index m, Index n, Index k) {
  Generator g(3);
  Eigen::MatrixXf a(TA ? k : m, TA ? m : k), b(TB ? n : k, TB ? k : n);
  fill_uniform(a, 1.0, g);
  fill_uniform(b, 1.0, g);
  return {std::move(a), std::move(b), Eigen::MatrixXf::Zero(m, n)};
}

template <bool TA, bool TB>
void BM_Gemm(benchmark::State& state, Index m, Index n, Index k, int threads) {
  auto [a, b, c] = gemm_operands<TA, TB>(m, n, k);
  const int saved = num_threads();
  set_num_threads(threads);
  for (auto _ : state) {
    detail::gemm_accumulate<TA, TB, float>(m, n, k, {a.data(), a.rows()}, {b.data(), b.rows()}, c.data(), m);
    benchmark::ClobberMemory();
  }
  set_num_threads(saved);
  set_gemm_rate(state, m, n, k);
}

/// "<bench>/<op>/m/n/k".
std::string product_name(const char* bench, const char* op, Index m, Index n, Index k) {
  return std::string(bench) + "/" + op + "/" + std::to_string(m) + "/" + std::to_string(n) + "/" + std::to_string(k);
}

template <bool TA, bool TB>
void add(const char* op, Index m, Index n, Index k) {
  for (int threads : {1, 2}) {
    const std::string name = product_name("BM_Gemm", op, m, n, k) + "/" + std::to_string(threads);
    benchmark::RegisterBenchmark(name.c_str(), BM_Gemm<TA, TB>, m, n, k, threads)->UseRealTime();
  }
}

#if RESBLOCKS_OWN_GEMM_KERNEL
// The micro-kernel alone, the ceiling of the products: one thread, a block of 384 rows of A packed as
// 48-row panels (the mc × kc block the products keep in L2) times one packed B panel of 8 columns (L1),
// over depth kc, each panel's 48 × 8 tile added to C (in L1). GFLOP/s counts the tiles' FMAs.
void BM_GemmMicroKernel(benchmark::State& state) {
  using K = detail::GemmKernelShape<float>;
  const Index kc = state.range(0), panels = K::mc / K::mr;
  Generator g(5);
  Eigen::VectorXf a_values(K::mr * kc * panels), b_values(K::nr * kc);
  fill_uniform(a_values, 1.0, g);
  fill_uniform(b_values, 1.0, g);
  // Aligned copies: the kernel loads whole packets from packed panels.
  detail::PackBuffer<float> a_buffer, b_buffer;
  float* a = a_buffer.get(std::size_t(a_values.size()));
  float* b = b_buffer.get(std::size_t(b_values.size()));
  std::copy(a_values.begin(), a_values.end(), a);
  std::copy(b_values.begin(), b_values.end(), b);
  Eigen::MatrixXf c = Eigen::MatrixXf::Zero(K::mc, K::nr);
  for (auto _ : state) {
    for (Index p = 0; p < panels; ++p)
      detail::gemm_micro_kernel<float, K::packets>(kc, a + p * K::mr * kc, b, c.data() + p * K::mr, c.rows(), K::mr,
                                                   K::nr, false);
    benchmark::ClobberMemory();
  }
  set_gemm_rate(state, K::mc, K::nr, kc);
}
BENCHMARK(BM_GemmMicroKernel)->Arg(128)->Arg(256)->Arg(344)->UseRealTime();

/// The blocks gemm_packed cuts a one-thread product into: depth kb, rows mb, columns nb.
struct Blocks {
  Index kb, mb, nb;
  Blocks(Index m, Index k, bool trans_b)
      : kb(detail::gemm_depth_block<float>(m, k, trans_b)),
        mb(detail::gemm_block_rows<float>(m, k, kb)),
        nb(detail::gemm_block_cols<float>(kb)) {}
  /// Values of one packed block of A and of op(B), with room for a padded last panel and for gemm_pack_b's
  /// writes past its end.
  Index a_size() const { return (mb + detail::GemmKernelShape<float>::packet) * kb; }
  Index b_size() const {
    return (nb + detail::GemmKernelShape<float>::nr) * kb + detail::GemmKernelShape<float>::packet;
  }
};

/// Runs the block loop of gemm_packed on packed blocks: C's block (ic, jc) += the block of A at
/// a_block(p, i) times the block of op(B) at b_block(j, p), for the depth block p, row block i and column block j.
template <class ABlock, class BBlock>
void run_blocks(const Blocks& blocks, Index m, Index n, Index k, float* c, ABlock a_block, BBlock b_block) {
  for (Index jc = 0, j = 0; jc < n; jc += blocks.nb, ++j)
    for (Index pc = 0, p = 0; pc < k; pc += blocks.kb, ++p)
      for (Index ic = 0, i = 0; ic < m; ic += blocks.mb, ++i)
        detail::gemm_packed_block(std::min(blocks.mb, m - ic), std::min(blocks.nb, n - jc), std::min(blocks.kb, k - pc),
                                  a_block(p, i), b_block(j, p), c + ic + jc * m, m, false);
}

// The product of BM_Gemm on one thread with every block of A and op(B) packed before the timing:
// the blocks gemm_packed would pack (its depth, row and column blocks), then the same micro-kernel
// calls (gemm_packed_block). Against BM_Gemm/<op>/m/n/k/1 it shows what the packing costs the product.
template <bool TA, bool TB>
void BM_GemmPrepacked(benchmark::State& state, Index m, Index n, Index k) {
  auto [a, b, c] = gemm_operands<TA, TB>(m, n, k);
  const Blocks blocks(m, k, TB);
  const Index depth_blocks = (k + blocks.kb - 1) / blocks.kb, row_blocks = (m + blocks.mb - 1) / blocks.mb,
              col_blocks = (n + blocks.nb - 1) / blocks.nb;
  detail::PackBuffer<float> a_buffer, b_buffer;
  float* packed_a = a_buffer.get(std::size_t(blocks.a_size() * depth_blocks * row_blocks));
  float* packed_b = b_buffer.get(std::size_t(blocks.b_size() * col_blocks * depth_blocks));
  const auto a_block = [&](Index p, Index i) { return packed_a + (p * row_blocks + i) * blocks.a_size(); };
  const auto b_block = [&](Index j, Index p) { return packed_b + (j * depth_blocks + p) * blocks.b_size(); };
  constexpr int order = TA ? Eigen::RowMajor : Eigen::ColMajor;
  const Eigen::internal::const_blas_data_mapper<float, Index, order> lhs(a.data(), a.rows());
  for (Index pc = 0, p = 0; pc < k; pc += blocks.kb, ++p) {
    const Index depth = std::min(blocks.kb, k - pc);
    for (Index ic = 0, i = 0; ic < m; ic += blocks.mb, ++i)
      detail::gemm_pack_a<order>(lhs, ic, std::min(blocks.mb, m - ic), pc, depth, a_block(p, i));
    for (Index jc = 0, j = 0; jc < n; jc += blocks.nb, ++j)
      detail::gemm_pack_b<TB>(b.data(), b.rows(), pc, depth, jc, std::min(blocks.nb, n - jc), b_block(j, p));
  }
  for (auto _ : state) {
    run_blocks(blocks, m, n, k, c.data(), a_block, b_block);
    benchmark::ClobberMemory();
  }
  set_gemm_rate(state, m, n, k);
}

// BM_GemmPrepacked with nothing streaming in but C: the product's first block of A and of op(B) are
// packed once and every block of the loop reads those two (so they stay in cache), while C is updated as
// in the product. Its values are not the product's, only its speed is: the block loop's ceiling when the
// big operand costs nothing to bring in (BM_GemmPrepacked: it streams in packed, from beyond L2;
// BM_Gemm: it is packed on the way).
template <bool TA, bool TB>
void BM_GemmHot(benchmark::State& state, Index m, Index n, Index k) {
  auto [a, b, c] = gemm_operands<TA, TB>(m, n, k);
  const Blocks blocks(m, k, TB);
  detail::PackBuffer<float> a_buffer, b_buffer;
  float* packed_a = a_buffer.get(std::size_t(blocks.a_size()));
  float* packed_b = b_buffer.get(std::size_t(blocks.b_size()));
  constexpr int order = TA ? Eigen::RowMajor : Eigen::ColMajor;
  const Eigen::internal::const_blas_data_mapper<float, Index, order> lhs(a.data(), a.rows());
  const Index depth = std::min(blocks.kb, k);
  detail::gemm_pack_a<order>(lhs, 0, std::min(blocks.mb, m), 0, depth, packed_a);
  detail::gemm_pack_b<TB>(b.data(), b.rows(), 0, depth, 0, std::min(blocks.nb, n), packed_b);
  for (auto _ : state) {
    run_blocks(
        blocks, m, n, k, c.data(), [&](Index, Index) { return packed_a; }, [&](Index, Index) { return packed_b; });
    benchmark::ClobberMemory();
  }
  set_gemm_rate(state, m, n, k);
}
#endif

template <bool TA, bool TB>
void add_prepacked([[maybe_unused]] const char* op, [[maybe_unused]] Index m, [[maybe_unused]] Index n,
                   [[maybe_unused]] Index k) {
#if RESBLOCKS_OWN_GEMM_KERNEL
  benchmark::RegisterBenchmark(product_name("BM_GemmPrepacked", op, m, n, k).c_str(), BM_GemmPrepacked<TA, TB>, m, n, k)
      ->UseRealTime();
  benchmark::RegisterBenchmark(product_name("BM_GemmHot", op, m, n, k).c_str(), BM_GemmHot<TA, TB>, m, n, k)
      ->UseRealTime();
#endif
}

/// BM_Gemm on 1 and 2 threads, BM_GemmPrepacked and BM_GemmHot, of one product.
template <bool TA, bool TB>
void add_product(const char* op, Index m, Index n, Index k) {
  add<TA, TB>(op, m, n, k);
  add_prepacked<TA, TB>(op, m, n, k);
}

const bool registered = [] {
  add_product<false, false>("NN", 1024, 128, 1024);  // MLP 1024/128: W x
  add_product<false, true>("NT", 1024, 1024, 128);   //   dL/dW = dy xᵀ
  add_product<true, false>("TN", 1024, 128, 1024);   //   dL/dx = Wᵀ dy
  add_product<false, false>("NN", 768, 1024, 256);   // Transformer 256/…/8: [Q; K; V] = W_in x
  add_product<false, false>("NN", 1024, 1024, 256);  //   FFN up
  add_product<false, false>("NN", 256, 1024, 1024);  //   FFN down
  add_product<false, true>("NT", 1024, 256, 1024);   //   dL/dW of FFN up
  add_product<true, false>("TN", 256, 1024, 1024);   //   dL/dx of FFN up
  return true;
}();

}  // namespace gemm_bench
}  // namespace
