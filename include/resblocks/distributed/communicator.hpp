#pragma once
/// \file
/// \brief Communicator: the few MPI collectives resblocks' data-parallel training uses, typed and
/// checked (needs MPI: link resblocks::mpi).

#include "resblocks/core/types.hpp"

#include <mpi.h>

#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace resblocks {

namespace detail {
/// The MPI datatype of a C++ scalar.
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, int>)
    return MPI_INT;
  else if constexpr (std::is_same_v<T, char>)
    return MPI_CHAR;
  else
    static_assert(sizeof(T) == 0, "resblocks::Communicator: no MPI datatype for this scalar type");
}

/// Throws std::runtime_error naming `what` when an MPI call did not return MPI_SUCCESS (only seen
/// when the communicator's error handler is MPI_ERRORS_RETURN; the default aborts by itself).
inline void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(std::string("resblocks: ") + what +
                           " failed: " + std::string(text, static_cast<std::size_t>(length)));
}
}  // namespace detail

/// \brief A non-owning handle on an MPI communicator (MPI_COMM_WORLD by default) with the
/// collectives data-parallel training needs: in-place sums, broadcasts from rank 0, gathers.
/// MPI must be initialised (see MpiEnvironment) while it is used.
class Communicator {
 public:
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD) : m_comm(comm) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized)
      throw std::logic_error("resblocks::Communicator: MPI is not initialised (create an MpiEnvironment first)");
    detail::check_mpi(MPI_Comm_rank(comm, &m_rank), "MPI_Comm_rank");
    detail::check_mpi(MPI_Comm_size(comm, &m_size), "MPI_Comm_size");
  }

  [[nodiscard]] int rank() const noexcept { return m_rank; }
  [[nodiscard]] int size() const noexcept { return m_size; }
  [[nodiscard]] MPI_Comm handle() const noexcept { return m_comm; }

  /// \brief data[i] = Σ over ranks of data[i], on every rank (MPI_Allreduce in place).
  /// \param data this rank's values, replaced by the sums (same size on every rank)
  template <class T>
  void all_reduce_sum(std::span<T> data) const {
    if (data.empty()) return;
    detail::check_mpi(
        MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), detail::mpi_type<T>(), MPI_SUM, m_comm),
        "MPI_Allreduce");
  }
  /// \brief The sum over ranks of one value.
  /// \param value this rank's value
  /// \returns the sum, the same on every rank
  template <class T>
  [[nodiscard]] T sum(T value) const {
    all_reduce_sum(std::span<T>(&value, 1));
    return value;
  }

  /// \brief Copies rank `root`'s data into every rank's (same size on every rank).
  /// \param data the values: read on `root`, overwritten on the other ranks
  /// \param root the rank that sends
  template <class T>
  void broadcast(std::span<T> data, int root = 0) const {
    if (data.empty()) return;
    detail::check_mpi(MPI_Bcast(data.data(), static_cast<int>(data.size()), detail::mpi_type<T>(), root, m_comm),
                      "MPI_Bcast");
  }

  /// \brief out[r] = rank r's `value`, on every rank (out.size() must be size()).
  /// \param value this rank's value
  /// \param out receives one value per rank
  /// \throws std::invalid_argument when out.size() is not size()
  template <class T>
  void all_gather(T value, std::span<T> out) const {
    if (out.size() != static_cast<std::size_t>(m_size))
      throw std::invalid_argument("Communicator::all_gather: the output must hold one value per rank");
    detail::check_mpi(MPI_Allgather(&value, 1, detail::mpi_type<T>(), out.data(), 1, detail::mpi_type<T>(), m_comm),
                      "MPI_Allgather");
  }

  void barrier() const { detail::check_mpi(MPI_Barrier(m_comm), "MPI_Barrier"); }

  /// \brief Ends every rank of the job (MPI_Abort) with `code`; never returns.
  /// \param code the job's exit code
  [[noreturn]] void abort(int code = 1) const {
    MPI_Abort(m_comm, code);
    std::abort();  // MPI_Abort does not return; for the compiler
  }

 private:
  MPI_Comm m_comm;
  int m_rank = 0;
  int m_size = 1;
};

}  // namespace resblocks
