// The depth experiment (He et al. 2016, Fig. 1 and 6): plain and residual networks of several depths,
// trained with the same budget on Fashion-MNIST. Without skips the deep network trains worse than the
// shallow one; with them depth helps. `--kind mlp` adds Highway networks (gated skips).
//
//   depth_experiment --kind mlp                         # fully connected, 8 vs 64 layers of width 64 (minutes)
//   depth_experiment --kind conv --depths 20,56,110     # CIFAR ResNets and their plain twins (hours)
//   depth_experiment --kind preact --depths 1202 --batch 32 --limit 3000 --epochs 1 --steps-csv s.csv
//                                                       # ResNet v2 (pre-activation) at 1000+ layers
//
// Writes --csv (model,depth,epoch,train_loss,test_acc,grad_norm_first_layer,seconds,peak_rss_mb), --plot
// (SVG: solid residual, dashed plain, one colour per depth) and, with --steps-csv, every step's loss.
#include "common/checks.hpp"
#include "common/command_line.hpp"
#include "common/progress_bar.hpp"
#include "common/svg_chart.hpp"
#include "common/training.hpp"

#include <resblocks/io/batch_loader.hpp>
#include <resblocks/io/image_dataset.hpp>
#include <resblocks/resblocks.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/resource.h>

using namespace resblocks;

namespace {

/// A fully connected BasicBlock: relu(x + bn(W2 relu(bn(W1 x)))); with ShortcutKind::none, its plain twin.
using MlpBranch = Sequential<Linear<float>, BatchNorm2d<float>, ReLU<float>, Linear<float>, BatchNorm2d<float>>;
using MlpBlock = Sequential<Residual<MlpBranch, Shortcut<float>>, ReLU<float>>;
/// flatten - linear(784, w) - bn - relu - (depth-2)/2 blocks - linear(w, 10): `depth` Linear layers.
using MlpNet =
    Sequential<Flatten<float>, Linear<float>, BatchNorm2d<float>, ReLU<float>, Repeat<MlpBlock>, Linear<float>>;

MlpNet make_mlp(Index depth, Index width, bool plain, bool zero_init_residual, ImageSize image) {
  if (depth < 4 || depth % 2 != 0)
    throw std::invalid_argument("--kind mlp: depths must be even and >= 4 (2 + 2 per block), got " +
                                std::to_string(depth));
  const Index pixels = image.height * image.width;
  auto block = [&](Index) {
    MlpBlock b{Residual<MlpBranch, Shortcut<float>>{
                   MlpBranch{Linear<float>(width, width, false), BatchNorm2d<float>(width), ReLU<float>(),
                             Linear<float>(width, width, false), BatchNorm2d<float>(width)},
                   Shortcut<float>(width, width, 1, plain ? ShortcutKind::none : ShortcutKind::identity)},
               ReLU<float>()};
    // Zero-init: the branch's last BN γ = 0, so every block starts as relu(x), the identity on its input.
    if (zero_init_residual) b.get<0>().body().get<4>().weight().setZero();
    return b;
  };
  MlpNet net{Flatten<float>(1), Linear<float>(pixels, width, false),      BatchNorm2d<float>(width),
             ReLU<float>(),     Repeat<MlpBlock>((depth - 2) / 2, block), Linear<float>(width, 10)};
  // PyTorch's default Linear init; every hidden Linear feeds a BatchNorm, so its scale does not matter.
  net.set_image_size(image);
  return net;
}

/// The gated alternative (Srivastava et al. 2015): flatten - linear(784, w) - bn - relu - (depth-2)
/// highway layers y = T(x)⊙relu(W x + b) + (1 - T(x))⊙x, gate bias -2 - linear(w, 10).
using HighwayLayer = Highway<Sequential<Linear<float>, ReLU<float>>>;
using HighwayNet =
    Sequential<Flatten<float>, Linear<float>, BatchNorm2d<float>, ReLU<float>, Repeat<HighwayLayer>, Linear<float>>;

HighwayNet make_highway(Index depth, Index width, ImageSize image) {
  if (depth < 3) throw std::invalid_argument("--kind mlp: highway depths must be >= 3, got " + std::to_string(depth));
  const Index pixels = image.height * image.width;
  HighwayNet net{Flatten<float>(1),
                 Linear<float>(pixels, width, false),
                 BatchNorm2d<float>(width),
                 ReLU<float>(),
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

/// Peak resident memory of this process so far, in MB (the models run one after another).
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

/// "a,b,c" → {"a", "b", "c"} (an empty text gives one empty item).
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    items.push_back(text.substr(at, comma - at));
    at = comma + 1;
  }
  return items;
}

/// "8,64" → {8, 64}; throws naming `flag` on anything else.
std::vector<long> parse_depths(const std::string& text, const std::string& flag) {
  std::vector<long> out;
  for (const std::string& item : split_commas(text)) {
    std::size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 1)
      throw std::invalid_argument(flag + " must be a comma-separated list of positive depths, got '" + text + "'");
    out.push_back(v);
  }
  return out;
}

