// Catch2 2's implementation, compiled once for both mains (catch_main.cpp, mpi_catch_main.cpp). In
// Catch2 2, Catch::Session is visible only in the implementation's translation unit: the mains call
// it through run_catch_session.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

// The tests (C++20) use the StringMakers Catch2 2 enables from C++17 on; they are defined here only
// when this file is compiled in C++17 or later too (tests/CMakeLists.txt gives it the tests' standard).
static_assert(__cplusplus >= 201703L, "catch_impl.cpp must be compiled as C++17 or later, as the tests are");

namespace rbtest {
int run_catch_session(int argc, char** argv) { return Catch::Session().run(argc, argv); }
}  // namespace rbtest
