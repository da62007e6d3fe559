#pragma once
/// \file
/// \brief Adam: adaptive moment estimation with L2 weight decay and AMSGrad, as torch.optim.Adam.

#include "resblocks/train/adam_core.hpp"
#include "resblocks/train/optimizer_state.hpp"

#include <functional>
#include <string_view>
#include <utility>

namespace resblocks {

/// \brief Settings of Adam (torch.optim.Adam's defaults; betas = (beta1, beta2)).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  ///< L2: added to the gradient, `g += weight_decay * p`
  bool amsgrad = false;
  /// Which parameters (by name) get weight decay; empty: all. Asked once, at construction.
  std::function<bool(std::string_view)> decay = {};
  /// The non-finite guard: before a step touches anything, check every gradient and throw
  /// std::runtime_error naming the step and the parameter when one holds a NaN or an infinity.
  bool check_finite = false;
};

/// \brief torch.optim.Adam on the parameters of a model, in place (the formula is on
/// detail::AdamCore; AdamW shares it). State and arithmetic in S, as torch does for float tensors.
template <class S>
class Adam {
 public:
  using Scalar = S;

  /// Visits `model` once and allocates the moments. Throws std::invalid_argument on lr < 0,
  /// eps < 0, betas outside [0, 1) or weight_decay < 0 (as torch).
  /// \param model the model whose parameters the optimizer updates
  /// \param o learning rate, betas, eps, weight decay, amsgrad and check_finite
  /// \throws std::invalid_argument on lr < 0, eps < 0, betas outside [0, 1) or weight_decay < 0
  template <ParameterVisitable Model>
  explicit Adam(Model& model, AdamOptions o = {})
      : m_options(validated(std::move(o))), m_core("Adam", model, m_options.amsgrad, m_options.decay) {}

  /// One update of every parameter of `model` from its gradient. Throws std::invalid_argument, before
  /// changing anything, when `model` no longer visits the parameters the optimizer was built for.
  /// Allocates nothing.
  /// \param model the model given to the constructor (or one visiting the same parameters)
  /// \throws std::invalid_argument when `model` no longer visits the parameters the optimizer was built for
  /// \throws std::runtime_error with check_finite, on a non-finite gradient
  template <ParameterVisitable Model>
  void step(Model& model) {
    m_core.step(model, m_options);
  }

  [[nodiscard]] double lr() const noexcept { return m_options.lr; }
  /// \brief Sets the learning rate of the following steps (a schedule's value); throws on lr < 0 or NaN.
  /// \param lr the new learning rate
  /// \throws std::invalid_argument on lr < 0 or NaN
  void set_lr(double lr) {
    detail::check_option(lr >= 0, "Adam", "learning rate", lr, "must be >= 0");
    m_options.lr = lr;
  }
  /// \brief Steps taken so far (the t of the bias corrections is steps() + 1 in the next step).
  /// \returns the number of step() calls
  [[nodiscard]] Index steps() const noexcept { return m_core.steps(); }
  [[nodiscard]] const AdamOptions& options() const noexcept { return m_options; }

 private:
  static AdamOptions validated(AdamOptions o) {
    detail::check_adam_options("Adam", o);
    return o;
  }

  AdamOptions m_options;
  detail::AdamCore<S, false> m_core;
};

template <ParameterVisitable M>
Adam(M&, AdamOptions = {}) -> Adam<typename M::Scalar>;

}  // namespace resblocks
