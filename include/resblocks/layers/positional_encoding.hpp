#pragma once
/// \file
/// \brief PositionalEncoding: adds a position vector to every token column, fixed sinusoidal or learned.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// Which position vectors a PositionalEncoding adds.
enum class PositionalEncodingKind {
  sinusoidal,  ///< fixed: PE(t, 2i) = sin(t / 10000^(2i/d)), PE(t, 2i+1) = cos(t / 10000^(2i/d)); no parameters
  learned,     ///< a trained table, parameter `weight` (max_length × d, as nn.Embedding(max_length, d)), N(0, 1)
};

/// \brief `y(:, t + L·b) = x(:, t + L·b) + PE(t, :)ᵀ`: token t of every sequence gets position t's vector.
///
/// Layout as MultiHeadAttention's: rows = d_model, token t of sequence b in column t + L·b, with the
/// sequence length L (<= max_length) set by set_sequence_length(). The table is max_length × d
/// (row t = position t), row-major as torch stores it. The sinusoidal table is the PyTorch
/// tutorial's (`div_term = exp(2i · (−ln 10000 / d))`, computed in double; for odd d the last
/// row index 2i has no cosine partner); it is not a parameter. The learned one is parameter
/// `weight`, whose gradient sums dL/dy over the sequences. dL/dx = dL/dy.
template <class S = float, int D = Dynamic>
class PositionalEncoding : public detail::VisitsParameters<PositionalEncoding<S, D>> {
 public:
  using Scalar = S;
  static constexpr int InFeatures = D;
  static constexpr int OutFeatures = D;
  using Input = Batch<S, D>;
  using Output = Batch<S, D>;
  /// max_length × d, row-major (a single column stays column-major: Eigen's rule).
  using Table = Eigen::Matrix<S, Eigen::Dynamic, D, D == 1 ? Eigen::ColMajor : Eigen::RowMajor>;
  static constexpr std::string_view name = "PositionalEncoding";

  /// \brief Inference buffers of one caller.
  struct Workspace {
    Output y;
  };

  /// \brief Static model dimension: `PositionalEncoding<float, 64> pe(max_length);`.
  /// \param max_length positions in the table, the longest sequence accepted
  /// \param kind sinusoidal (fixed) or learned
  /// \throws std::invalid_argument on max_length < 1
  explicit PositionalEncoding(Index max_length,
                              PositionalEncodingKind kind = PositionalEncodingKind::sinusoidal) requires(D != Dynamic)
      : PositionalEncoding(D, max_length, kind) {}

  /// \brief Positions 0 … max_length-1 of `d_model` features.
  /// \param d_model model dimension d
  /// \param max_length positions in the table, the longest sequence accepted
  /// \param kind sinusoidal (fixed) or learned
  /// \throws std::invalid_argument on d_model or max_length < 1, or a d_model disagreeing with D
  PositionalEncoding(Index d_model, Index max_length, PositionalEncodingKind kind = PositionalEncodingKind::sinusoidal)
      : m_kind(kind) {
    detail::check_features(name, "d_model", D, d_model);
    if (d_model < 1 || max_length < 1)
      throw std::invalid_argument(std::string(name) + ": d_model and max_length must be >= 1, got " +
                                  std::to_string(d_model) + " and " + std::to_string(max_length));
    m_table.setZero(max_length, d_model);
    if (kind == PositionalEncodingKind::learned) {
      m_dL_dtable.setZero(max_length, d_model);
      reset_parameters(default_generator());
    } else {
      const double step = -std::log(10000.0) / static_cast<double>(d_model);
      for (Index t = 0; t < max_length; ++t)
        for (Index i = 0; i < d_model; i += 2) {
          const double angle = static_cast<double>(t) * std::exp(static_cast<double>(i) * step);
          m_table(t, i) = static_cast<S>(std::sin(angle));
          if (i + 1 < d_model) m_table(t, i + 1) = static_cast<S>(std::cos(angle));
        }
    }
  }

  /// \brief Learned: every entry N(0, 1) (nn.Embedding's initialisation); sinusoidal: nothing to draw.
  /// \param g generator the learned table is drawn from
  void reset_parameters(Generator& g) {
    if (m_kind != PositionalEncodingKind::learned) return;
    for (Index t = 0; t < m_table.rows(); ++t)
      for (Index i = 0; i < m_table.cols(); ++i) m_table(t, i) = static_cast<S>(g.normal());
  }

