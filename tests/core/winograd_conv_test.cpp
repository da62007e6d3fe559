#include "support/helpers.hpp"

#include <resblocks/core/winograd_conv.hpp>

#include <Eigen/Core>

#include <limits>
#include <string>
#include <vector>

using namespace resblocks;
using detail::DirectConvShape;

// F(4×4, 3×3)'s transforms have coefficients up to 8 (and G's sixths): its rounding error is about ten
// times F(2×2, 3×3)'s (measured: 4e-15 against 4e-16 in double, 3.2e-6 against 2.2e-7 in float).
constexpr double k_f4_double = 2e-14, k_f4_float = 1e-5;

namespace {

// f.template operator()<M>() for m = 2 or 4: the F(M×M) kernels themselves, in double too (whose
// layer runs F(2×2) only).
template <class F>
void with_m(int m, const F& f) {
  if (m == 4)
    f.template operator()<4>();
  else
    f.template operator()<2>();
}

// f(p, tap, q) for every output pixel p of an h × wd image and every tap of a 3×3, stride-1,
// padding-1 kernel whose input pixel q lies inside the image.
template <class F>
void for_each_valid_tap(Index h, Index wd, const F& f) {
  for (Index r = 0; r < h; ++r)
    for (Index c = 0; c < wd; ++c)
      for (Index kh = 0; kh < 3; ++kh)
        for (Index kw = 0; kw < 3; ++kw) {
          const Index hi = r + kh - 1, wi = c + kw - 1;
          if (hi >= 0 && hi < h && wi >= 0 && wi < wd) f(r * wd + c, kh * 3 + kw, hi * wd + wi);
        }
}

// y[p][co] = Σ x[pixel p + tap − 1][ci] · w[tap][ci][co], zero outside the image: the definition of
// a 3×3, stride-1, padding-1 convolution on one channels-last sample, in double.
Eigen::MatrixXd definition(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, Index h, Index wd) {
  const Index in = x.rows();
  Eigen::MatrixXd y = Eigen::MatrixXd::Zero(w.cols(), h * wd);
  for_each_valid_tap(
      h, wd, [&](Index p, Index tap, Index q) { y.col(p) += w.middleRows(tap * in, in).transpose() * x.col(q); });
  return y;
}

// dw[tap·in + ci][co] = Σ_p x[pixel p + tap − 1][ci] · dy[p][co]: the weight gradient of that
// convolution, from the definition.
Eigen::MatrixXd weight_definition(const Eigen::MatrixXd& x, const Eigen::MatrixXd& dy, Index h, Index wd) {
  const Index in = x.rows();
  Eigen::MatrixXd dw = Eigen::MatrixXd::Zero(9 * in, dy.rows());
  for_each_valid_tap(
      h, wd, [&](Index p, Index tap, Index q) { dw.middleRows(tap * in, in) += x.col(q) * dy.col(p).transpose(); });
  return dw;
}

// The F(m×m) Winograd weight gradient of one sample, twice (the first call overwrites du's NaNs, the
// second accumulates), in S: (9·in) × out, rows [tap][in].
template <class S>
Eigen::MatrixXd winograd_weight(const Eigen::MatrixXd& x, const Eigen::MatrixXd& dy, Index h, Index wd, int m) {
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const Index in = x.rows(), out = dy.rows();
  const M xs = x.cast<S>(), dys = dy.cast<S>();
  M du = M::Constant(out, (m + 2) * (m + 2) * in, std::numeric_limits<S>::quiet_NaN());  // [ξ][in][out]
  std::vector<S> scratch(detail::winograd_scratch_size<S>(in, out), S(-7));
  const DirectConvShape shape{in, out, 3, 1, h, wd, h, wd};
  M dw = M::Constant(out, 9 * in, S(1));  // [tap][in][out]; winograd_weight_grad adds to it
  with_m(m, [&]<int F>() {
    for (int twice = 0; twice < 2; ++twice)
      detail::winograd_conv_weight_m<S, F>(shape, xs.data(), dys.data(), du.data(), scratch.data(), twice == 0);
    detail::winograd_weight_grad_m<S, F>(du.data(), in, out, dw.data());
  });
  return (dw.array() - S(1)).matrix().transpose().template cast<double>();
}

template <class S>
struct Run {
  Eigen::MatrixXd y;  // out × pixels
  int tb;
};

// The F(m×m) Winograd kernel on one sample (x: in × pixels, w: (9·in) × out, rows [tap][in]), in S.
template <class S>
Run<S> winograd(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, Index h, Index wd, int m) {
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const Index in = x.rows(), out = w.cols();
  const M xs = x.cast<S>();
  const M wt = w.transpose().cast<S>();  // column-major out × (9·in): [tap][in][out] in memory
  M u((m + 2) * (m + 2) * in, out);
  with_m(m, [&]<int F>() { detail::winograd_weights_m<S, F>(wt.data(), in, out, u.data()); });
  const DirectConvShape shape{in, out, 3, 1, h, wd, h, wd};
  const int tb = detail::winograd_block_tiles<S>(m, int(out / detail::DirectConvTraits<S>::lanes),
                                                 detail::winograd_tiles(m, h, wd).count());
  M y = M::Constant(out, h * wd, S(1e30));  // every output written
  std::vector<S> scratch(detail::winograd_scratch_size<S>(in, out), S(-7));
  if (tb > 0)
    with_m(m,
           [&]<int F>() { detail::winograd_conv_m<S, F>(shape, tb, xs.data(), u.data(), y.data(), scratch.data()); });
  return {y.template cast<double>(), tb};
}

struct Shape {
  Index packets_in, packets_out, h, w;
};

// Even and odd sides (a last tile row or column cut in half), images of one tile row, more tiles
// than a block and fewer (the half block), blocks that overlap and blocks that divide the tiles.
const Shape k_shapes[] = {{1, 1, 28, 28}, {1, 1, 9, 16},  {2, 2, 14, 14}, {2, 2, 7, 9},  {4, 4, 7, 7}, {4, 4, 8, 8},
                          {1, 4, 6, 5},   {4, 1, 13, 11}, {2, 1, 3, 40},  {1, 2, 2, 30}, {3, 2, 15, 2}};

// f(s, in, out, seed) for each shape, in and out in whole packets of S, a fresh seed for each.
template <class S, class F>
void for_each_shape(std::uint64_t seed, const F& f) {
  constexpr Index L = detail::DirectConvTraits<S>::lanes;
  for (const Shape& s : k_shapes) {
    const Index in = s.packets_in * L, out = s.packets_out * L;
    INFO(std::to_string(in) << "->" << out << " " << s.h << "x" << s.w);
    f(s, in, out, seed += 2);
  }
}

template <class S>
void check_shapes(int m, double tolerance) {
  for_each_shape<S>(50, [&](const Shape& s, Index in, Index out, std::uint64_t seed) {
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(in, s.h * s.w, seed);
    const auto w = rbtest::random_batch<Eigen::MatrixXd>(9 * in, out, seed + 1);
    const Run<S> run = winograd<S>(x, w, s.h, s.w, m);
    if (run.tb == 0) {  // too few tiles: the caller runs the direct kernel
      REQUIRE(detail::winograd_tiles(m, s.h, s.w).count() <
              detail::DirectConvTraits<S>::accumulators / s.packets_out / 2);
      return;
    }
    REQUIRE(rbtest::rel_diff(run.y, definition(x, w, s.h, s.w)) < tolerance);
  });
}

template <class S>
void check_weight_shapes(int m, double tolerance) {
  for_each_shape<S>(80, [&](const Shape& s, Index in, Index out, std::uint64_t seed) {
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(in, s.h * s.w, seed);
    const auto dy = rbtest::random_batch<Eigen::MatrixXd>(out, s.h * s.w, seed + 1);
    REQUIRE(rbtest::rel_diff(winograd_weight<S>(x, dy, s.h, s.w, m), 2.0 * weight_definition(x, dy, s.h, s.w)) <
            tolerance);
  });
}

}  // namespace

