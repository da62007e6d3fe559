#include "support/helpers.hpp"

#include <resblocks/core/threading.hpp>

#include <algorithm>
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

TEST_CASE("parallel_zero zeroes exactly its range, on one thread and in parallel", "[threads]") {
  // Sizes on both sides of the size from which it runs in parallel (2^18 values), and an odd one; the
  // guards before and after the range must keep their value.
  const int saved = resblocks::num_threads();
  for (int threads : {1, 2, 3}) {
    resblocks::set_num_threads(threads);
    for (resblocks::Index n : {0, 1, 1000, (1 << 18) - 1, 1 << 18, (1 << 20) + 7}) {
      std::vector<float> values(static_cast<std::size_t>(n) + 2, 1.5f);
      resblocks::detail::parallel_zero(values.data() + 1, n);
      CAPTURE(threads, n);
      REQUIRE(values.front() == 1.5f);
      REQUIRE(values.back() == 1.5f);
      REQUIRE(std::count(values.begin() + 1, values.end() - 1, 0.0f) == n);
    }
  }
  resblocks::set_num_threads(saved);
}

TEST_CASE("parallel_parts_dynamic runs every part exactly once, on a valid thread, after its start", "[threads]") {
  // Each thread takes its own share of the parts first, then what is left of the others' shares: every
  // part must still run once and only once, whatever the thread count (1, 2 and 3 threads; more
  // threads than parts; a share of zero parts).
  const int saved = resblocks::num_threads();
  for (const int threads : {1, 2, 3}) {
    resblocks::set_num_threads(threads);
    for (const resblocks::Index parts : {0, 1, 2, 3, 5, 8, 17}) {
      const int used = resblocks::detail::threads_for_parts(parts);
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(parts));
      std::vector<std::atomic<int>> started(static_cast<std::size_t>(std::max(used, 1)));
      std::atomic<int> bad{0};  // Catch2 assertions are not thread-safe: count, check after
      resblocks::detail::parallel_parts_dynamic(
          parts,
          [&](resblocks::Index p, resblocks::Index t) {
            if (t < 0 || t >= std::max(used, 1) || started[static_cast<std::size_t>(t)].load() != 1) bad++;
            hits[static_cast<std::size_t>(p)]++;
          },
          [&](resblocks::Index t) { started[static_cast<std::size_t>(t)]++; });
      INFO(threads << " threads, " << parts << " parts");
      REQUIRE(bad.load() == 0);
      for (auto& h : hits) REQUIRE(h.load() == 1);
    }
  }
  resblocks::set_num_threads(saved);
}
