#include "support/helpers.hpp"

#include <resblocks/core/threading.hpp>

#include <atomic>
#include <stdexcept>
#include <vector>

TEST_CASE("set_num_threads validates and num_threads reports", "[threads]") {
  const int saved = resblocks::num_threads();
  REQUIRE(saved >= 1);
  REQUIRE_THROWS_AS(resblocks::set_num_threads(0), std::invalid_argument);
  resblocks::set_num_threads(1);
  REQUIRE(resblocks::num_threads() == 1);
  resblocks::set_num_threads(saved);
}

TEST_CASE("parallel_for covers every index exactly once", "[threads]") {
  for (resblocks::Index n : {0, 1, 7, 1000, 100000}) {
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
    std::atomic<int> empty_ranges{0};  // Catch2 assertions are not thread-safe: count, check after
    resblocks::detail::parallel_for(n, 64.0, [&](resblocks::Index a, resblocks::Index b) {
      if (a >= b) empty_ranges++;
      for (resblocks::Index i = a; i < b; ++i) hits[static_cast<std::size_t>(i)]++;
    });
    REQUIRE(empty_ranges.load() == 0);
    for (auto& h : hits) REQUIRE(h.load() == 1);
  }
}