TEST_CASE("winograd_conv: the weight gradient G^T (sum of V . A dY A^T) G equals the definition", "[winograd]") {
  SECTION("F(2x2, 3x3)") {
    check_weight_shapes<double>(2, 1e-14);
    check_weight_shapes<float>(2, 2e-6);
  }
  SECTION("F(4x4, 3x3)") {
    check_weight_shapes<double>(4, k_f4_double);
    check_weight_shapes<float>(4, k_f4_float);
  }
}

TEST_CASE("winograd_conv: F(2x2, 3x3) and F(4x4, 3x3) equal the 3x3 convolution with padding 1 (double)",
          "[winograd]") {
  check_shapes<double>(2, 1e-14);
  check_shapes<double>(4, k_f4_double);
}

TEST_CASE("winograd_conv: float agrees with the double definition", "[winograd]") {
  check_shapes<float>(2, 2e-6);
  check_shapes<float>(4, k_f4_float);
}

TEST_CASE("winograd_conv: the weight transform is G g G^T", "[winograd]") {
  // One input and one output channel: u[ξ] for ξ = 4i + j is (G g Gᵀ)(i, j).
  Eigen::Matrix<double, 4, 3> g_mat;
  g_mat << 1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1;
  Eigen::Matrix3d g;
  g << 1, -2, 3, 0.25, 5, -6, 7, 8, -0.5;
  const Eigen::Matrix4d expected = g_mat * g * g_mat.transpose();
  std::vector<double> w(9), u(16);
  for (Index kh = 0; kh < 3; ++kh)
    for (Index kw = 0; kw < 3; ++kw) w[std::size_t(kh * 3 + kw)] = g(kh, kw);
  detail::winograd_weights(w.data(), 1, 1, 2, u.data());
  for (Index i = 0; i < 4; ++i)
    for (Index j = 0; j < 4; ++j) REQUIRE(u[std::size_t(4 * i + j)] == expected(i, j));
}

