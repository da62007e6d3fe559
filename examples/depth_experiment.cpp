// The depth experiment (He et al. 2016, Fig. 1 and 6): plain and residual networks of a shallow and a
// deep depth, trained with the same budget on Fashion-MNIST. Without skips the deep network trains
// worse than the shallow one; with them depth helps. `--kind mlp` adds Highway networks (gated skips).
//
//   depth_experiment --kind mlp   # fully connected, 8 vs 64 layers of width 64 (minutes)
//   depth_experiment --kind conv  # ResNet-20 vs ResNet-56 and their plain twins (longer)
//
// Writes --csv (model,depth,epoch,train_loss,test_acc,grad_norm_first_layer) and --plot (SVG).
#include "common/checks.hpp"
#include "common/command_line.hpp"
#include "common/progress_bar.hpp"
#include "common/svg_chart.hpp"
#include "common/training.hpp"

#include <resblocks/io/batch_loader.hpp>
#include <resblocks/io/image_dataset.hpp>
#include <resblocks/resblocks.hpp>

#include <cstdio>
#include <exception>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace resblocks;

namespace {

/// A fully connected BasicBlock: relu(x + bn(W2 relu(bn(W1 x)))); with ShortcutKind::none, its plain twin.
using MlpBranch = Sequential<Linear<float>, BatchNorm2d<float>, ReLU<float>, Linear<float>, BatchNorm2d<float>>;
using MlpBlock = Sequential<Residual<MlpBranch, Shortcut<float>>, ReLU<float>>;
/// flatten - linear(784, w) - bn - relu - (depth-2)/2 blocks - linear(w, 10): `depth` Linear layers.
using MlpNet = Sequential<Flatten<float>, Linear<float>, BatchNorm2d<float>, ReLU<float>, Repeat<MlpBlock>, Linear<float>>;

MlpNet make_mlp(Index depth, Index width, bool plain, ImageSize image) {
  if (depth < 4 || depth % 2 != 0)
    throw std::invalid_argument("--kind mlp: depths must be even and >= 4 (2 + 2 per block), got " +
                                std::to_string(depth));
  const Index pixels = image.height * image.width;
  auto block = [&](Index) {
    return MlpBlock{Residual<MlpBranch, Shortcut<float>>{
                        MlpBranch{Linear<float>(width, width, false), BatchNorm2d<float>(width), ReLU<float>(),
                                  Linear<float>(width, width, false), BatchNorm2d<float>(width)},
                        Shortcut<float>(width, width, 1, plain ? ShortcutKind::none : ShortcutKind::identity)},
                    ReLU<float>()};
  };
  MlpNet net{Flatten<float>(1), Linear<float>(pixels, width, false), BatchNorm2d<float>(width), ReLU<float>(),
             Repeat<MlpBlock>((depth - 2) / 2, block), Linear<float>(width, 10)};
  // PyTorch's default Linear init; every hidden Linear feeds a BatchNorm, so its scale does not matter.
  net.set_image_size(image);
  return net;
}

/// The gated alternative (Srivastava et al. 2015): flatten - linear(784, w) - bn - relu - (depth-2)
/// highway layers y = T(x)⊙relu(W x + b) + (1 - T(x))⊙x, gate bias -2 - linear(w, 10).
using HighwayLayer = Highway<Sequential<Linear<float>, ReLU<float>>>;
using HighwayNet = Sequential<Flatten<float>, Linear<float>, BatchNorm2d<float>, ReLU<float>, Repeat<HighwayLayer>,
                              Linear<float>>;

HighwayNet make_highway(Index depth, Index width, ImageSize image) {
  if (depth < 3) throw std::invalid_argument("--kind mlp: highway depths must be >= 3, got " + std::to_string(depth));
  const Index pixels = image.height * image.width;
  HighwayNet net{Flatten<float>(1), Linear<float>(pixels, width, false), BatchNorm2d<float>(width), ReLU<float>(),
                 Repeat<HighwayLayer>(depth - 2,
                                      [&](Index) {
                                        return HighwayLayer(Sequential<Linear<float>, ReLU<float>>(
                                                                Linear<float>(width, width), ReLU<float>()),
                                                            width);
                                      }),
                 Linear<float>(width, 10)};
  net.set_image_size(image);
  return net;
}

struct Run {
  std::string model;
  long depth;
  std::vector<examples::EpochStats> epochs;
  std::vector<double> test_acc;
};

}  // namespace

