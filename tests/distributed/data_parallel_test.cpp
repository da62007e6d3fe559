// DataParallel under mpirun (any number of ranks; CTest runs 2 and 3): broadcast at start, model
// checks, gradient averaging with and without overlap, P ranks × B/P against 1 × B, P = 1 against
// no MPI at all.
#include "distributed/mpi_test_support.hpp"
#include "support/catch.hpp"

#include <resblocks/distributed/data_parallel.hpp>
#include <resblocks/distributed/sync_batch_norm.hpp>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

using namespace resblocks;

// C++ allocations (operator new) are counted while g_counting is on: DataParallel's and SyncBatchNorm's
// own buffers must be sized once. (Eigen and MPI allocate through malloc: the core's own allocation
// test covers the former; the MPI library's internal bookkeeping is its own.)
namespace {
std::atomic<long> g_news{0};
std::atomic<bool> g_counting{false};
}  // namespace
void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // the operator new above does use malloc
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

/// All parameters of a network, concatenated, in double.
template <class Net>
std::vector<double> gradients(const Net& net) {
  std::vector<double> g;
  net.for_each_parameter([&](std::string_view, const auto&, const auto& grad) {
    for (Index i = 0; i < grad.size(); ++i) g.push_back(double(grad.data()[i]));
  });
  return g;
}

}  // namespace

TEST_CASE("DataParallel: rank 0's parameters and buffers reach every rank at construction", "[mpi][data_parallel]") {
  const Communicator comm;
  auto net = rbtest::small_resnet<float>(100 + static_cast<std::uint64_t>(comm.rank()));  // replicas differ
  net.for_each_buffer([&](std::string_view, auto& value) {
    if constexpr (std::is_arithmetic_v<std::remove_cvref_t<decltype(value)>>)
      value = 7 + comm.rank();
    else
      value.setConstant(float(comm.rank()) + 0.5f);
  });
  REQUIRE((comm.size() == 1 || !rbtest::same_on_all_ranks(comm, rbtest::parameter_hash(net))));
  DataParallel dp(net, comm);
  const auto rank0 = rbtest::small_resnet<float>(100);  // built here the way rank 0 built its replica
  REQUIRE(rbtest::parameter_hash(net) == rbtest::parameter_hash(rank0));
  int buffers = 0;
  net.for_each_buffer([&](std::string_view name, const auto& value) {
    ++buffers;
    if constexpr (std::is_arithmetic_v<std::remove_cvref_t<decltype(value)>>) {
      INFO(name);
      REQUIRE(value == 7);
    } else {
      INFO(name);
      REQUIRE((value.array() == 0.5f).all());
    }
  });
  REQUIRE(buffers > 0);
}

TEST_CASE("DataParallel: different models across ranks are an error on every rank, naming the difference",
          "[mpi][data_parallel][error]") {
  const Communicator comm;
  if (comm.size() < 2) return;
  const bool odd_one = comm.rank() == comm.size() - 1;
  manual_seed(1);
  CifarResNet<float> net({.depth = 8, .in_channels = 1, .classes = odd_one ? 4 : 3, .width = 4, .image = {8, 8}});
  REQUIRE_THROWS_WITH(
      DataParallel(net, comm),
      rbtest::contains("DataParallel: the model differs across ranks") &&
          rbtest::contains("'parameter fc.weight 3x16' on rank 0 but 'parameter fc.weight 4x16' on rank " +
                           std::to_string(comm.size() - 1)));
  // A missing tensor (different depth) is caught as well.
  manual_seed(1);
  CifarResNet<float> deeper({.depth = odd_one ? 14 : 8, .in_channels = 1, .classes = 3, .width = 4, .image = {8, 8}});
  REQUIRE_THROWS_WITH(DataParallel(deeper, comm), rbtest::contains("differs across ranks"));
}

TEST_CASE("DataParallel: the averaged gradient is the mean of the ranks' gradients, overlapped or not",
          "[mpi][data_parallel]") {
  const Communicator comm;
  const Index n = 5;
  Batch<double, Dynamic> x;
  std::vector<int> labels;
  CrossEntropyLoss<double> loss;
  // Expected: every rank's gradient computed here, one after the other, averaged.
  auto reference = rbtest::small_resnet<double>(1);
  std::vector<double> expected;
  for (int r = 0; r < comm.size(); ++r) {
    rbtest::make_batch<double>(1000 + static_cast<std::uint64_t>(r), n, x, labels);
    reference.zero_grad();
    loss.forward(reference.forward(x), labels);
    reference.backward(loss.backward());
    const std::vector<double> g = gradients(reference);
    if (expected.empty()) expected.assign(g.size(), 0.0);
    for (std::size_t i = 0; i < g.size(); ++i) expected[i] += g[i] / comm.size();
  }

  auto net = rbtest::small_resnet<double>(1);
  // Small buckets (2 KB): several, most of them started during the backward pass.
  DataParallel dp(net, comm, {.bucket_bytes = 2048, .overlap = true});
  REQUIRE(dp.bucket_count() > 3);
  rbtest::make_batch<double>(1000 + static_cast<std::uint64_t>(comm.rank()), n, x, labels);
  std::vector<double> with_overlap, without;
  for (const bool overlap : {true, false}) {
    dp.set_overlap(overlap);
    net.zero_grad();
    loss.forward(dp.forward(x), labels);
    dp.backward(loss.backward());
    (overlap ? with_overlap : without) = gradients(net);
    // Overlapped, every bucket but the one holding the first layer starts while backward goes on.
    REQUIRE(dp.last_early_buckets() == (overlap ? dp.bucket_count() - 1 : 0));
  }
  REQUIRE(with_overlap == without);  // the same buckets, the same sums: the same bits
  REQUIRE(with_overlap.size() == expected.size());
  double worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i)
    worst = std::max(worst, std::abs(with_overlap[i] - expected[i]) / (1e-12 + std::abs(expected[i])));
  INFO("largest relative difference " << worst);
  REQUIRE(worst < 1e-9);
  REQUIRE(rbtest::same_on_all_ranks(comm, rbtest::parameter_hash(net)));
}

