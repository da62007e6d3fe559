#pragma once
/// \file
/// \brief The update shared by Adam and AdamW (torch.optim.Adam / AdamW's single-tensor code).

#include "resblocks/train/optimizer_state.hpp"
#include "resblocks/train/option_check.hpp"

#include <cmath>
#include <string_view>

namespace resblocks::detail {

/// Throws std::invalid_argument on the values torch.optim.Adam / AdamW reject (and NaN):
/// lr < 0, eps < 0, betas outside [0, 1), weight_decay < 0.
template <class Options>
void check_adam_options(std::string_view who, const Options& o) {
  check_option(o.lr >= 0, who, "learning rate", o.lr, "must be >= 0");
  check_option(o.eps >= 0, who, "eps", o.eps, "must be >= 0");
  check_option(o.beta1 >= 0 && o.beta1 < 1, who, "beta1", o.beta1, "must be in [0, 1)");
  check_option(o.beta2 >= 0 && o.beta2 < 1, who, "beta2", o.beta2, "must be in [0, 1)");
  check_option(o.weight_decay >= 0, who, "weight_decay", o.weight_decay, "must be >= 0");
}

/// \brief Adam's moments and update, in torch's order of operations. Per parameter p, gradient g,
/// at step t = 1, 2, ...:
///
///     p *= 1 - lr * weight_decay            (Decoupled, AdamW)   |  g += weight_decay * p   (Adam, L2)
///     m = beta1 * m + (1 - beta1) * g
///     v = beta2 * v + (1 - beta2) * g * g
///     v_max = max(v_max, v)                 (amsgrad; the denominator then uses v_max)
///     p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
///
/// The bias corrections and step size are computed in double (Python floats in torch), then
/// everything is cast to S; moments and arithmetic are in S.
template <class S, bool Decoupled>
class AdamCore {
 public:
  /// Allocates m and v (and v_max with amsgrad) for every parameter of `model`.
  template <ParameterVisitable Model>
  AdamCore(std::string_view who, Model& model, bool amsgrad, const DecayPredicate& decay)
      : m_state(who, model, amsgrad ? 3 : 2, decay) {}

  /// One step with the settings `o` (AdamOptions or AdamWOptions).
  template <ParameterVisitable Model, class Options>
  void step(Model& model, const Options& o) {
    if (o.check_finite) m_state.check_finite_gradients(model, m_steps + 1);
    const double t = static_cast<double>(m_steps + 1);
    const double bias_correction1 = 1 - std::pow(o.beta1, t);
    const double bias_correction2 = 1 - std::pow(o.beta2, t);
    const S step_size = static_cast<S>(o.lr / bias_correction1);
    const S bias_correction2_sqrt = static_cast<S>(std::sqrt(bias_correction2));
    const S beta1 = static_cast<S>(o.beta1);
    const S beta2 = static_cast<S>(o.beta2);
    const S one_minus_beta1 = static_cast<S>(1 - o.beta1);
    const S one_minus_beta2 = static_cast<S>(1 - o.beta2);
    const S eps = static_cast<S>(o.eps);
    const S weight_decay = static_cast<S>(o.weight_decay);
    const S shrink = static_cast<S>(1 - o.lr * o.weight_decay);
    const bool has_decay = o.weight_decay != 0;
    const bool amsgrad = o.amsgrad;
    m_state.update(model, [&](const auto& entry, auto slots, auto p, auto g) {
      const bool decays = has_decay && entry.decay;
      if (Decoupled && decays) p *= shrink;
      auto m = slots[0];  // views of the moments over p's range
      auto v = slots[1];
      auto apply = [&](const auto& grad) {  // grad: an expression, read before p changes
        m = m * beta1 + one_minus_beta1 * grad;
        v = v * beta2 + one_minus_beta2 * grad * grad;
        if (amsgrad) {
          auto v_max = slots[2];
          v_max = v_max.max(v);
          p -= step_size * m / (v_max.sqrt() / bias_correction2_sqrt + eps);
        } else {
          p -= step_size * m / (v.sqrt() / bias_correction2_sqrt + eps);
        }
      };
      if (!Decoupled && decays)
        apply(g + weight_decay * p);
      else
        apply(g);
    });
    ++m_steps;
  }

  [[nodiscard]] Index steps() const noexcept { return m_steps; }

 private:
  OptimizerState<S> m_state;
  Index m_steps = 0;
};

}  // namespace resblocks::detail
