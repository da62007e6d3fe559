// channel_affine: BatchNorm2d's per-channel passes against their definition, element by element, on
// channel counts that are whole SIMD packets (the packet loop) and that are not (Eigen's expression),
// with and without an addend, in place over the addend too.

#include "support/helpers.hpp"

#include <resblocks/core/channel_affine.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

using namespace resblocks;

namespace {
template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <class S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;

constexpr Index k_rows[] = {1, 3, 4, 5, 8, 12, 16, 17, 24, 32, 48, 64};

/// Equal up to a few roundings (a compiler may fuse a product and a sum into one FMA).
template <class S>
bool close(S a, S b, S scale) {
  return std::abs(a - b) <= 8 * std::numeric_limits<S>::epsilon() * (S(1) + scale);
}

template <class S>
void check_forward() {
  for (const Index rows : k_rows) {
    CAPTURE(rows);
    const Index cols = 7;
    const Mat<S> x = rbtest::random_batch<Mat<S>>(rows, cols, 1), add = rbtest::random_batch<Mat<S>>(rows, cols, 2);
    const Vec<S> s = rbtest::random_batch<Mat<S>>(rows, 1, 3), t = rbtest::random_batch<Mat<S>>(rows, 1, 4);
    Mat<S> out = Mat<S>::Constant(rows, cols, S(99));
    detail::channel_affine(x.data(), s.data(), t.data(), static_cast<const S*>(nullptr), out.data(), rows, cols);
    Mat<S> with_add(rows, cols), in_place = add;
    detail::channel_affine(x.data(), s.data(), t.data(), add.data(), with_add.data(), rows, cols);
    detail::channel_affine(x.data(), s.data(), t.data(), in_place.data(), in_place.data(), rows, cols);
    for (Index j = 0; j < cols; ++j)
      for (Index r = 0; r < rows; ++r) {
        const S expected = x(r, j) * s(r) + t(r);
        REQUIRE(close(out(r, j), expected, std::abs(x(r, j) * s(r))));
        REQUIRE(close(with_add(r, j), expected + add(r, j), std::abs(x(r, j) * s(r))));
      }
    REQUIRE(in_place == with_add);
  }
}

template <class S>
void check_backward() {
  for (const Index rows : k_rows) {
    CAPTURE(rows);
    const Index cols = 5;
    const Mat<S> g = rbtest::random_batch<Mat<S>>(rows, cols, 5), x = rbtest::random_batch<Mat<S>>(rows, cols, 6),
                 add = rbtest::random_batch<Mat<S>>(rows, cols, 7);
    const Vec<S> s = rbtest::random_batch<Mat<S>>(rows, 1, 8), b = rbtest::random_batch<Mat<S>>(rows, 1, 9),
                 c = rbtest::random_batch<Mat<S>>(rows, 1, 10);
    Mat<S> out = Mat<S>::Constant(rows, cols, S(99)), with_add(rows, cols), in_place = add;
    detail::channel_affine(g.data(), s.data(), x.data(), b.data(), c.data(), static_cast<const S*>(nullptr), out.data(),
                           rows, cols);
    detail::channel_affine(g.data(), s.data(), x.data(), b.data(), c.data(), add.data(), with_add.data(), rows, cols);
    detail::channel_affine(g.data(), s.data(), x.data(), b.data(), c.data(), in_place.data(), in_place.data(), rows,
                           cols);
    for (Index j = 0; j < cols; ++j)
      for (Index r = 0; r < rows; ++r) {
        const S expected = g(r, j) * s(r) + x(r, j) * b(r) + c(r);
        REQUIRE(close(out(r, j), expected, std::abs(g(r, j) * s(r)) + std::abs(x(r, j) * b(r))));
        REQUIRE(close(with_add(r, j), expected + add(r, j), std::abs(g(r, j) * s(r)) + std::abs(x(r, j) * b(r))));
      }
    REQUIRE(in_place == with_add);
  }
}

// channel_affine_relu is BatchNorm2d's pass then ReLU's, in one: the same bits as the two (whose results
// a convolution after them reads either way), and max(·, 0) of the definition.
template <class S>
void check_forward_relu() {
  for (const Index rows : k_rows) {
    CAPTURE(rows);
    const Index cols = 7;
    const Mat<S> x = rbtest::random_batch<Mat<S>>(rows, cols, 11);
    const Vec<S> s = rbtest::random_batch<Mat<S>>(rows, 1, 12), t = rbtest::random_batch<Mat<S>>(rows, 1, 13);
    Mat<S> two_passes(rows, cols), fused = Mat<S>::Constant(rows, cols, S(99));
    detail::channel_affine(x.data(), s.data(), t.data(), static_cast<const S*>(nullptr), two_passes.data(), rows, cols);
    two_passes = two_passes.cwiseMax(S(0));
    detail::channel_affine_relu(x.data(), s.data(), t.data(), fused.data(), rows, cols);
    REQUIRE(fused == two_passes);
    REQUIRE((fused.array() > S(0)).count() > 0);  // both signs occur before the ReLU
    REQUIRE((fused.array() == S(0)).count() > 0);
    for (Index j = 0; j < cols; ++j)
      for (Index r = 0; r < rows; ++r)
        REQUIRE(close(fused(r, j), std::max(x(r, j) * s(r) + t(r), S(0)), std::abs(x(r, j) * s(r))));
  }
}

}  // namespace

TEST_CASE("channel_affine_relu: max(s*x + t, 0), the bits of the affine pass then ReLU", "[channel_affine]") {
  check_forward_relu<float>();
  check_forward_relu<double>();
}

TEST_CASE("channel_affine: s*x + t (+ add) per channel, packets or not", "[channel_affine]") {
  check_forward<float>();
  check_forward<double>();
}

TEST_CASE("channel_affine: s*g + b*x + c (+ add), BatchNorm's dL/dx", "[channel_affine]") {
  check_backward<float>();
  check_backward<double>();
}

TEST_CASE("channel_affine: no column, nothing written", "[channel_affine]") {
  const float s[16] = {}, t[16] = {};
  float out[16];
  std::fill(std::begin(out), std::end(out), 5.0f);
  detail::channel_affine(out, s, t, static_cast<const float*>(nullptr), out, 16, 0);
  REQUIRE(out[0] == 5.0f);
  REQUIRE(out[15] == 5.0f);
}
