#pragma once
// ProgressBar: one self-overwriting terminal line per epoch (batch, loss, accuracy, images/s, ETA).
#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace examples {

/// \brief Draws `[=====>    ] 120/468  loss 0.4312  acc 0.842  1630 img/s  ETA 0:21` on stderr,
/// redrawn at most 10 times a second, only when stderr is a terminal (logs stay clean).
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled = isatty(STDERR_FILENO) != 0) : m_enabled(enabled) {}

  void start(std::string label, long total_batches) {
    m_label = std::move(label);
    m_total = total_batches;
    m_start = m_last = Clock::now();
  }

  /// After batch `done` (1-based) of the epoch: running mean loss and accuracy, images so far.
  void update(long done, double loss, double accuracy, long images) {
    if (!m_enabled) return;
    const auto now = Clock::now();
    if (done < m_total && now - m_last < std::chrono::milliseconds(100)) return;
    m_last = now;
    const double elapsed = std::chrono::duration<double>(now - m_start).count();
    const double rate = elapsed > 0 ? images / elapsed : 0;
    const long eta = done > 0 ? static_cast<long>(elapsed * (m_total - done) / done + 0.5) : 0;
    constexpr int width = 28;
    const int filled = m_total > 0 ? static_cast<int>(width * done / m_total) : width;
    std::string bar(width, ' ');
    for (int i = 0; i < filled; ++i) bar[i] = '=';
    if (filled < width) bar[filled] = '>';
    std::fprintf(stderr, "\r%s [%s] %ld/%ld  loss %.4f  acc %.3f  %.0f img/s  ETA %ld:%02ld\033[K", m_label.c_str(),
                 bar.c_str(), done, m_total, loss, accuracy, rate, eta / 60, eta % 60);
    std::fflush(stderr);
  }

  /// Removes the bar (the caller then prints the epoch's summary line).
  void clear() {
    if (!m_enabled) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool m_enabled;
  std::string m_label;
  long m_total = 0;
  Clock::time_point m_start, m_last;
};

}  // namespace examples
