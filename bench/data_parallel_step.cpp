// One data-parallel training step of the Fashion-MNIST main job's ResNet-20 (1x28x28, projection
// shortcuts, SGD with Nesterov momentum and weight decay) on MPI: the global batch (128) split over
// the ranks, gradients averaged by resblocks::DataParallel, with the reduction overlapped with
// backward and not, in alternating rounds (the machine is shared: only side-by-side figures count).
//
//   mpirun -np 2 build/bench/resblocks_data_parallel_step --threads 1     2 ranks x 1 thread
//   mpirun -np 1 build/bench/resblocks_data_parallel_step --threads 2     1 rank  x 2 threads
//   bench/data_parallel_compare.sh build                                   both, and PyTorch, interleaved
//
// Prints, on rank 0, the median step time (ms) of each round per mode, and the median time the step
// waited for gradients after its backward pass.
#include <resblocks/distributed/data_parallel.hpp>
#include <resblocks/distributed/mpi_environment.hpp>
#include <resblocks/resblocks.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;

namespace {

long flag(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  return fallback;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run(int argc, char** argv, const Communicator& comm) {
  const long threads = flag(argc, argv, "--threads", 1), batch = flag(argc, argv, "--batch", 128);
  const long rounds = flag(argc, argv, "--rounds", 4), steps = flag(argc, argv, "--steps", 5);
  const long bucket_kb = flag(argc, argv, "--bucket-kb", 256);
  if (batch % comm.size() != 0) throw std::invalid_argument("--batch must be divisible by the rank count");
  set_num_threads(static_cast<int>(threads));
  const Index local = batch / comm.size();

  manual_seed(1);
  CifarResNet<float> net({.depth = 20,
                          .in_channels = 1,
                          .classes = 10,
                          .width = 16,
                          .image = {28, 28},
                          .downsample = ShortcutKind::projection,
                          .input_gradient = false});
  DataParallel dp(net, comm, {.bucket_bytes = static_cast<std::size_t>(bucket_kb) << 10});
  Generator g(7 + static_cast<std::uint64_t>(comm.rank()));
  Eigen::MatrixXf x(1, 28 * 28 * local);
  fill_uniform(x, 1.0, g);
  std::vector<int> labels(static_cast<std::size_t>(local));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % 10);
  CrossEntropyLoss<float> loss;
  Sgd opt(net, {.lr = 0.01, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});

  auto step = [&] {
    loss.forward(dp.forward(x), labels);
    net.zero_grad();
    dp.backward(loss.backward());
    opt.step(net);
    return dp.last_wait_seconds();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: buffers sized, caches filled

  std::vector<double> ms[2], wait_ms[2];  // [overlap, no overlap]: per round
  for (long r = 0; r < rounds; ++r)
    for (int mode = 0; mode < 2; ++mode) {
      dp.set_overlap(mode == 0);
      comm.barrier();
      double wait = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (long s = 0; s < steps; ++s) wait += step();
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // The step ends when the slowest rank's does.
      double slowest[2] = {seconds, wait};
      MPI_Allreduce(MPI_IN_PLACE, slowest, 2, MPI_DOUBLE, MPI_MAX, comm.handle());
      ms[mode].push_back(1000 * slowest[0] / double(steps));
      wait_ms[mode].push_back(1000 * slowest[1] / double(steps));
    }
  // The reduction alone: all the gradients in one blocking all-reduce, the ranks lined up first.
  std::vector<float> all(static_cast<std::size_t>(parameter_count(net)), 1.0f);
  std::vector<double> reduce_ms;
  for (int i = 0; i < 20; ++i) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    comm.all_reduce_sum(std::span<float>(all));
    reduce_ms.push_back(1000 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (comm.rank() == 0) {
    std::printf("resblocks ResNet-20 step, batch %ld = %d ranks x %ld, %ld threads/rank, %zu buckets of <= %ld KiB\n",
                batch, comm.size(), static_cast<long>(local), threads, dp.bucket_count(), bucket_kb);
    for (int mode = 0; mode < 2; ++mode) {
      std::printf("  %-10s step ms:", mode == 0 ? "overlap" : "no overlap");
      for (const double t : ms[mode]) std::printf(" %.1f", t);
      std::printf("   median %.1f ms, waiting after backward %.2f ms\n", median(ms[mode]), median(wait_ms[mode]));
    }
    std::printf("  all-reduce of the %zu gradients alone (after a barrier): median %.3f ms\n", all.size(),
                median(reduce_ms));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MpiEnvironment env(argc, argv);
  return env.run("resblocks_data_parallel_step", [&] { return run(argc, argv, env.world()); });
}
