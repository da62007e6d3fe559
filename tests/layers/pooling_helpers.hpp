#pragma once
// Helpers shared by the pooling / flatten tests (executable pooling_tests).
#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

namespace rbtest {

/// A pooling window: kernel, stride (-1: the kernel), padding.
struct Window {
  resblocks::Index kernel, stride, padding;
};
/// Overlapping, disjoint, padded, uneven and trivial windows.
inline constexpr Window k_windows[] = {{2, -1, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 1}, {3, 3, 0}, {1, 1, 0}, {4, 3, 2}};

/// A rows x cols batch of distinct values in (-1, 1) (a shuffled ramp, spacing 2/size): max pooling
/// has no ties, so its finite differences are well defined.
template <class M>
M distinct_batch(resblocks::Index rows, resblocks::Index cols, std::uint64_t seed) {
  const resblocks::Index n = rows * cols;
  std::vector<resblocks::Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), resblocks::Index(0));
  resblocks::Generator g(seed);
  for (resblocks::Index i = n - 1; i > 0; --i)  // Fisher-Yates with the portable generator
    std::swap(order[static_cast<std::size_t>(i)],
              order[static_cast<std::size_t>(g.next() % static_cast<std::uint64_t>(i + 1))]);
  M m(rows, cols);
  for (resblocks::Index k = 0; k < n; ++k)
    m(k) = static_cast<typename M::Scalar>(
        -1.0 + 2.0 * (static_cast<double>(order[static_cast<std::size_t>(k)]) + 0.5) / static_cast<double>(n));
  return m;
}

/// The same bits (memcmp, so -0 and +0 differ).
template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  static_assert(std::is_same_v<typename A::Scalar, typename B::Scalar>);
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 ||
          std::memcmp(a.data(), b.data(), sizeof(typename A::Scalar) * static_cast<std::size_t>(a.size())) == 0);
}

/// infer(x) equals forward(x) bit for bit (with a fresh workspace and with a reused one).
template <class L>
void require_infer_matches_forward(L& layer, const typename L::Input& x) {
  const typename L::Output y = layer.forward(x);
  const L& frozen = layer;
  typename L::Workspace ws;
  REQUIRE(bitwise_equal(frozen.infer(x, ws), y));
  REQUIRE(bitwise_equal(frozen.infer(x, ws), y));
}

}  // namespace rbtest
