#pragma once
/// \file
/// \brief DataParallel: synchronous data-parallel training over MPI, as PyTorch's
/// DistributedDataParallel (needs MPI: link resblocks::mpi).

#include "resblocks/blocks/repeat.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/distributed/communicator.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace resblocks {

/// \brief Settings of DataParallel.
struct DataParallelOptions {
  /// Bytes of gradient per bucket (one MPI_Iallreduce each). Smaller buckets start earlier in the
  /// backward pass; larger ones pay the per-message latency less often.
  std::size_t bucket_bytes = std::size_t(256) << 10;
  /// Start each bucket's reduction as soon as its gradients are final, during backward; false:
  /// reduce all buckets after backward (the same buckets, the same sums, the same bits).
  bool overlap = true;
};

namespace detail {

template <class... Ls>
Sequential<Ls...>& sequential_base(Sequential<Ls...>& s) noexcept {
  return s;
}

/// An element-wise layer and a GEMM layer whose pass runs the former's backward (Sequential fuses them).
template <class E, class G>
consteval bool fused_gemm_pair() {
  return FusedBackwardPair<E, G> && HasEpilogueHooks<G>;
}

/// L is a Sequential (or derives from one without redefining backward) whose children are worth
/// visiting one by one: no GEMM layer with the activation before it fused into its pass (visited
/// apart, each would cost a pass of its own). The other fusions of Sequential's backward (a
/// convolution computing the BatchNorm2d's dL/dx after it, an activation run inside a container's
/// pass) give the same bits apart, and the overlap of the reductions is worth more than their pass.
template <class L>
consteval bool plain_sequential() {
  if constexpr (requires(L & l) { sequential_base(l); }) {
    using Base = std::remove_reference_t<decltype(sequential_base(std::declval<L&>()))>;
    if constexpr (!std::is_same_v<decltype(&L::backward), decltype(&Base::backward)>) {
      return false;
    } else {
      return []<std::size_t... I>(std::index_sequence<I...>) {
        return (!fused_gemm_pair<std::remove_cvref_t<decltype(std::declval<Base&>().template get<I>())>,
                                 std::remove_cvref_t<decltype(std::declval<Base&>().template get<I + 1>())>>() &&
                ... && true);
      }
      (std::make_index_sequence<Base::size() - 1>{});
    }
  } else {
    return false;
  }
}

template <class B>
Repeat<B>& repeat_base(Repeat<B>& r) noexcept {
  return r;
}

template <class L>
consteval bool plain_repeat() {
  if constexpr (requires(L & l) { repeat_base(l); }) {
    using Base = std::remove_reference_t<decltype(repeat_base(std::declval<L&>()))>;
    return std::is_same_v<decltype(&L::backward), decltype(&Base::backward)>;
  } else {
    return false;
  }
}

template <class L, class Done>
const typename L::Input& backward_visiting(L& layer, const typename L::Output& dL_dy, Done& done);

/// Children I, I-1, …, 0 of a Sequential, in reverse, each through backward_visiting.
template <std::size_t I, class Seq, class G, class Done>
const typename Seq::Input& backward_children(Seq& seq, const G& g, Done& done) {
  const auto& dx = backward_visiting(seq.template get<I>(), g, done);
  if constexpr (I == 0)
    return dx;
  else
    return backward_children<I - 1>(seq, dx, done);
}

/// layer.backward(dL_dy), computed as the same chain of children's backward passes, calling
/// `done(unit)` after each unit (a leaf, or a block that is not a plain Sequential or Repeat) whose
/// parameter gradients are then final. Same operations in the same order as layer.backward.
template <class L, class Done>
const typename L::Input& backward_visiting(L& layer, const typename L::Output& dL_dy, Done& done) {
  if constexpr (plain_sequential<L>()) {
    auto& seq = sequential_base(layer);
    return backward_children<std::remove_reference_t<decltype(seq)>::size() - 1>(seq, dL_dy, done);
  } else if constexpr (plain_repeat<L>()) {
    auto& rep = repeat_base(layer);
    if (rep.size() == 0) return rep.backward(dL_dy);
    const typename L::Output* g = &dL_dy;
    for (std::size_t i = rep.size(); i-- > 0;) g = &backward_visiting(rep[i], *g, done);
    return *g;
  } else {
    const auto& dx = layer.backward(dL_dy);
    done(layer);
    return dx;
  }
}

}  // namespace detail

