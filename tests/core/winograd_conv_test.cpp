#include "support/helpers.hpp"

#include <resblocks/core/winograd_conv.hpp>

#include <Eigen/Core>

#include <string>
#include <vector>

using namespace resblocks;
using detail::DirectConvShape;

namespace {

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

// The Winograd weight gradient of one sample, twice (it accumulates), in S: (9·in) × out, rows [tap][in].
template <class S>
Eigen::MatrixXd winograd_weight(const Eigen::MatrixXd& x, const Eigen::MatrixXd& dy, Index h, Index wd) {
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const Index in = x.rows(), out = dy.rows();
  const M xs = x.cast<S>(), dys = dy.cast<S>();
  M du = M::Zero(out, 16 * in);  // [ξ][in][out]
  std::vector<S> scratch(detail::winograd_scratch_size<S>(in, out), S(-7));
  const DirectConvShape shape{in, out, 3, 1, h, wd, h, wd};
  for (int twice = 0; twice < 2; ++twice)
    detail::winograd_conv_weight(shape, xs.data(), dys.data(), du.data(), scratch.data());
  M dw = M::Constant(out, 9 * in, S(1));  // [tap][in][out]; winograd_weight_grad adds to it
  detail::winograd_weight_grad(du.data(), in, out, dw.data());
  return (dw.array() - S(1)).matrix().transpose().template cast<double>();
}

template <class S>
struct Run {
  Eigen::MatrixXd y;  // out × pixels
  int tb;
};

// The Winograd kernel on one sample (x: in × pixels, w: (9·in) × out, rows [tap][in]), in S.
template <class S>
Run<S> winograd(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, Index h, Index wd) {
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const Index in = x.rows(), out = w.cols();
  const M xs = x.cast<S>();
  const M wt = w.transpose().cast<S>();  // column-major out × (9·in): [tap][in][out] in memory
  M u(16 * in, out);
  detail::winograd_weights(wt.data(), in, out, u.data());
  const DirectConvShape shape{in, out, 3, 1, h, wd, h, wd};
  const int tb = detail::winograd_block_tiles<S>(int(out / detail::DirectConvTraits<S>::lanes),
                                                 detail::winograd_tiles(h, wd).count());
  M y = M::Constant(out, h * wd, S(1e30));  // every output written
  std::vector<S> scratch(detail::winograd_scratch_size<S>(in, out), S(-7));
  if (tb > 0) detail::winograd_conv(shape, tb, xs.data(), u.data(), y.data(), scratch.data());
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
void check_shapes(double tolerance) {
  for_each_shape<S>(50, [&](const Shape& s, Index in, Index out, std::uint64_t seed) {
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(in, s.h * s.w, seed);
    const auto w = rbtest::random_batch<Eigen::MatrixXd>(9 * in, out, seed + 1);
    const Run<S> run = winograd<S>(x, w, s.h, s.w);
    if (run.tb == 0) {  // too few tiles: the caller runs the direct kernel
      REQUIRE(detail::winograd_tiles(s.h, s.w).count() < detail::DirectConvTraits<S>::accumulators / s.packets_out / 2);
      return;
    }
    REQUIRE(rbtest::rel_diff(run.y, definition(x, w, s.h, s.w)) < tolerance);
  });
}

template <class S>
void check_weight_shapes(double tolerance) {
  for_each_shape<S>(80, [&](const Shape& s, Index in, Index out, std::uint64_t seed) {
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(in, s.h * s.w, seed);
    const auto dy = rbtest::random_batch<Eigen::MatrixXd>(out, s.h * s.w, seed + 1);
    REQUIRE(rbtest::rel_diff(winograd_weight<S>(x, dy, s.h, s.w), 2.0 * weight_definition(x, dy, s.h, s.w)) <
            tolerance);
  });
}

}  // namespace

TEST_CASE("winograd_conv: the weight gradient G^T (sum of V . A dY A^T) G equals the definition", "[winograd]") {
  check_weight_shapes<double>(1e-14);
  check_weight_shapes<float>(2e-6);
}

TEST_CASE("winograd_conv: F(2x2, 3x3) equals the 3x3 convolution with padding 1 (double)", "[winograd]") {
  check_shapes<double>(1e-14);
}

TEST_CASE("winograd_conv: float agrees with the double definition", "[winograd]") { check_shapes<float>(2e-6); }

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
  detail::winograd_weights(w.data(), 1, 1, u.data());
  for (Index i = 0; i < 4; ++i)
    for (Index j = 0; j < 4; ++j) REQUIRE(u[std::size_t(4 * i + j)] == expected(i, j));
}

TEST_CASE("winograd_conv: block sizes", "[winograd]") {
  constexpr int A = detail::DirectConvTraits<float>::accumulators;
  for (const int nv : {1, 2, 4}) {
    const int full = A / nv, half = (full + 1) / 2;
    const auto computed = [](Index tiles, Index tb) { return (tiles + tb - 1) / tb * tb; };
    for (Index tiles = 1; tiles <= 300; ++tiles) {
      INFO("nv " << nv << ", " << tiles << " tiles");
      const int tb = detail::winograd_block_tiles<float>(nv, tiles);
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
    REQUIRE(detail::winograd_block_tiles<float>(1, 196) == 28);
    REQUIRE(detail::winograd_block_tiles<float>(4, 16) == 4);
  }
}