TEST_CASE("DataParallel: P ranks x B/P with SyncBatchNorm track 1 x B over SGD steps",
          "[mpi][data_parallel][determinism]") {
  const Communicator comm;
  const Index batch = 12;  // divisible by 1, 2, 3 and 4 ranks
  if (batch % comm.size() != 0) return;
  const Index local = batch / comm.size();
  const int steps = 6;
  CrossEntropyLoss<float> loss;
  Batch<float, Dynamic> x, shard;
  std::vector<int> labels;

  auto single = rbtest::small_resnet<float>(3);  // the one-process run on whole batches, on every rank
  auto net = rbtest::small_resnet<float>(3);
  sync_batch_norm(net, comm);
  DataParallel dp(net, comm, {.bucket_bytes = 4096});
  Sgd opt_single(single, {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
  Sgd opt(net, {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
  for (int step = 0; step < steps; ++step) {
    rbtest::make_batch<float>(50 + static_cast<std::uint64_t>(step), batch, x, labels);
    single.zero_grad();
    loss.forward(single.forward(x), labels);
    single.backward(loss.backward());
    opt_single.step(single);

    shard = x.middleCols(comm.rank() * local * 64, local * 64);
    const std::vector<int> shard_labels(labels.begin() + comm.rank() * local,
                                        labels.begin() + (comm.rank() + 1) * local);
    net.zero_grad();
    loss.forward(dp.forward(shard), shard_labels);
    dp.backward(loss.backward());
    opt.step(net);
  }
  const auto [diff, scale] = rbtest::max_parameter_difference(single, net);
  if (comm.rank() == 0)
    std::printf(
        "DataParallel determinism: %d ranks x batch %ld vs 1 x batch %ld, %d SGD steps: max |dθ| = %.3g (max |θ| "
        "%.3g)\n",
        comm.size(), static_cast<long>(local), static_cast<long>(batch), steps, diff, scale);
  REQUIRE(rbtest::same_on_all_ranks(comm, rbtest::parameter_hash(net)));  // the replicas never diverge
  REQUIRE(diff < 1e-4 * scale);                                           // float reassociation only
  // The running statistics follow the joint batch too.
  std::vector<double> a, b;
  single.for_each_buffer([&](std::string_view, const auto& v) {
    if constexpr (!std::is_arithmetic_v<std::remove_cvref_t<decltype(v)>>)
      for (Index i = 0; i < v.size(); ++i) a.push_back(double(v(i)));
  });
  net.for_each_buffer([&](std::string_view, const auto& v) {
    if constexpr (!std::is_arithmetic_v<std::remove_cvref_t<decltype(v)>>)
      for (Index i = 0; i < v.size(); ++i) b.push_back(double(v(i)));
  });
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) < 1e-4 * (1 + std::abs(a[i])));
}

TEST_CASE("DataParallel: one rank is bit-identical to training without MPI", "[mpi][data_parallel][determinism]") {
  const Communicator self(MPI_COMM_SELF);  // a world of one, inside the mpirun job
  CrossEntropyLoss<float> loss;
  Batch<float, Dynamic> x;
  std::vector<int> labels;
  auto plain = rbtest::small_resnet<float>(9);
  auto net = rbtest::small_resnet<float>(9);
  DataParallel dp(net, self, {.bucket_bytes = 1024});
  Sgd opt_plain(plain, {.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
  Sgd opt(net, {.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
  for (int step = 0; step < 4; ++step) {
    rbtest::make_batch<float>(70 + static_cast<std::uint64_t>(step), 6, x, labels);
    plain.zero_grad();
    loss.forward(plain.forward(x), labels);
    plain.backward(loss.backward());
    opt_plain.step(plain);
    net.zero_grad();
    loss.forward(dp.forward(x), labels);
    dp.backward(loss.backward());
    opt.step(net);
  }
  REQUIRE(rbtest::parameter_hash(net) == rbtest::parameter_hash(plain));
}

TEST_CASE("DataParallel: a steady-state step makes no C++ allocation, SyncBatchNorm included",
          "[mpi][data_parallel][allocation]") {
  const Communicator comm;
  CrossEntropyLoss<float> loss;
  Batch<float, Dynamic> x;
  std::vector<int> labels;
  rbtest::make_batch<float>(5 + static_cast<std::uint64_t>(comm.rank()), 4, x, labels);
  auto net = rbtest::small_resnet<float>(2);
  sync_batch_norm(net, comm);
  DataParallel dp(net, comm, {.bucket_bytes = 2048});
  Sgd opt(net, {.lr = 0.01, .momentum = 0.9});
  auto step = [&] {
    loss.forward(dp.forward(x), labels);
    net.zero_grad();
    dp.backward(loss.backward());
    opt.step(net);
  };
  g_news = 0;
  g_counting = true;
  step();  // sizes every buffer: the counter sees it (it is live)
  g_counting = false;
  REQUIRE(g_news.load() > 0);
  for (const bool overlap : {true, false}) {
    dp.set_overlap(overlap);
    g_news = 0;
    g_counting = true;
    step();
    g_counting = false;
    INFO("overlap " << overlap);
    REQUIRE(g_news.load() == 0);
  }
}
