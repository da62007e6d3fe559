#pragma once
/// \file
/// \brief MseLoss: the mean (or sum) of squared differences between a prediction and a target.

#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/train/reduction.hpp"

#include <Eigen/Core>

#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief Squared error `Σ (y - target)²` over every element, divided by the element count for
/// Reduction::mean, as `torch.nn.functional.mse_loss`. backward() gives dL/dy = 2 (y - target) / count
/// (2 (y - target) for Reduction::sum).
///
/// The sum is accumulated in double, per column and then over columns in a fixed order (the same
/// result for every thread count). NaN inputs give a NaN loss. Buffers are reused across calls of
/// the same shape.
template <class S = float, int Rows = Dynamic>
class MseLoss {
 public:
  using Scalar = S;
  using Input = Batch<S, Rows>;
  static constexpr std::string_view name = "MseLoss";

  explicit MseLoss(Reduction reduction = Reduction::mean) : m_reduction(reduction) {}

  [[nodiscard]] Reduction reduction() const noexcept { return m_reduction; }

  /// \brief The loss of `y` against `target`, which must have y's shape (std::invalid_argument otherwise).
  /// \param y the prediction
  /// \param target the expected values
  /// \returns the mean (or sum) of the squared differences
  /// \throws std::invalid_argument when the shapes differ or are empty
  S forward(const Input& y, const Input& target) {
    if (y.rows() != target.rows() || y.cols() != target.cols())
      throw std::invalid_argument("MseLoss: prediction is " + detail::shape_string(y.rows(), y.cols()) +
                                  " but target is " + detail::shape_string(target.rows(), target.cols()));
    if (y.size() == 0)
      throw std::invalid_argument("MseLoss: prediction and target are " + detail::shape_string(y.rows(), y.cols()) +
                                  " (empty)");
    const Index rows = y.rows(), n = y.cols();
    m_diff.resize(rows, n);
    m_column_loss.resize(n);
    detail::parallel_for(n, 3.0 * double(rows), [&](Index j0, Index j1) {
      for (Index j = j0; j < j1; ++j) {
        double sum = 0;
        for (Index r = 0; r < rows; ++r) {
          const S d = y(r, j) - target(r, j);
          m_diff(r, j) = d;
          sum += double(d) * double(d);
        }
        m_column_loss(j) = sum;
      }
    });
    double total = 0;
    for (Index j = 0; j < n; ++j) total += m_column_loss(j);
    m_loss = m_reduction == Reduction::mean ? total / double(y.size()) : total;
    m_forward_done = true;
    return S(m_loss);
  }

  /// \brief dL/dy of the last forward.
  /// \returns dL/dy, of y's shape, in a buffer the loss owns
  /// \throws std::logic_error before any forward
  const Input& backward() {
    detail::check_forward_done(name, m_forward_done);
    const double scale = m_reduction == Reduction::mean ? 2.0 / double(m_diff.size()) : 2.0;
    m_dL_dy.resize(m_diff.rows(), m_diff.cols());
    detail::parallel_assign(m_dL_dy, m_diff * S(scale));
    return m_dL_dy;
  }

  /// \brief The last forward's loss, in double.
  /// \returns the loss
  [[nodiscard]] double loss() const noexcept { return m_loss; }

 private:
  Reduction m_reduction;
  Input m_diff;
  Input m_dL_dy;
  Eigen::VectorXd m_column_loss;
  double m_loss = 0;
  bool m_forward_done = false;
};

}  // namespace resblocks
