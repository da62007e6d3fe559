// The main job, data-parallel on MPI: the same ResNet-(6n+2) on Fashion-MNIST as fashion_mnist, with
// every rank training on its shard of each batch and the gradients averaged (resblocks::DataParallel).
// Only rank 0 prints progress and writes the CSV, the plot and the weights.
//
//   mpirun -np 2 build/examples/fashion_mnist_mpi [--epochs 3] [--batch 128] [--threads 1] ...
//   mpirun --hostfile hosts -np 8 build/examples/fashion_mnist_mpi ...      (several machines)
//
// --batch is the global batch: each of P ranks takes batch / P samples of it (P must divide it), so the
// learning-rate schedule is that of the single-process run. A failure on any rank (a missing file, a
// diverging loss) ends every rank with that rank's message.
#include "common/command_line.hpp"
#include "common/progress_bar.hpp"
#include "common/svg_chart.hpp"

#include <resblocks/distributed/data_parallel.hpp>
#include <resblocks/distributed/mpi_environment.hpp>
#include <resblocks/distributed/sync_batch_norm.hpp>
#include <resblocks/io/batch_loader.hpp>
#include <resblocks/io/image_dataset.hpp>
#include <resblocks/io/safetensors.hpp>
#include <resblocks/resblocks.hpp>

#include <unistd.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

using namespace resblocks;