std::vector<std::string> parse_models(const std::string& text, bool conv) {
  std::vector<std::string> out = split_commas(text);
  for (const std::string& item : out)
    if (item != "plain" && item != "residual" && (item != "highway" || conv))
      throw std::invalid_argument("--models: '" + item + "' is not one of plain, residual" +
                                  (conv ? " (highway is fully connected only: --kind mlp)" : ", highway"));
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  std::printf("%s\n", build_info().c_str());  // version, Eigen, SIMD instruction sets, threads
  examples::CommandLine cl(argc, argv,
                           "Plain vs residual (and, for mlp, highway) networks of several depths on Fashion-MNIST (He "
                           "et al. 2016, Fig. 1 and 6).");
  const std::string kind = cl.get_string(
      "--kind", "mlp", "mlp (fully connected), conv (CIFAR ResNets) or preact (pre-activation CIFAR ResNets)");
  const long epochs = cl.get_int("--epochs", 0, "epochs per model (0: 6 for mlp, 3 for conv and preact)", 0, 10'000);
  const std::string depths_text =
      cl.get_string("--depths", "", "comma-separated depths (default 8,64 for mlp; 20,56 for conv and preact)");
  const std::string models_text =
      cl.get_string("--models", "", "comma-separated: plain, residual, highway (default all that apply)");
  const bool zero_init =
      cl.get_flag("--zero-init-residual", "each block's last BatchNorm γ starts at 0 (the block starts as its skip)");
  const long width =
      cl.get_int("--width", 0, "width: of the mlp layers (0: 64); of the first conv stage (0: 16)", 0, 4'096);
  const long batch =
      cl.get_int("--batch", 128, "mini-batch size (at most the number of training images)", 1, 1'000'000'000);
  const double lr = cl.get_double(
      "--lr", 0.05, "peak learning rate (SGD, Nesterov momentum 0.9, warm-up from lr/10, cosine)", 1e-9, 10);
  const long hw = static_cast<long>(std::thread::hardware_concurrency());
  const long threads = cl.get_int("--threads", hw > 0 ? hw : 1, "threads", 1, 1'024);
  const auto seed = static_cast<std::uint64_t>(cl.get_int("--seed", 1, "seed", 0, std::numeric_limits<long>::max()));
  const long limit = cl.get_int("--limit", 0, "train on the first N images only (0: all)", 0, 1'000'000'000);
  const long test_limit =
      cl.get_int("--test-limit", 0, "evaluate on the first N test images only (0: all)", 0, 1'000'000'000);
  const std::string data = cl.get_string("--data", "/usr/share/datasets/fashion-mnist", "directory of the IDX files");
  const std::string csv_path = cl.get_string("--csv", "depth_experiment.csv", "results per epoch (CSV)");
  const std::string plot_path = cl.get_string("--plot", "depth_experiment.svg", "plot (SVG)");
  const std::string steps_path =
      cl.get_string("--steps-csv", "", "every step's loss and first-layer gradient norm (CSV; empty: none)");
  const std::string steps_plot_path = cl.get_string("--steps-plot", "", "the same per step (SVG; empty: none)");
  if (!cl.finish()) return 0;
  const bool conv = kind == "conv" || kind == "preact";
  if (!conv && kind != "mlp") throw std::invalid_argument("--kind must be mlp, conv or preact, got '" + kind + "'");
  const long n_epochs = epochs > 0 ? epochs : conv ? 3 : 6;
  const std::vector<long> depths =
      parse_depths(depths_text.empty() ? (conv ? "20,56" : "8,64") : depths_text, "--depths");
  const std::vector<std::string> models =
      parse_models(models_text.empty() ? (conv ? "plain,residual" : "plain,residual,highway") : models_text, conv);
  for (const long depth : depths) {  // every depth checked before the data is read
    if (conv)
      examples::check_depth(depth, "--depths");
    else if (depth < 4 || depth % 2 != 0)
      throw std::invalid_argument("--kind mlp: depths must be even and >= 4 (2 + 2 per block), got " +
                                  std::to_string(depth));
  }
  std::vector<std::pair<std::string, std::string>> outputs{{"--csv", csv_path}, {"--plot", plot_path}};
  if (!steps_path.empty()) outputs.emplace_back("--steps-csv", steps_path);
  if (!steps_plot_path.empty()) outputs.emplace_back("--steps-plot", steps_plot_path);
  examples::check_outputs(outputs);
  set_num_threads(static_cast<int>(threads));

  constexpr int classes = 10;
  ImageDataset train = load_mnist(data, MnistSplit::train, classes);
  ImageDataset test = load_mnist(data, MnistSplit::test, classes);
  if (limit > 0) train = train.head(limit);
  if (test_limit > 0) test = test.head(test_limit);
  examples::check_data(train, test, batch, classes, "--data " + data);
  const auto [mean, std] = examples::pixel_mean_std(train, "--data " + data);
  const ImageSize image{train.height(), train.width()};

  std::ofstream csv(csv_path);
  if (!csv) throw std::runtime_error("cannot write " + csv_path);
  csv << "model,depth,epoch,train_loss,test_acc,grad_norm_first_layer,seconds,peak_rss_mb\n";
  std::ofstream steps_csv;
  if (!steps_path.empty()) {
    steps_csv.open(steps_path);
    if (!steps_csv) throw std::runtime_error("cannot write " + steps_path);
    steps_csv << "model,depth,step,train_loss,grad_norm_first_layer\n";
  }
  std::string title = "Depth experiment (";
  title += kind == "mlp" ? "fully connected" : kind == "conv" ? "CIFAR-style ResNets" : "pre-activation ResNets";
  title += ", Fashion-MNIST";
  if (zero_init) title += ", zero-init residual";
  title += "): solid residual, dashed plain";
  examples::SvgChart chart(title);
  auto& loss_panel = chart.add_panel("training loss", "epoch", "cross-entropy", true);
  auto& err_panel = chart.add_panel("test error", "epoch", "error", true);
  auto& grad_panel = chart.add_panel("first layer's gradient", "epoch", "mean ||dL/dW1||", true);
  examples::SvgChart steps_chart(title + ", per step");
  auto& step_loss_panel = steps_chart.add_panel("training loss", "step", "cross-entropy", true);
  auto& step_grad_panel = steps_chart.add_panel("first layer's gradient", "step", "||dL/dW1||", true);
  std::vector<Run> runs;
  examples::ProgressBar bar;

  auto train_model = [&](auto& net, const std::string& model, long depth, std::size_t depth_index) {
    BatchLoader<float> train_batches(
        train, {.batch_size = batch, .shuffle = true, .drop_last = true, .seed = seed, .mean = mean, .std = std});
    // Evaluation batches no larger than the training ones: inference buffers scale with the batch too
    // (at 1000 layers, a 250-image evaluation batch would need 15× the memory of training at 16).
    BatchLoader<float> test_batches(
        test, {.batch_size = std::min<long>({250, batch, test.size()}), .shuffle = false, .mean = mean, .std = std});
    Sgd opt(net, {.lr = lr, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4, .check_finite = true});
    const long per_epoch = static_cast<long>(train_batches.batches_per_epoch()), total = n_epochs * per_epoch;
    const long warmup = std::max<long>(1, std::min<long>(per_epoch / 2, total / 10));
    const LinearWarmup schedule(CosineAnnealingLr(lr, std::max<long>(1, total - warmup)), warmup, 0.1);
    CrossEntropyLoss<float> loss;
    typename std::remove_reference_t<decltype(net)>::Workspace ws;
    Run run{model, depth, {}, {}};
    // One colour per depth (highway: shifted), dashed for the plain network.
    const bool dashed = model == "plain";
    const int colour = static_cast<int>(depth_index) + (model == "highway" ? 4 : 0);
    for (auto* panel : {&loss_panel, &err_panel, &grad_panel})
      panel->series.push_back({model + "-" + std::to_string(depth), {}, dashed, colour});
    for (auto* panel : {&step_loss_panel, &step_grad_panel})
      panel->series.push_back({model + "-" + std::to_string(depth), {}, dashed, colour});
    examples::StepLog log;
    if (steps_csv.is_open() || !steps_plot_path.empty())
      log = [&](long step, double l, double grad) {
        if (steps_csv.is_open()) steps_csv << model << ',' << depth << ',' << step << ',' << l << ',' << grad << '\n';
        // Log-scale panels: a non-finite or zero value (an overflowed gradient) has no point.
        if (std::isfinite(l) && l > 0) step_loss_panel.series.back().points.emplace_back(double(step), l);
        if (std::isfinite(grad) && grad > 0) step_grad_panel.series.back().points.emplace_back(double(step), grad);
      };
    long step = 0;
    for (long epoch = 1; epoch <= n_epochs; ++epoch) {
      const std::string label = model + "-" + std::to_string(depth) + " epoch " + std::to_string(epoch);
      examples::EpochStats e;
      try {
        e = examples::train_epoch(net, train_batches, loss, opt, schedule, step, bar, label, log);
      } catch (const std::runtime_error& diverged) {  // a diverged model is a result too: record it, go on
        std::printf("%s\n", diverged.what());
        if (!steps_plot_path.empty()) examples::save_plot(steps_chart, steps_plot_path, "depth_experiment");
        break;
      }
      const double acc = examples::evaluate(net, test_batches, ws);
      const double rss = peak_rss_mb();
      std::printf("%s: train %.1f s, loss %.4f, test acc %.4f, grad norm first layer %.3g, peak RSS %.0f MB\n",
                  label.c_str(), e.seconds, e.loss, acc, e.grad_norm_first, rss);
      std::fflush(stdout);
      csv << model << ',' << depth << ',' << epoch << ',' << e.loss << ',' << acc << ',' << e.grad_norm_first << ','
          << e.seconds << ',' << rss << '\n'
          << std::flush;
      steps_csv << std::flush;
      loss_panel.series.back().points.emplace_back(epoch, e.loss);
      err_panel.series.back().points.emplace_back(epoch, 1.0 - acc);
      grad_panel.series.back().points.emplace_back(epoch, e.grad_norm_first);
      examples::save_plot(chart, plot_path, "depth_experiment");
      if (!steps_plot_path.empty()) examples::save_plot(steps_chart, steps_plot_path, "depth_experiment");
      run.epochs.push_back(e);
      run.test_acc.push_back(acc);
    }
    runs.push_back(run);
  };

  const Index w = width > 0 ? width : conv ? 16 : 64;
  for (std::size_t d = 0; d < depths.size(); ++d)
    for (const std::string& model : models) {
      const long depth = depths[d];
      const bool plain = model == "plain";
      manual_seed(seed);
      if (model == "highway") {
        HighwayNet net = make_highway(depth, w, image);
        train_model(net, model, depth, d);
      } else if (conv) {
        const CifarResNetOptions o{.depth = depth,
                                   .in_channels = 1,
                                   .classes = 10,
                                   .width = w,
                                   .image = image,
                                   .downsample = ShortcutKind::projection,
                                   .plain = plain,
                                   .zero_init_residual = zero_init && !plain,
                                   .input_gradient = false};
        if (kind == "preact") {
          CifarPreActResNet<float> net(o);
          train_model(net, model, depth, d);
        } else {
          CifarResNet<float> net(o);
          train_model(net, model, depth, d);
        }
      } else {
        MlpNet net = make_mlp(depth, w, plain, zero_init && !plain, image);
        train_model(net, model, depth, d);
      }
    }

  std::printf("\n%-10s %6s %16s %10s\n", "model", "depth", "final train loss", "test acc");
  for (const Run& r : runs)
    std::printf("%-10s %6ld %16.4f %10.4f\n", r.model.c_str(), r.depth,
                r.epochs.empty() ? std::nan("") : r.epochs.back().loss,
                r.test_acc.empty() ? std::nan("") : r.test_acc.back());
  std::printf("wrote %s and %s\n", csv_path.c_str(), plot_path.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "depth_experiment: error: %s\n", e.what());
  return 1;
}