  [[nodiscard]] PositionalEncodingKind kind() const noexcept { return m_kind; }
  [[nodiscard]] Index in_features() const noexcept { return m_table.cols(); }
  [[nodiscard]] Index out_features() const noexcept { return m_table.cols(); }
  [[nodiscard]] Index max_length() const noexcept { return m_table.rows(); }

  /// \brief The table, max_length × d: row t is added to token t (the parameter `weight` when learned).
  /// \returns the table
  Table& table() noexcept { return m_table; }
  const Table& table() const noexcept { return m_table; }
  /// \brief The learned table's gradient (empty for the sinusoidal kind).
  /// \returns the gradient, max_length × d
  const Table& table_grad() const noexcept { return m_dL_dtable; }

  /// \brief Sets the sequence length L, 1 <= L <= max_length: the input's columns are columns / L sequences.
  /// \param length tokens per sequence L
  /// \throws std::invalid_argument unless 1 <= length <= max_length()
  void set_sequence_length(Index length) {
    if (length < 1 || length > max_length())
      throw std::invalid_argument(std::string(name) + ": the sequence length must be in [1, " +
                                  std::to_string(max_length()) + "] (max_length), got " + std::to_string(length));
    m_length = length;
  }
  /// \brief The sequence length; 0 until set_sequence_length() is called.
  /// \returns L, or 0
  [[nodiscard]] Index sequence_length() const noexcept { return m_length; }

  const Output& forward(const Input& x) {
    add_positions(x, m_y);
    m_forward_done = true;
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // the contract: forward takes no temporaries

  /// \brief dL/dx = dL/dy; the learned table's row t gains Σ_b dL/dy(:, t + L·b).
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \returns dL/dx, a copy of dL_dy in a buffer the layer owns
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  const Input& backward(const Output& dL_dy) {
    detail::check_forward_done(name, m_forward_done);
    detail::check_output_gradient(name, m_y.rows(), m_y.cols(), dL_dy);
    if (m_kind == PositionalEncodingKind::learned) {
      const Index l = m_length, sequences = dL_dy.cols() / l;
      detail::parallel_for(l, double(sequences * dL_dy.rows()), [&](Index t0, Index t1) {
        for (Index t = t0; t < t1; ++t)  // each position its own row; sequences summed in order
          for (Index b = 0; b < sequences; ++b) m_dL_dtable.row(t) += dL_dy.col(t + l * b).transpose();
      });
    }
    m_dL_dx.resize(dL_dy.rows(), dL_dy.cols());
    detail::parallel_assign(m_dL_dx, dL_dy);
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    add_positions(x, ws.y);
    return ws.y;
  }

  void zero_grad() {
    if (m_kind == PositionalEncodingKind::learned) detail::parallel_zero(m_dL_dtable);
  }

 private:
  friend detail::VisitsParameters<PositionalEncoding<S, D>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    if (self.m_kind == PositionalEncodingKind::learned)
      f(prefix.child("weight").view(), self.m_table, self.m_dL_dtable);
  }

  /// Checks x against d and L (before any work), then y = x + positions.
  void add_positions(const Input& x, Output& y) const {
    detail::check_input_features(name, in_features(), x);
    if (m_length < 1)
      throw std::logic_error(std::string(name) +
                             ": the sequence length is not set; call set_sequence_length(L) before forward/infer");
    if (x.cols() % m_length != 0)
      throw std::invalid_argument(std::string(name) + ": input is " + detail::shape_string(x.rows(), x.cols()) +
                                  " (features x columns), which is not a whole number of sequences of length " +
                                  std::to_string(m_length));
    y.resize(x.rows(), x.cols());
    detail::parallel_for(x.cols(), double(x.rows()), [&](Index c0, Index c1) {
      for (Index c = c0; c < c1; ++c) y.col(c) = x.col(c) + m_table.row(c % m_length).transpose();
    });
  }

  PositionalEncodingKind m_kind;
  Table m_table;
  Table m_dL_dtable;
  Index m_length = 0;
  bool m_forward_done = false;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
