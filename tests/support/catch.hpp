#pragma once
// Catch2 v3 or v2, whichever the build found.
#if defined(RESBLOCKS_CATCH2_V3)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif

#include <string>

namespace rbtest {
/// Matcher: the exception message (or string) contains `s` (Catch2 v2 and v3 spell it differently).
#if defined(RESBLOCKS_CATCH2_V3)
inline auto contains(const std::string& s) { return Catch::Matchers::ContainsSubstring(s); }
#else
inline auto contains(const std::string& s) { return Catch::Matchers::Contains(s); }
#endif
}  // namespace rbtest
