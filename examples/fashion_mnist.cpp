// The main job: train a CIFAR-style ResNet-(6n+2) on Fashion-MNIST, evaluating on the test set
// after every epoch; write the per-epoch CSV, an SVG plot, and the trained weights (safetensors).
//
//   fashion_mnist [--epochs 3] [--depth 20] [--plain] [--batch 128] [--lr 0.1] [--threads 2] ...
//
// Data: the four IDX files of Fashion-MNIST (or MNIST), gzipped or not, in --data (Debian's
// dataset-fashion-mnist package installs them into /usr/share/datasets/fashion-mnist).
#include "common/checks.hpp"
#include "common/command_line.hpp"
#include "common/progress_bar.hpp"
#include "common/svg_chart.hpp"
#include "common/training.hpp"

#include <resblocks/io/batch_loader.hpp>
#include <resblocks/io/image_dataset.hpp>
#include <resblocks/io/safetensors.hpp>
#include <resblocks/resblocks.hpp>

#include <cstdio>
#include <exception>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

using namespace resblocks;

namespace {

struct Settings {
  long epochs, depth, batch, threads, limit;
  double lr, weight_decay;
  bool plain, augment, finite_check;
  std::uint64_t seed;
  std::string data, csv, plot, weights;
};

int run(int argc, char** argv) {
  examples::CommandLine cl(argc, argv, "Trains a ResNet-(6n+2) on Fashion-MNIST (the resblocks main example).");
  Settings s;
  s.epochs = cl.get_int("--epochs", 3, "training epochs", 1, 10'000);
  s.depth = cl.get_int("--depth", 20, "network depth 6n+2: 8, 14, 20, 32, 44, 56, 110", 8, 1'000);
  s.plain = cl.get_flag("--plain", "train the plain twin (no skip connections)");
  s.batch = cl.get_int("--batch", 128, "mini-batch size (at most the number of training images)", 1, 1'000'000'000);
  s.lr = cl.get_double("--lr", 0.1, "peak learning rate (SGD, Nesterov momentum 0.9; linear warm-up, cosine decay)",
                       1e-9, 10);
  s.weight_decay = cl.get_double("--weight-decay", 5e-4, "L2 weight decay", 0, 1);
  const long hw = static_cast<long>(std::thread::hardware_concurrency());
  s.threads = cl.get_int("--threads", hw > 0 ? hw : 1, "threads", 1, 1'024);
  s.seed = static_cast<std::uint64_t>(
      cl.get_int("--seed", 1, "seed of the initial weights and of the shuffling", 0, std::numeric_limits<long>::max()));
  s.data = cl.get_string("--data", "/usr/share/datasets/fashion-mnist", "directory of the IDX files");
  s.csv = cl.get_string("--csv", "fashion_mnist.csv", "per-epoch results (CSV)");
  s.plot = cl.get_string("--plot", "fashion_mnist.svg", "plot of training loss and test accuracy (SVG)");
  s.weights = cl.get_string("--weights", "fashion_mnist.safetensors", "where the trained weights are saved");
  s.augment = cl.get_flag("--augment", "random crops (padding 2) and horizontal flips");
  s.limit = cl.get_int("--limit", 0, "train on the first N images only (0: all; for quick checks)", 0, 1'000'000'000);
  s.finite_check =
      !cl.get_flag("--no-finite-check", "do not stop when the loss or a gradient stops being finite (NaN, infinity)");
  if (!cl.finish()) return 0;
  examples::check_depth(s.depth, "--depth");  // 6n+2, before the data is read
  // Every output is checked before the data is read: nothing trains for hours to fail at saving.
  examples::check_outputs({{"--csv", s.csv}, {"--plot", s.plot}, {"--weights", s.weights}});
  set_num_threads(static_cast<int>(s.threads));

  // Data (checked before any training starts): labels below 10, the same image size in both
  // sets, a batch that fits, pixels that vary.
  constexpr int classes = 10;
  ImageDataset train = load_mnist(s.data, MnistSplit::train, classes);
  const ImageDataset test = load_mnist(s.data, MnistSplit::test, classes);
  if (s.limit > 0) train = train.head(s.limit);
  examples::check_data(train, test, s.batch, classes, "--data " + s.data);
  const auto [mean, std] = examples::pixel_mean_std(train, "--data " + s.data);
  BatchLoader<float> train_batches(train, {.batch_size = s.batch,
                                           .shuffle = true,
                                           .drop_last = true,
                                           .seed = s.seed,
                                           .mean = mean,
                                           .std = std,
                                           .crop_padding = s.augment ? 2 : 0,
                                           .horizontal_flip = s.augment});
  // Evaluation in batches of 250: the inference workspace keeps every layer's output of a batch.
  BatchLoader<float> test_batches(test, {.batch_size = 250, .shuffle = false, .mean = mean, .std = std});

  // The network: ResNet-(6n+2) with projection shortcuts (option B, as the PyTorch anchor).
  manual_seed(s.seed);
  CifarResNet<float> net({.depth = s.depth,
                          .in_channels = 1,
                          .classes = classes,
                          .width = 16,
                          .image = {train.height(), train.width()},
                          .downsample = ShortcutKind::projection,
                          .plain = s.plain,
                          .input_gradient = false});
  Sgd opt(
      net,
      {.lr = s.lr, .momentum = 0.9, .nesterov = true, .weight_decay = s.weight_decay, .check_finite = s.finite_check});
  const long steps_per_epoch = static_cast<long>(train_batches.batches_per_epoch());
  const long total_steps = s.epochs * steps_per_epoch;
  const long warmup = std::max<long>(1, std::min<long>(steps_per_epoch / 2, total_steps / 10));
  const LinearWarmup schedule(CosineAnnealingLr(s.lr, std::max<long>(1, total_steps - warmup)), warmup, 0.1);
  CrossEntropyLoss<float> loss;
  CifarResNet<float>::Workspace ws;

  const std::string model = std::string(s.plain ? "plain" : "resnet") + "-" + std::to_string(s.depth);
  std::printf("%s: %ld parameters, %ld training images (batch %ld, %ld steps/epoch), %ld test images, %ld threads\n",
              model.c_str(), static_cast<long>(parameter_count(net)), static_cast<long>(train.size()), s.batch,
              steps_per_epoch, static_cast<long>(test.size()), s.threads);
  std::fflush(stdout);

  std::ofstream csv(s.csv);
  if (!csv) throw std::runtime_error("cannot write " + s.csv);
  csv << "epoch,train_seconds,train_loss,train_acc,test_acc,lr\n";
  examples::SvgChart chart("Fashion-MNIST, " + model);
  auto& loss_panel = chart.add_panel("training loss", "epoch", "cross-entropy");
  auto& acc_panel = chart.add_panel("test accuracy", "epoch", "accuracy");
  loss_panel.series.push_back({model, {}});
  acc_panel.series.push_back({model, {}});

  examples::ProgressBar bar;
  long step = 0;
  for (long epoch = 1; epoch <= s.epochs; ++epoch) {
    const examples::EpochStats e =
        examples::train_epoch(net, train_batches, loss, opt, schedule, step, bar, "epoch " + std::to_string(epoch));
    const double acc = examples::evaluate(net, test_batches, ws);
    std::printf("epoch %ld: train %.1f s, loss %.4f, test acc %.4f\n", epoch, e.seconds, e.loss, acc);
    std::fflush(stdout);
    csv << epoch << ',' << e.seconds << ',' << e.loss << ',' << e.train_accuracy << ',' << acc << ',' << opt.lr()
        << '\n'
        << std::flush;
    loss_panel.series[0].points.emplace_back(epoch, e.loss);
    acc_panel.series[0].points.emplace_back(epoch, acc);
    examples::save_plot(chart, s.plot, "fashion_mnist");
  }
  const std::string saved = examples::save_weights(net, s.weights, "fashion_mnist");
  std::printf("wrote %s, %s and %s\n", s.csv.c_str(), s.plot.c_str(), saved.c_str());
  return saved == s.weights ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("%s\n", build_info().c_str());  // version, Eigen, SIMD instruction sets, threads
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist: error: %s\n", e.what());
    return 1;
  }
}
