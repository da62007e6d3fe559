// Catch2 main for the tests that run under mpirun: MPI around the session; the exit code is the
// largest failure count of any rank, so a test failing on one rank only fails the run.
#if defined(RESBLOCKS_CATCH2_V3)
#include <catch2/catch_session.hpp>
namespace rbtest {
inline int run_catch_session(int argc, char** argv) { return Catch::Session().run(argc, argv); }
}  // namespace rbtest
#else
namespace rbtest {
int run_catch_session(int argc, char** argv);  // support/catch_impl.cpp
}
#endif

#include <mpi.h>

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  const int failures = rbtest::run_catch_session(argc, argv);
  int worst = 0;
  MPI_Allreduce(&failures, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
