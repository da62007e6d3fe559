#pragma once
// The examples' training loop: one epoch of SGD on an image classifier, and test-set evaluation.
#include "common/progress_bar.hpp"

#include <resblocks/io/batch_loader.hpp>
#include <resblocks/resblocks.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>

namespace examples {

/// \brief What one epoch of training measured.
struct EpochStats {
  double seconds = 0;          ///< training only (as PyTorch's anchor measures it), not evaluation
  double loss = 0;             ///< mean training loss over the epoch's batches
  double train_accuracy = 0;   ///< on the training batches, as they were seen
  double grad_norm_first = 0;  ///< mean ‖dL/dW‖ of the network's first weight over the epoch
  long images = 0;
};

/// Called after every step with the step number (from 1, across epochs), its loss and ‖dL/dW1‖.
using StepLog = std::function<void(long step, double loss, double grad_norm_first)>;

/// ‖dL/dθ‖ of the first parameter the network visits (its first layer's weight).
template <class Net>
double first_grad_norm(const Net& net) {
  double norm = -1;
  net.for_each_parameter([&](std::string_view, const auto&, const auto& grad) {
    if (norm < 0) norm = static_cast<double>(grad.norm());
  });
  return norm;
}

/// One epoch: for every batch, forward, cross-entropy, backward, `opt.step`, learning rate from
/// `schedule(step)` (step counts batches across epochs). With the optimizer's check_finite (the
/// non-finite guard), throws std::runtime_error naming the step when the loss stops being finite,
/// before the backward pass and the update (and the optimizer refuses a non-finite gradient).
/// `log`, when set, sees every step.
template <class Net, class Optimizer, class Schedule>
EpochStats train_epoch(Net& net, resblocks::BatchLoader<float>& loader, resblocks::CrossEntropyLoss<float>& loss,
                       Optimizer& opt, const Schedule& schedule, long& step, ProgressBar& bar, const std::string& label,
                       const StepLog& log = {}) {
  using Clock = std::chrono::steady_clock;
  EpochStats stats;
  double loss_sum = 0, grad_sum = 0;
  long correct = 0, batches = 0;
  resblocks::train(net);
  loader.start_epoch();
  bar.start(label, static_cast<long>(loader.batches_per_epoch()));
  const auto t0 = Clock::now();
  while (loader.next()) {
    opt.set_lr(schedule(step++));
    const auto& logits = net.forward(loader.images());
    const double l = loss.forward(logits, loader.labels());
    if (opt.options().check_finite && !std::isfinite(l))
      throw std::runtime_error(label + ": the training loss became " + std::to_string(l) + " at step " +
                               std::to_string(step) + " (batch " + std::to_string(batches + 1) +
                               "); the weights were not updated (diverged: try a smaller --lr)");
    net.zero_grad();
    net.backward(loss.backward());
    const double grad = first_grad_norm(net);
    grad_sum += grad;
    if (log) log(step, l, grad);
    opt.step(net);
    loss_sum += l;
    correct += static_cast<long>(loss.correct());
    stats.images += static_cast<long>(loader.labels().size());
    ++batches;
    bar.update(batches, loss_sum / batches, static_cast<double>(correct) / stats.images, stats.images);
  }
  stats.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  bar.clear();
  if (batches == 0) throw std::runtime_error(label + ": the epoch has no batches (fewer images than --batch?)");
  stats.loss = loss_sum / batches;
  stats.train_accuracy = static_cast<double>(correct) / stats.images;
  stats.grad_norm_first = grad_sum / batches;
  return stats;
}

/// Test accuracy in eval mode (BatchNorm's running statistics), through the const inference path.
template <class Net>
double evaluate(Net& net, resblocks::BatchLoader<float>& loader, typename Net::Workspace& ws) {
  resblocks::eval(net);
  long correct = 0, seen = 0;
  loader.start_epoch();
  while (loader.next()) {
    const auto& logits = net.infer(loader.images(), ws);
    const auto labels = loader.labels();
    for (Eigen::Index j = 0; j < logits.cols(); ++j) {
      Eigen::Index best = 0;
      logits.col(j).maxCoeff(&best);
      correct += best == labels[static_cast<std::size_t>(j)];
    }
    seen += logits.cols();
  }
  resblocks::train(net);
  return seen > 0 ? static_cast<double>(correct) / seen : 0.0;
}

}  // namespace examples