int main(int argc, char** argv) try {
  std::printf("%s\n", build_info().c_str());  // version, Eigen, SIMD instruction sets, threads
  examples::CommandLine cl(argc, argv,
                           "Plain vs residual (and, for mlp, highway) networks, shallow vs deep, on Fashion-MNIST (He et al. 2016, Fig. 1).");
  const std::string kind = cl.get_string("--kind", "mlp", "mlp (fully connected) or conv (CIFAR-style ResNets)");
  const long epochs = cl.get_int("--epochs", 0, "epochs per model (0: 6 for mlp, 3 for conv)", 0, 10'000);
  long shallow = cl.get_int("--shallow", 0, "shallow depth (0: 8 for mlp, 20 for conv)", 0, 1'000);
  long deep = cl.get_int("--deep", 0, "deep depth (0: 64 for mlp, 56 for conv)", 0, 1'000);
  const long width = cl.get_int("--width", 64, "width of the mlp layers", 1, 4'096);
  const long batch = cl.get_int("--batch", 128, "mini-batch size (at most the number of training images)", 1, 1'000'000'000);
  const double lr =
      cl.get_double("--lr", 0.05, "peak learning rate (SGD, Nesterov momentum 0.9, warm-up, cosine)", 1e-9, 10);
  const long hw = static_cast<long>(std::thread::hardware_concurrency());
  const long threads = cl.get_int("--threads", hw > 0 ? hw : 1, "threads", 1, 1'024);
  const auto seed = static_cast<std::uint64_t>(cl.get_int("--seed", 1, "seed", 0, std::numeric_limits<long>::max()));
  const long limit = cl.get_int("--limit", 0, "train on the first N images only (0: all)", 0, 1'000'000'000);
  const std::string data = cl.get_string("--data", "/usr/share/datasets/fashion-mnist", "directory of the IDX files");
  const std::string csv_path = cl.get_string("--csv", "depth_experiment.csv", "results (CSV)");
  const std::string plot_path = cl.get_string("--plot", "depth_experiment.svg", "plot (SVG)");
  if (!cl.finish()) return 0;
  const bool conv = kind == "conv";
  if (!conv && kind != "mlp") throw std::invalid_argument("--kind must be mlp or conv, got '" + kind + "'");
  const long n_epochs = epochs > 0 ? epochs : conv ? 3 : 6;
  if (shallow == 0) shallow = conv ? 20 : 8;
  if (deep == 0) deep = conv ? 56 : 64;
  for (const long depth : {shallow, deep}) {  // every depth checked before the data is read
    if (conv)
      examples::check_depth(depth, depth == shallow ? "--shallow" : "--deep");
    else if (depth < 4 || depth % 2 != 0)
      throw std::invalid_argument("--kind mlp: depths must be even and >= 4 (2 + 2 per block), got " +
                                  std::to_string(depth));
  }
  examples::check_outputs({{"--csv", csv_path}, {"--plot", plot_path}});
  set_num_threads(static_cast<int>(threads));

  constexpr int classes = 10;
  ImageDataset train = load_mnist(data, MnistSplit::train, classes);
  const ImageDataset test = load_mnist(data, MnistSplit::test, classes);
  if (limit > 0) train = train.head(limit);
  examples::check_data(train, test, batch, classes, "--data " + data);
  const auto [mean, std] = examples::pixel_mean_std(train, "--data " + data);
  const ImageSize image{train.height(), train.width()};

  std::ofstream csv(csv_path);
  if (!csv) throw std::runtime_error("cannot write " + csv_path);
  csv << "model,depth,epoch,train_loss,test_acc,grad_norm_first_layer\n";
  examples::SvgChart chart(std::string("Depth experiment (") + (conv ? "CIFAR-style ResNets" : "fully connected") +
                           ", Fashion-MNIST): plain vs residual" + (conv ? ", " : " vs highway, ") + std::to_string(shallow) + " vs " +
                           std::to_string(deep) + " layers");
  auto& loss_panel = chart.add_panel("training loss", "epoch", "cross-entropy", true);
  auto& acc_panel = chart.add_panel("test accuracy", "epoch", "accuracy");
  auto& grad_panel = chart.add_panel("first layer's gradient", "epoch", "mean ||dL/dW1||", true);
  std::vector<Run> runs;
  examples::ProgressBar bar;

  auto train_model = [&](auto& net, const std::string& model, long depth) {
    BatchLoader<float> train_batches(train, {.batch_size = batch, .shuffle = true, .drop_last = true, .seed = seed,
                                             .mean = mean, .std = std});
    BatchLoader<float> test_batches(test, {.batch_size = 250, .shuffle = false, .mean = mean, .std = std});
    Sgd opt(net, {.lr = lr, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4, .check_finite = true});
    const long per_epoch = static_cast<long>(train_batches.batches_per_epoch()), total = n_epochs * per_epoch;
    const long warmup = std::max<long>(1, std::min<long>(per_epoch / 2, total / 10));
    const LinearWarmup schedule(CosineAnnealingLr(lr, std::max<long>(1, total - warmup)), warmup, 0.1);
    CrossEntropyLoss<float> loss;
    typename std::remove_reference_t<decltype(net)>::Workspace ws;
    Run run{model, depth, {}, {}};
    // One colour per depth, dashed for the plain network.
    const bool dashed = model.rfind("plain", 0) == 0;
    const int colour = (depth == shallow ? 0 : 1) + (model == "highway" ? 2 : 0);
    for (auto* panel : {&loss_panel, &acc_panel, &grad_panel})
      panel->series.push_back({model + "-" + std::to_string(depth), {}, dashed, colour});
    long step = 0;
    for (long epoch = 1; epoch <= n_epochs; ++epoch) {
      const std::string label = model + "-" + std::to_string(depth) + " epoch " + std::to_string(epoch);
      examples::EpochStats e;
      try {
        e = examples::train_epoch(net, train_batches, loss, opt, schedule, step, bar, label);
      } catch (const std::runtime_error& diverged) {  // a diverged model is a result too: record it, go on
        std::printf("%s\n", diverged.what());
        break;
      }
      const double acc = examples::evaluate(net, test_batches, ws);
      std::printf("%s: train %.1f s, loss %.4f, test acc %.4f, grad norm first layer %.3g\n", label.c_str(), e.seconds,
                  e.loss, acc, e.grad_norm_first);
      std::fflush(stdout);
      csv << model << ',' << depth << ',' << epoch << ',' << e.loss << ',' << acc << ',' << e.grad_norm_first << '\n'
          << std::flush;
      loss_panel.series.back().points.emplace_back(epoch, e.loss);
      acc_panel.series.back().points.emplace_back(epoch, acc);
      grad_panel.series.back().points.emplace_back(epoch, e.grad_norm_first);
      examples::save_plot(chart, plot_path, "depth_experiment");
      run.epochs.push_back(e);
      run.test_acc.push_back(acc);
    }
    runs.push_back(run);
  };

  for (const long depth : {shallow, deep})
    for (const std::string model : {"plain", "residual", "highway"}) {
      const bool plain = model == "plain";
      manual_seed(seed);
      if (model == "highway") {  // fully connected only: there is no convolutional highway network here
        if (conv) continue;
        HighwayNet net = make_highway(depth, width, image);
        train_model(net, model, depth);
      } else if (conv) {
        CifarResNet<float> net({.depth = depth, .in_channels = 1, .classes = 10, .width = 16, .image = image,
                                .downsample = ShortcutKind::projection, .plain = plain, .input_gradient = false});
        train_model(net, model, depth);
      } else {
        MlpNet net = make_mlp(depth, width, plain, image);
        train_model(net, model, depth);
      }
    }

  std::printf("\n%-10s %6s %16s %10s\n", "model", "depth", "final train loss", "test acc");
  for (const Run& r : runs)
    std::printf("%-10s %6ld %16.4f %10.4f\n", r.model.c_str(), r.depth,
                r.epochs.empty() ? std::nan("") : r.epochs.back().loss, r.test_acc.empty() ? std::nan("") : r.test_acc.back());
  std::printf("wrote %s and %s\n", csv_path.c_str(), plot_path.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "depth_experiment: error: %s\n", e.what());
  return 1;
}