/// \brief Synchronous data-parallel training of `Net` over the ranks of a Communicator, as
/// PyTorch's DistributedDataParallel: every rank holds a replica, trains on its own shard of each
/// batch, and gets the gradients averaged over all ranks before its optimizer step, so the
/// replicas stay equal.
///
/// - Construction broadcasts every parameter and buffer from rank 0 (replicas built from different
///   seeds start equal) after checking that every rank has the same parameter and buffer names and
///   shapes (std::invalid_argument on every rank, naming the first difference, otherwise).
/// - Gradients travel in buckets: runs of parameters in reverse visiting order (the order backward
///   finishes them), `bucket_bytes` each, every bucket one contiguous buffer allocated here, summed by
///   one MPI_Iallreduce and divided by the rank count. The order is fixed, so every step and every
///   rank reduces the same way.
/// - backward() runs the network's backward pass child by child (through Sequential and Repeat),
///   starts a bucket's reduction as soon as the last of its gradients is final, lets MPI progress
///   between children, and waits for all buckets at the end: on return the gradients are averaged.
///
/// Usage: `DataParallel dp(net, comm); ... net.zero_grad(); dp.backward(loss.backward()); opt.step(net);`
/// With one rank the result is bit-identical to net.backward(). Every rank must call backward()
/// the same number of times (shard the data so that ranks have equally many batches).
template <class Net>
class DataParallel {
 public:
  using Scalar = typename Net::Scalar;
  using Input = typename Net::Input;
  using Output = typename Net::Output;

  /// Checks that the replicas match across ranks, broadcasts rank 0's parameters and buffers, and
  /// lays out the buckets. Throws std::invalid_argument for bucket_bytes = 0 or different models.
  /// \param net this rank's replica; must outlive the DataParallel
  /// \param comm the ranks to train on
  /// \param options bucket size and overlap
  /// \throws std::invalid_argument for bucket_bytes = 0, or on every rank when the replicas' parameter or buffer
  ///   names or shapes differ
  DataParallel(Net& net, Communicator comm = Communicator(), DataParallelOptions options = {})
      : m_net(&net), m_comm(comm), m_options(options) {
    if (options.bucket_bytes == 0) throw std::invalid_argument("DataParallel: bucket_bytes must be > 0");
    check_same_model();
    broadcast_state();
    build_buckets();
  }

  Net& module() noexcept { return *m_net; }
  [[nodiscard]] const Communicator& communicator() const noexcept { return m_comm; }
  [[nodiscard]] const DataParallelOptions& options() const noexcept { return m_options; }
  void set_overlap(bool overlap) noexcept { m_options.overlap = overlap; }

  /// \brief The network's forward pass (each rank on its own shard).
  /// \param x this rank's input batch, kept by reference until backward
  /// \returns the network's output
  const Output& forward(const Input& x) { return m_net->forward(x); }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// The network's backward pass, then the gradients averaged over the ranks (accumulated into the
  /// gradients as net.backward does: call zero_grad() before, as usual). Returns dL/dx.
  /// \param dL_dy gradient of the loss with respect to the network's last output
  /// \returns dL/dx of this rank's input (not averaged)
  const Input& backward(const Output& dL_dy) {
    begin_step();
    const Input* dx = nullptr;
    if (m_options.overlap) {
      auto done = [this](auto& unit) { this->unit_done(unit); };
      dx = &detail::backward_visiting(*m_net, dL_dy, done);
    } else {
      dx = &m_net->backward(dL_dy);
    }
    finish_step();
    return *dx;
  }

  /// \brief Number of buckets, and the scalars in bucket b (bucket 0 holds the last layers' gradients).
  /// \returns the number of buckets
  [[nodiscard]] std::size_t bucket_count() const noexcept { return m_buckets.size(); }
  [[nodiscard]] std::size_t bucket_size(std::size_t b) const { return m_buckets.at(b).buffer.size(); }
  /// \brief Seconds the last backward() spent waiting for reductions after the backward pass itself.
  /// \returns the wait in seconds
  [[nodiscard]] double last_wait_seconds() const noexcept { return m_wait_seconds; }
  /// Buckets whose reduction started while backward still had units to run, in the last backward()
  /// (0 without overlap: all start after it).
  /// \returns the number of such buckets
  [[nodiscard]] std::size_t last_early_buckets() const noexcept { return m_early; }

 private:
  struct Bucket {
    std::vector<Scalar> buffer;  ///< the bucket's gradients, contiguous (reduced in place)
    std::size_t first = 0;       ///< its parameters are slots [first, first + count)
    std::size_t count = 0;
    std::size_t ready = 0;  ///< parameters whose gradient is final, this step
  };
  struct Slot {
    std::size_t bucket = 0;
    std::size_t offset = 0;  ///< in the bucket's buffer
    std::size_t size = 0;
  };

