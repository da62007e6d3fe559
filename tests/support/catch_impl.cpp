// Catch2 2's implementation, compiled once for both mains (catch_main.cpp, mpi_catch_main.cpp). In
// Catch2 2, Catch::Session is visible only in the implementation's translation unit: the mains call
// it through run_catch_session.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

namespace rbtest {
int run_catch_session(int argc, char** argv) { return Catch::Session().run(argc, argv); }
}  // namespace rbtest