TEST_CASE("winograd_conv: the F(4x4, 3x3) weight transform is G g G^T", "[winograd]") {
  // Lavin & Gray's G for the points 0, ±1, ±2, ∞; u[ξ] for ξ = 6i + j is (G g Gᵀ)(i, j), two input
  // and three output channels (layout [tap][in][out]).
  Eigen::Matrix<double, 6, 3> g_mat;
  g_mat << 1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 24, 1.0 / 12, 1.0 / 6,
      1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1;
  const Index in = 2, out = 3, plane = in * out;
  const auto w = rbtest::random_batch<Eigen::MatrixXd>(plane, 9, 91);  // w(ci·out + co, tap)
  std::vector<double> u(std::size_t(36 * plane));
  detail::winograd_weights_m<double, 4>(w.data(), in, out, u.data());
  for (Index e = 0; e < plane; ++e) {
    Eigen::Matrix3d g;
    for (Index tap = 0; tap < 9; ++tap) g(tap / 3, tap % 3) = w(e, tap);
    const Eigen::Matrix<double, 6, 6> expected = g_mat * g * g_mat.transpose();
    for (Index xi = 0; xi < 36; ++xi)
      REQUIRE(std::abs(u[std::size_t(xi * plane + e)] - expected(xi / 6, xi % 6)) < 1e-15 * expected.norm());
  }
}

TEST_CASE("winograd_conv: F(4x4) in float where it saves a quarter of the products, F(2x2) in double", "[winograd]") {
  constexpr int A = detail::DirectConvTraits<float>::accumulators;
  const auto products = [](detail::WinogradPlan p, Index h, Index w) {
    const Index tiles = detail::winograd_tiles(p.m, h, w).count();
    return (tiles + p.tb - 1) / p.tb * p.tb * p.points();
  };
  for (const int nv : {1, 2, 4})
    for (Index h = 1; h <= 40; h += 3)
      for (Index w = 1; w <= 40; w += 2) {
        INFO("nv " << nv << ", " << h << "x" << w);
        const detail::WinogradPlan d = detail::winograd_plan<double>(nv, h, w),
                                   f = detail::winograd_plan<float>(nv, h, w);
        const int tb2 = detail::winograd_block_tiles<float>(2, nv, detail::winograd_tiles(2, h, w).count());
        const int tb4 = detail::winograd_block_tiles<float>(4, nv, detail::winograd_tiles(4, h, w).count());
        REQUIRE((d.m == 2 || !d.ok()));
        if (tb2 == 0) {
          REQUIRE(!f.ok());
          continue;
        }
        const detail::WinogradPlan f2{2, tb2}, f4{4, tb4};
        const bool four = tb4 > 0 && 4 * products(f4, h, w) <= 3 * products(f2, h, w);
        REQUIRE(f.m == (four ? 4 : 2));
        REQUIRE(f.tb == (four ? tb4 : tb2));
      }
  if constexpr (A == 28) {  // the Fashion-MNIST ResNet's stages: 28×28 at 16 channels, 14×14 at 32, 7×7 at 64
    REQUIRE(detail::winograd_plan<float>(1, 28, 28).m == 4);
    REQUIRE(detail::winograd_plan<float>(2, 14, 14).m == 2);
    REQUIRE(detail::winograd_plan<float>(4, 7, 7).m == 4);
    REQUIRE(detail::winograd_weight_m<float>(28, 28) == 4);
    REQUIRE(detail::winograd_weight_m<float>(14, 14) == 4);
    REQUIRE(detail::winograd_weight_m<float>(7, 7) == 2);
  }
  REQUIRE(detail::winograd_weight_m<double>(28, 28) == 2);
}

TEST_CASE("winograd_conv: block sizes", "[winograd]") {
  constexpr int A = detail::DirectConvTraits<float>::accumulators;
  for (const int nv : {1, 2, 4}) {
    const int full = A / nv, half = (full + 1) / 2;
    const auto computed = [](Index tiles, Index tb) { return (tiles + tb - 1) / tb * tb; };
    for (Index tiles = 1; tiles <= 300; ++tiles) {
      INFO("nv " << nv << ", " << tiles << " tiles");
      const int tb = detail::winograd_block_tiles<float>(2, nv, tiles);
      // F(4×4): the half size only, where the tiles fill one.
      REQUIRE(detail::winograd_block_tiles<float>(4, nv, tiles) == (tiles >= half ? half : 0));
      if (tiles < half) {
        REQUIRE(tb == 0);  // too few tiles: the direct kernel
        continue;
      }
      REQUIRE((tb == full || tb == half));
      REQUIRE(tb <= tiles);
      // The block that computes fewer tiles twice, the larger one on a tie.
      if (tiles >= full) REQUIRE(computed(tiles, tb) <= computed(tiles, tb == full ? half : full));
      if (tb == half && tiles >= full) REQUIRE(computed(tiles, half) < computed(tiles, full));
    }
  }
  if constexpr (A == 28) {  // AVX-512: 28×28 in 7 blocks of 28 tiles; 7×7 (16 tiles) at 64 channels in 4 of 4
    REQUIRE(detail::winograd_block_tiles<float>(2, 1, 196) == 28);
    REQUIRE(detail::winograd_block_tiles<float>(2, 4, 16) == 4);
  }
}
