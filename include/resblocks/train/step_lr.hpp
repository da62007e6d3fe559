#pragma once
/// \file
/// \brief StepLr: the learning rate decayed by gamma every step_size epochs, as torch's StepLR.

#include "resblocks/core/types.hpp"
#include "resblocks/train/option_check.hpp"

#include <cmath>

namespace resblocks {

/// \brief `lr(t) = base_lr * gamma^floor(t / step_size)` for t = 0, 1, ... (torch.optim.lr_scheduler.StepLR's
/// closed form; torch's step() multiplies by gamma repeatedly, equal up to rounding).
class StepLr {
 public:
  /// \brief Throws std::invalid_argument on base_lr < 0, step_size < 1, or gamma < 0 (or NaN / infinite values).
  /// \param base_lr the learning rate at t = 0
  /// \param step_size steps between two decays
  /// \param gamma the factor of each decay
  /// \throws std::invalid_argument on base_lr < 0, step_size < 1 or gamma < 0, or a NaN or infinite value
  StepLr(double base_lr, Index step_size, double gamma = 0.1)
      : m_base_lr(base_lr), m_step_size(step_size), m_gamma(gamma) {
    detail::check_option(base_lr >= 0 && std::isfinite(base_lr), "StepLr", "base_lr", base_lr,
                         "must be >= 0 and finite");
    detail::check_option(step_size >= 1, "StepLr", "step_size", static_cast<double>(step_size), "must be >= 1");
    detail::check_option(gamma >= 0 && std::isfinite(gamma), "StepLr", "gamma", gamma, "must be >= 0 and finite");
  }

  /// \brief The learning rate at step (or epoch) t >= 0; throws std::invalid_argument on t < 0.
  /// \param t the step or epoch
  /// \returns lr(t)
  /// \throws std::invalid_argument on t < 0
  [[nodiscard]] double operator()(Index t) const {
    detail::check_option(t >= 0, "StepLr", "step", static_cast<double>(t), "must be >= 0");
    const Index drops = t / m_step_size;  // whole periods: integer division on purpose
    return m_base_lr * std::pow(m_gamma, static_cast<double>(drops));
  }

  [[nodiscard]] double base_lr() const noexcept { return m_base_lr; }
  [[nodiscard]] Index step_size() const noexcept { return m_step_size; }
  [[nodiscard]] double gamma() const noexcept { return m_gamma; }

 private:
  double m_base_lr;
  Index m_step_size;
  double m_gamma;
};

}  // namespace resblocks
