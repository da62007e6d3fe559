#pragma once
/// \file
/// \brief Dropout: in training mode zeroes each element with probability p and scales the others by
/// 1/(1 − p) (PyTorch's inverted dropout); in eval mode, and in infer, passes its input through.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief `torch.nn.Dropout(p)`: y = x ⊙ m / (1 − p), m_i ~ Bernoulli(1 − p), drawn anew by every
/// training-mode forward; backward multiplies by the same mask. Eval mode (`set_training(false)`,
/// or `eval(net)`) and `infer` are the identity, without a copy.
///
/// The mask is drawn from default_generator() as in PyTorch (so `manual_seed` makes a run
/// reproducible; constructing a Dropout draws nothing), or from a Generator of your own given to
/// set_generator(). Element (r, c) takes draw r + rows·c of a forward (column-major); a forward that
/// does not drop (eval mode, p = 0) draws nothing. The mask buffer is sized on the first forward and
/// reused: no allocation per step. PyTorch's random stream is not reproduced (only its distribution).
template <class S = float, int N = Dynamic>
class Dropout {
 public:
  using Scalar = S;
  static constexpr int InFeatures = N;
  static constexpr int OutFeatures = N;
  using Input = Batch<S, N>;
  using Output = Batch<S, N>;
  static constexpr std::string_view name = "Dropout";
  struct Workspace {};

  /// \brief Drop probability `p` in [0, 1]; `features` rows (any when Dynamic and left at -1).
  /// \param p probability of zeroing each element in training mode
  /// \param features rows of the input and output
  /// \throws std::invalid_argument on p outside [0, 1], or a static N given another `features`
  explicit Dropout(double p = 0.5, Index features = N) : m_p(p), m_features(features) {
    if (!(p >= 0.0 && p <= 1.0))
      throw std::invalid_argument(std::string(name) + ": the probability p must be in [0, 1], got " +
                                  std::to_string(p));
    if (N != Dynamic) detail::check_features(name, "features", N, features);
  }

  [[nodiscard]] double p() const noexcept { return m_p; }
  [[nodiscard]] Index in_features() const noexcept { return m_features; }
  [[nodiscard]] Index out_features() const noexcept { return m_features; }

  /// \brief Training mode (the default) drops; eval mode passes through.
  /// \param training true for training mode, false for evaluation
  void set_training(bool training) noexcept { m_training = training; }
  [[nodiscard]] bool training() const noexcept { return m_training; }
  /// \brief Draws the masks from `g` (which must outlive the layer's forwards) instead of default_generator().
  /// \param g the generator the masks are drawn from
  void set_generator(Generator& g) noexcept { m_generator = &g; }

  const Output& forward(const Input& x) {
    detail::check_input_features(name, m_features, x);
    m_dropping = m_training && m_p > 0.0;
    if (!m_dropping) return x;
    m_mask.resize(x.rows(), x.cols());
    const S scale = m_p < 1.0 ? S(1.0 / (1.0 - m_p)) : S(0);
    S* mask = m_mask.data();
    for (Index i = 0, size = m_mask.size(); i < size; ++i) mask[i] = m_generator->uniform01() >= m_p ? scale : S(0);
    m_y.resize(x.rows(), x.cols());
    detail::parallel_assign(m_y, x.cwiseProduct(m_mask));
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward may return its input

  /// \brief dL/dx = dL/dy ⊙ the last forward's mask (dL/dy itself when it did not drop).
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \returns dL/dx: a buffer the layer owns, or dL_dy itself
  /// \throws std::invalid_argument when the last forward dropped and dL_dy's shape is not its output's
  const Input& backward(const Output& dL_dy) {
    if (!m_dropping) return dL_dy;
    detail::check_output_gradient(name, m_mask.rows(), m_mask.cols(), dL_dy);
    m_dL_dx.resize(dL_dy.rows(), dL_dy.cols());
    detail::parallel_assign(m_dL_dx, dL_dy.cwiseProduct(m_mask));
    return m_dL_dx;
  }

  /// \brief The identity (inference never drops; const and re-entrant).
  /// \param x input batch
  /// \returns x itself
  /// \throws std::invalid_argument when x has the wrong feature count
  const Output& infer(const Input& x, Workspace&) const {
    detail::check_input_features(name, m_features, x);
    return x;
  }

  /// \brief The mask of the last training-mode forward: 0 or 1/(1 − p) per element.
  /// \returns the mask, of the input's shape (empty before the first forward that dropped)
  [[nodiscard]] const Output& mask() const noexcept { return m_mask; }

  void zero_grad() noexcept {}
  template <class F>
  void for_each_parameter(F&&, const ParameterName& = {}) const noexcept {}

 private:
  double m_p;
  Index m_features;
  Generator* m_generator = &default_generator();
  bool m_training = true;
  bool m_dropping = false;
  Output m_mask, m_y, m_dL_dx;
};

}  // namespace resblocks
