#pragma once
/// \file
/// \brief CrossEntropyLoss: softmax and negative log-likelihood fused, with label smoothing.

#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/train/reduction.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace resblocks {

/// \brief Settings of CrossEntropyLoss (PyTorch's defaults).
struct CrossEntropyOptions {
  double label_smoothing = 0;  ///< ε in [0, 1]: the target is (1-ε)·one-hot + ε/classes
  Reduction reduction = Reduction::mean;
};

/// \brief Cross-entropy of class logits against integer labels, as
/// `torch.nn.functional.cross_entropy(logits.T, labels, label_smoothing=ε, reduction=...)`.
///
/// `logits` is classes × samples (one column per sample), `labels[j]` the class of column j.
/// Per sample, with log p = z - logsumexp(z) (taken around the column maximum, so ±1000 logits
/// neither overflow nor underflow):
///   loss_j = (1-ε)·(-log p[label_j]) + ε · mean over classes of (-log p_c),
/// summed over samples, or averaged for Reduction::mean. backward() gives
/// dL/dlogits = (softmax - target) / n (without the 1/n for Reduction::sum), target the smoothed one-hot.
///
/// The loss is accumulated in double (per column, then over columns in a fixed order, so the result
/// does not depend on the thread count). A NaN (or +inf) logit makes the loss NaN; nothing is
/// checked or thrown for it: the caller tests the returned value. Buffers are sized on the first
/// call and reused: later calls with the same batch size do not allocate.
template <class S = float, int Classes = Dynamic>
class CrossEntropyLoss {
 public:
  using Scalar = S;
  static constexpr int ClassCount = Classes;
  using Input = Batch<S, Classes>;
  static constexpr std::string_view name = "CrossEntropyLoss";

  /// \brief Throws std::invalid_argument unless label_smoothing is in [0, 1].
  /// \param options reduction and label smoothing
  /// \throws std::invalid_argument unless label_smoothing is in [0, 1]
  explicit CrossEntropyLoss(CrossEntropyOptions options = {}) : m_opt(options) {
    if (!(options.label_smoothing >= 0.0 && options.label_smoothing <= 1.0))
      throw std::invalid_argument("CrossEntropyLoss: label_smoothing must be in [0, 1], got " +
                                  std::to_string(options.label_smoothing));
  }

  [[nodiscard]] const CrossEntropyOptions& options() const noexcept { return m_opt; }

  /// The loss of `logits` (classes × n) against `labels` (n entries in [0, classes)); caches the
  /// softmax for backward(). Throws std::invalid_argument on a label count or value that does not fit.
  /// \param logits classes × n scores
  /// \param labels n class indices
  /// \returns the loss (mean or sum over the samples)
  /// \throws std::invalid_argument on empty logits, a label count other than n, or a label outside [0, classes)
  S forward(const Input& logits, std::span<const int> labels) {
    check(logits, labels);
    const Index classes = logits.rows(), n = logits.cols();
    m_labels.assign(labels.begin(), labels.end());
    m_probs.resize(classes, n);
    m_column_loss.resize(n);
    m_hit.resize(static_cast<std::size_t>(n));
    const double eps = m_opt.label_smoothing;
    detail::parallel_for(n, 24.0 * double(classes), [&](Index j0, Index j1) {
      for (Index j = j0; j < j1; ++j) {
        const S* z = logits.data() + j * classes;
        S* p = m_probs.data() + j * classes;
        Index arg = 0;  // the first maximum, as torch.argmax
        for (Index c = 1; c < classes; ++c)
          if (z[c] > z[arg]) arg = c;
        const double zmax = double(z[arg]);
        double sum = 0, zsum = 0;
        for (Index c = 0; c < classes; ++c) {
          const double e = std::exp(double(z[c]) - zmax);
          p[c] = S(e);
          sum += e;
          zsum += double(z[c]);
        }
        const double lse = zmax + std::log(sum), inv_sum = 1.0 / sum;
        for (Index c = 0; c < classes; ++c) p[c] = S(double(p[c]) * inv_sum);
        const int y = m_labels[static_cast<std::size_t>(j)];
        double loss = lse - double(z[y]);  // -log p[y]
        // mean_c(-log p_c) = lse - mean_c(z); skipped for ε = 0 so that a -inf logit elsewhere stays harmless
        if (eps > 0) loss = (1 - eps) * loss + eps * (lse - zsum / double(classes));
        m_column_loss(j) = loss;
        m_hit[static_cast<std::size_t>(j)] = arg == y ? 1 : 0;
      }
    });
    double total = 0;
    Index hits = 0;
    for (Index j = 0; j < n; ++j) {  // fixed order: the same bits for every thread count
      total += m_column_loss(j);
      hits += m_hit[static_cast<std::size_t>(j)];
    }
    m_correct = hits;
    m_loss = m_opt.reduction == Reduction::mean ? total / double(n) : total;
    m_forward_done = true;
    return S(m_loss);
  }

