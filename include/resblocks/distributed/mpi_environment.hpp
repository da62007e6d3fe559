#pragma once
/// \file
/// \brief MpiEnvironment: MPI's lifetime for a program, and the rule that one failing rank ends the
/// whole job with its message (needs MPI: link resblocks::mpi).

#include "resblocks/distributed/communicator.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace resblocks {

/// \brief Initialises MPI (thread level FUNNELED: only the main thread calls MPI, OpenMP threads
/// may run kernels) and finalises it on destruction; run(f) is the fault barrier of a rank.
///
/// A rank that throws while its peers wait in a collective would leave them hanging forever;
/// run() prints `<program>: rank R: error: <what()>` to stderr, flushes, and calls MPI_Abort, which
/// ends every rank of the job with a non-zero exit code (mpirun reports which rank aborted).
class MpiEnvironment {
 public:
  MpiEnvironment(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;  // someone else owns MPI's lifetime
    int provided = 0;
    detail::check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    m_owner = true;
  }
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;
  ~MpiEnvironment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (m_owner && !finalized) MPI_Finalize();
  }

  /// \brief The world communicator.
  /// \returns a Communicator on MPI_COMM_WORLD
  [[nodiscard]] Communicator world() const { return Communicator(MPI_COMM_WORLD); }

  /// Runs `f()` (returning an exit code, or void for 0). An exception on any rank prints
  /// `program: rank R: error: message` and aborts the whole job (MPI_Abort, exit code 1):
  /// never a silent hang of the other ranks.
  /// \param program the program's name, for the error message
  /// \param f the program's body, called once
  /// \returns f's exit code (0 when f returns void); does not return when f throws
  template <class F>
  int run(const char* program, F&& f) const {
    try {
      if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
        f();
        return 0;
      } else {
        return static_cast<int>(f());
      }
    } catch (const std::exception& e) {
      fail(program, e.what());
    } catch (...) {
      fail(program, "unknown exception");
    }
  }

  /// \brief Prints `program: rank R: error: message`, then MPI_Abort on MPI_COMM_WORLD.
  /// \param program the program's name
  /// \param message what went wrong
  [[noreturn]] static void fail(const char* program, const char* message) {
    int rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::fprintf(stderr, "%s: rank %d: error: %s\n", program, rank, message);
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::abort();
  }

 private:
  bool m_owner = false;
};

}  // namespace resblocks
