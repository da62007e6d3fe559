#pragma once
/// \file
/// \brief CosineAnnealingLr: half a cosine from base_lr down to eta_min over t_max steps, as torch's
/// CosineAnnealingLR (without restarts).

#include "resblocks/core/types.hpp"
#include "resblocks/train/option_check.hpp"

#include <cmath>
#include <numbers>

namespace resblocks {

/// \brief `lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / t_max)) / 2` for 0 <= t <= t_max,
/// torch.optim.lr_scheduler.CosineAnnealingLR's closed form (its step() uses a recursive form, equal
/// up to rounding).
///
/// After t_max this schedule holds eta_min. torch does not: its cosine goes on, back up to base_lr at
/// t = 2 t_max, then down again (period 2 t_max), which is rarely what a training run wants.
class CosineAnnealingLr {
 public:
  /// \brief Throws std::invalid_argument on base_lr < 0, t_max < 1 or eta_min < 0 (or NaN / infinite values).
  /// \param base_lr the learning rate at t = 0
  /// \param t_max steps from base_lr down to eta_min
  /// \param eta_min the final learning rate
  /// \throws std::invalid_argument on base_lr < 0, t_max < 1 or eta_min < 0, or a NaN or infinite rate
  CosineAnnealingLr(double base_lr, Index t_max, double eta_min = 0)
      : m_base_lr(base_lr), m_t_max(t_max), m_eta_min(eta_min) {
    detail::check_option(base_lr >= 0 && std::isfinite(base_lr), "CosineAnnealingLr", "base_lr", base_lr,
                         "must be >= 0 and finite");
    detail::check_option(t_max >= 1, "CosineAnnealingLr", "t_max", static_cast<double>(t_max), "must be >= 1");
    detail::check_option(eta_min >= 0 && std::isfinite(eta_min), "CosineAnnealingLr", "eta_min", eta_min,
                         "must be >= 0 and finite");
  }

  /// \brief The learning rate at step (or epoch) t >= 0 (eta_min for t >= t_max); throws std::invalid_argument on
  /// t < 0.
  /// \param t the step or epoch
  /// \returns lr(t)
  /// \throws std::invalid_argument on t < 0
  [[nodiscard]] double operator()(Index t) const {
    detail::check_option(t >= 0, "CosineAnnealingLr", "step", static_cast<double>(t), "must be >= 0");
    if (t >= m_t_max) return m_eta_min;
    return m_eta_min + (m_base_lr - m_eta_min) *
                           (1 + std::cos(std::numbers::pi * static_cast<double>(t) / static_cast<double>(m_t_max))) / 2;
  }

  [[nodiscard]] double base_lr() const noexcept { return m_base_lr; }
  [[nodiscard]] Index t_max() const noexcept { return m_t_max; }
  [[nodiscard]] double eta_min() const noexcept { return m_eta_min; }

 private:
  double m_base_lr;
  Index m_t_max;
  double m_eta_min;
};

}  // namespace resblocks