namespace {

int run(int argc, char** argv, const Communicator& comm) {
  const bool root = comm.rank() == 0;
  examples::CommandLine cl(argc, argv, "Trains a ResNet-(6n+2) on Fashion-MNIST on several MPI ranks (data parallel).");
  const long epochs = cl.get_int("--epochs", 3, "training epochs");
  const long depth = cl.get_int("--depth", 20, "network depth 6n+2");
  const long batch = cl.get_int("--batch", 128, "global mini-batch size (each rank takes batch / ranks)");
  const double lr = cl.get_double("--lr", 0.1, "peak learning rate (SGD, Nesterov 0.9; linear warm-up, cosine decay)");
  const double weight_decay = cl.get_double("--weight-decay", 5e-4, "L2 weight decay");
  const long threads = cl.get_int("--threads", 1, "threads per rank");
  const auto seed =
      static_cast<std::uint64_t>(cl.get_int("--seed", 1, "seed of the initial weights and of the shuffling"));
  const std::string data = cl.get_string("--data", "/usr/share/datasets/fashion-mnist", "directory of the IDX files");
  const std::string csv_path = cl.get_string("--csv", "fashion_mnist_mpi.csv", "per-epoch results (CSV, rank 0)");
  const std::string plot_path = cl.get_string("--plot", "fashion_mnist_mpi.svg", "plot (SVG, rank 0)");
  const std::string weights_path =
      cl.get_string("--weights", "fashion_mnist_mpi.safetensors", "trained weights (rank 0)");
  const long limit = cl.get_int("--limit", 0, "train on the first N images only (0: all)");
  const bool sync_bn = cl.get_flag("--sync-bn", "BatchNorm statistics over the global batch (SyncBatchNorm)");
  const bool no_overlap = cl.get_flag("--no-overlap", "reduce the gradients after backward, not during it");
  const long bucket_kb = cl.get_int("--bucket-kb", 256, "gradient bucket size in KiB");
  if (!cl.finish()) return 0;
  const long ranks = comm.size();
  if (epochs < 1 || batch < 1 || !(lr > 0) || limit < 0 || threads < 1 || bucket_kb < 1)
    throw std::invalid_argument("--epochs, --batch, --threads and --bucket-kb must be >= 1, --lr > 0, --limit >= 0");
  if (batch % ranks != 0)
    throw std::invalid_argument("--batch " + std::to_string(batch) + " is not divisible by the " +
                                std::to_string(ranks) + " ranks");
  set_num_threads(static_cast<int>(threads));
  CifarResNet<float>::blocks_per_stage(depth);

  ImageDataset train = load_mnist(data, MnistSplit::train);
  const ImageDataset test = load_mnist(data, MnistSplit::test);
  if (limit > 0) train = train.head(limit);
  const auto [mean, std] = train.pixel_mean_std();
  BatchLoader<float> train_batches(train, {.batch_size = batch / ranks,
                                           .shuffle = true,
                                           .drop_last = true,
                                           .seed = seed,
                                           .mean = mean,
                                           .std = std,
                                           .rank = comm.rank(),
                                           .world_size = ranks});
  BatchLoader<float> test_batches(test, {.batch_size = 250,
                                         .shuffle = false,
                                         .mean = mean,
                                         .std = std,
                                         .rank = comm.rank(),
                                         .world_size = ranks,
                                         .pad_shards = false});

  manual_seed(seed);
  CifarResNet<float> net({.depth = depth,
                          .in_channels = 1,
                          .classes = 10,
                          .width = 16,
                          .image = {train.height(), train.width()},
                          .downsample = ShortcutKind::projection,
                          .input_gradient = false});
  if (sync_bn) sync_batch_norm(net, comm);
  DataParallel dp(net, comm, {.bucket_bytes = static_cast<std::size_t>(bucket_kb) << 10, .overlap = !no_overlap});
  Sgd opt(net, {.lr = lr, .momentum = 0.9, .nesterov = true, .weight_decay = weight_decay});
  const long steps_per_epoch = static_cast<long>(train_batches.batches_per_epoch());
  if (steps_per_epoch == 0) throw std::invalid_argument("fewer training images per rank than batch / ranks");
  const long total_steps = epochs * steps_per_epoch;
  const long warmup = std::max<long>(1, std::min<long>(steps_per_epoch / 2, total_steps / 10));
  const LinearWarmup schedule(CosineAnnealingLr(lr, total_steps - warmup), warmup, 0.1);
  CrossEntropyLoss<float> loss;
  CifarResNet<float>::Workspace ws;

  const std::string model = "resnet-" + std::to_string(depth);
  if (root)
    std::printf(
        "%s: %ld parameters, %ld ranks x %ld threads, batch %ld (%ld per rank), %ld steps/epoch, %zu gradient "
        "buckets, %s, %s\n",
        model.c_str(), static_cast<long>(parameter_count(net)), ranks, threads, batch, batch / ranks, steps_per_epoch,
        dp.bucket_count(), no_overlap ? "no overlap" : "overlapped with backward",
        sync_bn ? "SyncBatchNorm" : "per-rank BatchNorm");
  std::fflush(stdout);

  std::ofstream csv;
  examples::SvgChart chart("Fashion-MNIST, " + model + ", " + std::to_string(ranks) + " MPI ranks");
  auto& loss_panel = chart.add_panel("training loss", "epoch", "cross-entropy");
  auto& acc_panel = chart.add_panel("test accuracy", "epoch", "accuracy");
  loss_panel.series.push_back({model, {}});
  acc_panel.series.push_back({model, {}});
  if (root) {
    csv.open(csv_path);
    if (!csv) throw std::runtime_error("cannot write " + csv_path);
    csv << "epoch,train_seconds,train_loss,train_acc,test_acc,lr,comm_wait_seconds\n";
  }
  examples::ProgressBar bar(root && isatty(STDERR_FILENO) != 0);
  long step = 0;
  for (long epoch = 1; epoch <= epochs; ++epoch) {
    // Training: every rank its shard; the statistics summed over the ranks at the end of the epoch.
    net.set_training(true);
    train_batches.start_epoch();
    bar.start("epoch " + std::to_string(epoch), steps_per_epoch);
    double sums[3] = {0, 0, 0};  // Σ loss (per batch), correct, images
    double wait = 0;
    long batches = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (train_batches.next()) {
      opt.set_lr(schedule(step++));
      const double l = loss.forward(dp.forward(train_batches.images()), train_batches.labels());
      if (!std::isfinite(l))
        throw std::runtime_error("the training loss became " + std::to_string(l) + " at step " + std::to_string(step) +
                                 " (diverged: try a smaller --lr)");
      net.zero_grad();
      dp.backward(loss.backward());
      opt.step(net);
      wait += dp.last_wait_seconds();
      sums[0] += l;
      sums[1] += static_cast<double>(loss.correct());
      sums[2] += static_cast<double>(train_batches.labels().size());
      ++batches;
      bar.update(batches, sums[0] / batches, sums[1] / sums[2], static_cast<long>(sums[2]) * ranks);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bar.clear();
    comm.all_reduce_sum(std::span<double>(sums, 3));
    const double train_loss = sums[0] / double(batches * ranks), train_acc = sums[1] / sums[2];

    // Evaluation: every rank its shard of the test set (each image once), the counts summed.
    net.set_training(false);
    std::int64_t counts[2] = {0, 0};  // correct, seen
    test_batches.start_epoch();
    while (test_batches.next()) {
      const auto& logits = net.infer(test_batches.images(), ws);
      for (Eigen::Index j = 0; j < logits.cols(); ++j) {
        Eigen::Index best = 0;
        logits.col(j).maxCoeff(&best);
        counts[0] += best == test_batches.labels()[static_cast<std::size_t>(j)];
      }
      counts[1] += logits.cols();
    }
    comm.all_reduce_sum(std::span<std::int64_t>(counts, 2));
    const double acc = static_cast<double>(counts[0]) / static_cast<double>(counts[1]);
    if (root) {
      std::printf(
          "epoch %ld: train %.1f s (%.1f s waiting for gradients after backward), loss %.4f, test acc %.4f (%lld "
          "images)\n",
          epoch, seconds, wait, train_loss, acc, static_cast<long long>(counts[1]));
      std::fflush(stdout);
      csv << epoch << ',' << seconds << ',' << train_loss << ',' << train_acc << ',' << acc << ',' << opt.lr() << ','
          << wait << '\n'
          << std::flush;
      loss_panel.series[0].points.emplace_back(epoch, train_loss);
      acc_panel.series[0].points.emplace_back(epoch, acc);
      chart.save(plot_path);
    }
  }
  if (root) {
    save_safetensors(net, weights_path);
    std::printf("wrote %s, %s and %s\n", csv_path.c_str(), plot_path.c_str(), weights_path.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MpiEnvironment env(argc, argv);
  return env.run("fashion_mnist_mpi", [&] { return run(argc, argv, env.world()); });
}
