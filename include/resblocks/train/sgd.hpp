#pragma once
/// \file
/// \brief Sgd: stochastic gradient descent with momentum, dampening, Nesterov and weight decay,
/// as torch.optim.SGD (plus SGDW's decoupled weight decay).

#include "resblocks/train/optimizer_state.hpp"
#include "resblocks/train/option_check.hpp"

#include <cmath>
#include <functional>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace resblocks {

/// \brief Settings of Sgd (torch.optim.SGD's, same defaults but lr, which torch requires).
struct SgdOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  double weight_decay = 0;
  /// false: L2, `g += weight_decay * p` (torch.optim.SGD); true: SGDW, `p *= 1 - lr * weight_decay`
  /// before the update, the gradient untouched.
  bool decoupled_weight_decay = false;
  /// Which parameters (by name) get weight decay; empty: all. Asked once, at construction.
  std::function<bool(std::string_view)> decay = {};
  /// The non-finite guard: before a step touches anything, check every gradient and throw
  /// std::runtime_error naming the step and the parameter when one holds a NaN or an infinity.
  bool check_finite = false;
};

/// \brief torch.optim.SGD on the parameters of a model, in place. Per parameter p with gradient g:
///
///     d = g + weight_decay * p                     (L2; skipped when decoupled or not decayed)
///     buf = d  (first step),  buf = momentum * buf + (1 - dampening) * d  (later steps)
///     d = nesterov ? d + momentum * buf : buf      (when momentum != 0)
///     p -= lr * d
///
/// State and arithmetic are in S, torch's float-tensor behaviour (the options are cast to S).
template <class S>
class Sgd {
 public:
  using Scalar = S;

  /// Visits `model` once and allocates the momentum buffers. Throws std::invalid_argument on
  /// lr < 0, momentum < 0, weight_decay < 0, or nesterov without momentum or with dampening (as torch).
  /// \param model the model whose parameters the optimizer updates
  /// \param o learning rate, momentum, dampening, weight decay, nesterov and check_finite
  /// \throws std::invalid_argument on the settings above
  template <ParameterVisitable Model>
  explicit Sgd(Model& model, SgdOptions o = {})
      : m_options(validated(std::move(o))), m_state("Sgd", model, m_options.momentum != 0 ? 1 : 0, m_options.decay) {}

  /// One update of every parameter of `model` from its gradient (which the step leaves unchanged).
  /// Throws std::invalid_argument, before changing anything, when `model` no longer visits the
  /// parameters the optimizer was built for; with check_finite, std::runtime_error (naming the step)
  /// on a non-finite gradient, before changing anything. Allocates nothing.
  /// \param model the model given to the constructor (or one visiting the same parameters)
  /// \throws std::invalid_argument when `model` no longer visits the parameters the optimizer was built for
  /// \throws std::runtime_error with check_finite, on a non-finite gradient
  template <ParameterVisitable Model>
  void step(Model& model) {
    if (m_options.check_finite) m_state.check_finite_gradients(model, m_steps + 1);
    const S lr = static_cast<S>(m_options.lr);
    const S weight_decay = static_cast<S>(m_options.weight_decay);
    const S shrink = static_cast<S>(1 - m_options.lr * m_options.weight_decay);
    const S momentum = static_cast<S>(m_options.momentum);
    const S keep = static_cast<S>(1 - m_options.dampening);
    const bool first = m_steps == 0;
    const bool nesterov = m_options.nesterov;
    const bool decoupled = m_options.decoupled_weight_decay;
    const bool has_momentum = m_options.momentum != 0;
    const bool has_decay = m_options.weight_decay != 0;
    m_state.update(model, [&](const auto& entry, auto slots, auto p, auto g) {
      const bool decays = has_decay && entry.decay;
      if (decays && decoupled) p *= shrink;
      auto apply = [&](const auto& d) {  // d: the gradient after L2 decay, an expression
        if (!has_momentum) {
          p -= lr * d;
          return;
        }
        auto buf = slots[0];  // a view of the momentum over p's range
        if (first)
          buf = d;
        else
          buf = buf * momentum + keep * d;
        if (nesterov)
          p -= lr * (d + momentum * buf);
        else
          p -= lr * buf;
      };
      if (decays && !decoupled)
        apply(g + weight_decay * p);  // element-wise: each p is read before it is written
      else
        apply(g);
    });
    ++m_steps;
  }

  [[nodiscard]] double lr() const noexcept { return m_options.lr; }
  /// \brief Sets the learning rate of the following steps (a schedule's value); throws on lr < 0 or NaN.
  /// \param lr the new learning rate
  /// \throws std::invalid_argument on lr < 0 or NaN
  void set_lr(double lr) {
    detail::check_option(lr >= 0, "Sgd", "learning rate", lr, "must be >= 0");
    m_options.lr = lr;
  }
  /// \brief Steps taken so far.
  /// \returns the number of step() calls
  [[nodiscard]] Index steps() const noexcept { return m_steps; }
  [[nodiscard]] const SgdOptions& options() const noexcept { return m_options; }

 private:
  static SgdOptions validated(SgdOptions o) {
    detail::check_option(o.lr >= 0, "Sgd", "learning rate", o.lr, "must be >= 0");
    detail::check_option(o.momentum >= 0, "Sgd", "momentum", o.momentum, "must be >= 0");
    detail::check_option(o.weight_decay >= 0, "Sgd", "weight_decay", o.weight_decay, "must be >= 0");
    detail::check_option(std::isfinite(o.dampening), "Sgd", "dampening", o.dampening, "must be finite");
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
      throw std::invalid_argument("resblocks::Sgd: Nesterov momentum requires a momentum and zero dampening");
    return o;
  }

  SgdOptions m_options;
  detail::OptimizerState<S> m_state;
  Index m_steps = 0;
};

template <ParameterVisitable M>
Sgd(M&, SgdOptions = {}) -> Sgd<typename M::Scalar>;

}  // namespace resblocks