  /// \brief dL/dlogits of the last forward: (softmax - target) / n (mean) or softmax - target (sum).
  /// \returns dL/dlogits (classes × n), in a buffer the loss owns
  /// \throws std::logic_error before any forward
  const Input& backward() {
    detail::check_forward_done(name, m_forward_done);
    const Index classes = m_probs.rows(), n = m_probs.cols();
    const double scale = m_opt.reduction == Reduction::mean ? 1.0 / double(n) : 1.0;
    const double off = m_opt.label_smoothing / double(classes), on = 1.0 - m_opt.label_smoothing;
    m_dL_dlogits.resize(classes, n);
    detail::parallel_for(n, 2.0 * double(classes), [&](Index j0, Index j1) {
      for (Index j = j0; j < j1; ++j) {
        const S* p = m_probs.data() + j * classes;
        S* g = m_dL_dlogits.data() + j * classes;
        const Index y = m_labels[static_cast<std::size_t>(j)];
        for (Index c = 0; c < classes; ++c) g[c] = S((double(p[c]) - off - (c == y ? on : 0.0)) * scale);
      }
    });
    return m_dL_dlogits;
  }

  /// \brief Samples of the last forward whose largest logit (the first, on ties) is at their label.
  /// \returns the number of correct predictions
  [[nodiscard]] Index correct() const noexcept { return m_correct; }
  /// \brief The last forward's loss, in double.
  /// \returns the loss
  [[nodiscard]] double loss() const noexcept { return m_loss; }
  /// \brief The softmax of the last forward's logits (classes × n).
  /// \returns the probabilities
  [[nodiscard]] const Input& probabilities() const noexcept { return m_probs; }

 private:
  void check(const Input& logits, std::span<const int> labels) const {
    const std::string shape = detail::shape_string(logits.rows(), logits.cols());
    if (logits.rows() == 0 || logits.cols() == 0)
      throw std::invalid_argument("CrossEntropyLoss: logits are " + shape +
                                  " (classes x samples); need at least one class and one sample");
    if (static_cast<Index>(labels.size()) != logits.cols())
      throw std::invalid_argument("CrossEntropyLoss: " + std::to_string(labels.size()) + " labels for logits " + shape +
                                  " (classes x samples); expected one label per column");
    const Index classes = logits.rows();
    for (std::size_t j = 0; j < labels.size(); ++j)
      if (labels[j] < 0 || labels[j] >= classes)
        throw std::invalid_argument("CrossEntropyLoss: label " + std::to_string(labels[j]) + " at index " +
                                    std::to_string(j) + " is outside [0, " + std::to_string(classes) + ") (" +
                                    std::to_string(classes) + " classes)");
  }

  CrossEntropyOptions m_opt;
  Input m_probs;
  Input m_dL_dlogits;
  Eigen::VectorXd m_column_loss;
  std::vector<int> m_labels;
  std::vector<unsigned char> m_hit;
  Index m_correct = 0;
  double m_loss = 0;
  bool m_forward_done = false;
};

}  // namespace resblocks