  /// `name rows×cols` of every parameter (p) and buffer (b), one per line, in visiting order.
  std::string signature() const {
    std::ostringstream out;
    const Net& net = *m_net;
    net.for_each_parameter([&](std::string_view name, const auto& value, const auto&) {
      out << "parameter " << name << ' ' << value.rows() << 'x' << value.cols() << '\n';
    });
    auto buffer = [&](std::string_view name, const auto& value) {
      if constexpr (std::is_arithmetic_v<std::remove_cvref_t<decltype(value)>>)
        out << "buffer " << name << " scalar\n";
      else
        out << "buffer " << name << ' ' << value.rows() << 'x' << value.cols() << '\n';
    };
    detail::visit_buffers(net, buffer, ParameterName{});
    return out.str();
  }

  static std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h ^ s.size();
  }

  /// The first line where `mine` (rank r's) differs from `root` (rank 0's), described.
  static std::string first_difference(const std::string& root, const std::string& mine, int rank) {
    std::istringstream a(root), b(mine);
    std::string la, lb;
    std::size_t line = 0;
    for (;;) {
      const bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
      ++line;
      if (!ha && !hb) return "";
      if (ha != hb || la != lb) {
        const std::string r = "rank " + std::to_string(rank);
        return "tensor " + std::to_string(line) + " is '" + (ha ? la : std::string("(none)")) + "' on rank 0 but '" +
               (hb ? lb : std::string("(none)")) + "' on " + r;
      }
    }
  }

  /// Every rank must hold the same parameter and buffer names and shapes: compare hashes, and on a
  /// mismatch let the first differing rank describe the difference to everyone.
  void check_same_model() {
    const std::string mine = signature();
    std::vector<std::uint64_t> hashes(static_cast<std::size_t>(m_comm.size()));
    m_comm.all_gather(fnv1a(mine), std::span<std::uint64_t>(hashes));
    int culprit = -1;
    for (int r = 1; r < m_comm.size() && culprit < 0; ++r)
      if (hashes[static_cast<std::size_t>(r)] != hashes[0]) culprit = r;
    if (culprit < 0) return;
    // Rank 0's description to everyone, then the culprit's first difference to everyone.
    std::string root = mine;
    std::int64_t length = static_cast<std::int64_t>(root.size());
    m_comm.broadcast(std::span<std::int64_t>(&length, 1));
    root.resize(static_cast<std::size_t>(length));
    m_comm.broadcast(std::span<char>(root.data(), root.size()));
    std::string message = m_comm.rank() == culprit ? first_difference(root, mine, culprit) : std::string();
    length = static_cast<std::int64_t>(message.size());
    m_comm.broadcast(std::span<std::int64_t>(&length, 1), culprit);
    message.resize(static_cast<std::size_t>(length));
    m_comm.broadcast(std::span<char>(message.data(), message.size()), culprit);
    throw std::invalid_argument("DataParallel: the model differs across ranks (same layers, sizes and order needed): " +
                                message);
  }

  /// Rank 0's parameters and buffers to every rank.
  void broadcast_state() {
    m_net->for_each_parameter([&](std::string_view, auto& value, auto&) {
      m_comm.broadcast(std::span<Scalar>(value.data(), static_cast<std::size_t>(value.size())));
    });
    auto buffer = [&](std::string_view, auto& value) {
      using T = std::remove_cvref_t<decltype(value)>;
      if constexpr (std::is_arithmetic_v<T>)
        m_comm.broadcast(std::span<T>(&value, 1));
      else
        m_comm.broadcast(std::span<typename T::Scalar>(value.data(), static_cast<std::size_t>(value.size())));
    };
    detail::visit_buffers(*m_net, buffer, ParameterName{});
  }

  /// Buckets over the parameters in reverse visiting order (the order backward completes them).
  void build_buckets() {
    std::vector<std::size_t> sizes;
    m_net->for_each_parameter(
        [&](std::string_view, auto& value, auto&) { sizes.push_back(static_cast<std::size_t>(value.size())); });
    const std::size_t n = sizes.size(), per_bucket = std::max<std::size_t>(1, m_options.bucket_bytes / sizeof(Scalar));
    m_slots.resize(n);
    m_lookup.resize(n);
    std::size_t filled = 0;
    for (std::size_t k = 0; k < n; ++k) {  // k-th in reverse order = parameter n-1-k
      const std::size_t p = n - 1 - k;
      if (m_buckets.empty() || (filled > 0 && filled + sizes[p] > per_bucket)) {
        m_buckets.emplace_back();
        m_buckets.back().first = k;
        filled = 0;
      }
      Bucket& b = m_buckets.back();
      m_slots[p] = Slot{m_buckets.size() - 1, filled, sizes[p]};
      if (sizes[p] > 0) ++b.count;  // an empty tensor has no address to be found by
      filled += sizes[p];
    }
    for (Bucket& b : m_buckets) {
      std::size_t total = 0;
      for (std::size_t k = b.first; k < b.first + b.count; ++k) total += sizes[n - 1 - k];
      b.buffer.assign(total, Scalar(0));
    }
    m_requests.assign(m_buckets.size(), MPI_REQUEST_NULL);
    m_start_unit.assign(m_buckets.size(), 0);
  }

  /// Resets the per-step counters and indexes the gradients by address (no allocation).
  void begin_step() {
    for (Bucket& b : m_buckets) b.ready = 0;
    m_next = 0;
    m_units = 0;
    std::size_t i = 0;
    m_net->for_each_parameter([&](std::string_view, auto&, auto& grad) {
      if (i < m_lookup.size()) m_lookup[i] = {static_cast<const void*>(grad.data()), i};
      ++i;
    });
    if (i != m_lookup.size())
      throw std::logic_error("DataParallel: the network's parameter count changed since construction");
    std::sort(m_lookup.begin(), m_lookup.end());
  }

  /// A unit's backward has finished: its gradients go into their buckets; full buckets start.
  template <class Unit>
  void unit_done(Unit& unit) {
    ++m_units;
    bool any = false;
    unit.for_each_parameter([&](std::string_view, auto&, auto& grad) {
      if (grad.size() == 0) return;
      const void* key = grad.data();
      const auto it = std::lower_bound(m_lookup.begin(), m_lookup.end(), std::pair<const void*, std::size_t>{key, 0});
      if (it == m_lookup.end() || it->first != key) return;  // not one of the network's parameters
      const Slot& s = m_slots[it->second];
      Bucket& b = m_buckets[s.bucket];
      std::copy(grad.data(), grad.data() + s.size, b.buffer.begin() + static_cast<std::ptrdiff_t>(s.offset));
      ++b.ready;
      any = true;
    });
    if (!any) return;
    while (m_next < m_buckets.size() && m_buckets[m_next].ready == m_buckets[m_next].count) {
      m_start_unit[m_next] = m_units;
      start(m_next++);
    }
    if (m_next > 0) {  // let MPI progress the reductions in flight while backward goes on
      int flag = 0;
      detail::check_mpi(MPI_Testall(static_cast<int>(m_next), m_requests.data(), &flag, MPI_STATUSES_IGNORE),
                        "MPI_Testall");
    }
  }

  void start(std::size_t b) {
    Bucket& bucket = m_buckets[b];
    detail::check_mpi(MPI_Iallreduce(MPI_IN_PLACE, bucket.buffer.data(), static_cast<int>(bucket.buffer.size()),
                                     detail::mpi_type<Scalar>(), MPI_SUM, m_comm.handle(), &m_requests[b]),
                      "MPI_Iallreduce");
  }

  /// Copies the gradients of buckets not started yet, starts them in order, waits for all, and
  /// writes the averages back.
  void finish_step() {
    m_early = 0;
    for (std::size_t b = 0; b < m_next; ++b) m_early += m_start_unit[b] < m_units ? 1 : 0;
    if (m_next < m_buckets.size()) {
      std::size_t i = 0;
      m_net->for_each_parameter([&](std::string_view, auto&, auto& grad) {
        const Slot& s = m_slots[i++];
        if (s.bucket >= m_next)
          std::copy(grad.data(), grad.data() + s.size,
                    m_buckets[s.bucket].buffer.begin() + static_cast<std::ptrdiff_t>(s.offset));
      });
      while (m_next < m_buckets.size()) start(m_next++);
    }
    const auto t0 = std::chrono::steady_clock::now();
    detail::check_mpi(MPI_Waitall(static_cast<int>(m_requests.size()), m_requests.data(), MPI_STATUSES_IGNORE),
                      "MPI_Waitall");
    m_wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const Scalar ranks = Scalar(m_comm.size());
    std::size_t i = 0;
    m_net->for_each_parameter([&](std::string_view, auto&, auto& grad) {
      const Slot& s = m_slots[i++];
      const Scalar* from = m_buckets[s.bucket].buffer.data() + s.offset;
      Scalar* to = grad.data();
      for (std::size_t k = 0; k < s.size; ++k) to[k] = from[k] / ranks;
    });
  }

  Net* m_net;
  Communicator m_comm;
  DataParallelOptions m_options;
  std::vector<Bucket> m_buckets;
  std::vector<Slot> m_slots;                                  ///< per parameter, in visiting order
  std::vector<std::pair<const void*, std::size_t>> m_lookup;  ///< gradient address → parameter index, sorted
  std::vector<MPI_Request> m_requests;
  std::vector<std::size_t> m_start_unit;  ///< units done when each bucket started, this step
  std::size_t m_next = 0;                 ///< buckets started this step (they start in order)
  std::size_t m_units = 0;                ///< units whose backward has finished, this step
  std::size_t m_early = 0;                ///< buckets started before the last unit finished
  double m_wait_seconds = 0;
};

}  // namespace resblocks
