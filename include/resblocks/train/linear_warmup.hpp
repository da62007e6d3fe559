#pragma once
/// \file
/// \brief LinearWarmup: a linear ramp of the learning rate in front of another schedule, as torch's
/// SequentialLR([LinearLR(start_factor, 1.0, total_iters=warmup_steps), after], milestones=[warmup_steps]).

#include "resblocks/core/types.hpp"
#include "resblocks/train/option_check.hpp"

#include <concepts>
#include <utility>

namespace resblocks {

/// \brief The learning rate ramps linearly from `start_factor * after(0)` towards `after(0)` during
/// `warmup_steps` steps, then follows `after`, restarted:
///
///     lr(t) = after(0) * (start_factor + (1 - start_factor) * t / warmup_steps)   for t < warmup_steps
///     lr(t) = after(t - warmup_steps)                                             for t >= warmup_steps
///
/// This is torch's SequentialLR([LinearLR(opt, start_factor, 1.0, total_iters=warmup_steps), after],
/// milestones=[warmup_steps]) with after's base lr the optimizer's: at the milestone SequentialLR
/// restarts `after` at its epoch 0, so the ramp's last value is after(0) * (1 - (1 - start_factor) /
/// warmup_steps), and the full after(0) is reached at t = warmup_steps, not before (no off-by-one
/// between the two; checked against torch in tests/train/lr_schedule_test.cpp).
/// `Schedule` is any copyable callable `double(Index)` (StepLr, CosineAnnealingLr, a lambda).
template <class Schedule>
requires std::copy_constructible<Schedule> && std::invocable<const Schedule&, Index>
class LinearWarmup {
 public:
  /// \brief Throws std::invalid_argument on warmup_steps < 1 or start_factor outside (0, 1] (as torch's LinearLR).
  /// \param after the schedule that follows the warm-up, restarted at 0
  /// \param warmup_steps length of the ramp
  /// \param start_factor the ramp's first value, as a fraction of after(0)
  /// \throws std::invalid_argument on warmup_steps < 1 or start_factor outside (0, 1]
  LinearWarmup(Schedule after, Index warmup_steps, double start_factor = 0.1)
      : m_after(std::move(after)), m_warmup_steps(warmup_steps), m_start_factor(start_factor) {
    detail::check_option(warmup_steps >= 1, "LinearWarmup", "warmup_steps", static_cast<double>(warmup_steps),
                         "must be >= 1");
    detail::check_option(start_factor > 0 && start_factor <= 1, "LinearWarmup", "start_factor", start_factor,
                         "must be in (0, 1]");
  }

  /// \brief The learning rate at step (or epoch) t >= 0; throws std::invalid_argument on t < 0.
  /// \param t the step or epoch
  /// \returns lr(t)
  /// \throws std::invalid_argument on t < 0
  [[nodiscard]] double operator()(Index t) const {
    detail::check_option(t >= 0, "LinearWarmup", "step", static_cast<double>(t), "must be >= 0");
    if (t >= m_warmup_steps) return static_cast<double>(m_after(t - m_warmup_steps));
    return static_cast<double>(m_after(0)) *
           (m_start_factor + (1 - m_start_factor) * static_cast<double>(t) / static_cast<double>(m_warmup_steps));
  }

  [[nodiscard]] const Schedule& after() const noexcept { return m_after; }
  [[nodiscard]] Index warmup_steps() const noexcept { return m_warmup_steps; }
  [[nodiscard]] double start_factor() const noexcept { return m_start_factor; }

 private:
  Schedule m_after;
  Index m_warmup_steps;
  double m_start_factor;
};

}  // namespace resblocks
