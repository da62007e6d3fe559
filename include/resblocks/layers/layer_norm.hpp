#pragma once
/// \file
/// \brief LayerNorm: normalisation over the features of each column (each sample or token).

#include "resblocks/core/block_fn.hpp"
#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/fused_layer.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief Settings of LayerNorm (PyTorch's defaults).
struct LayerNormOptions {
  double eps = 1e-5;  ///< added to the variance before the square root
};

/// \brief Layer normalisation as PyTorch's `nn.LayerNorm(features)` (elementwise_affine=True): each
/// column is normalised over its `features` rows, `y = γ ⊙ (x − μ)/√(σ² + ε) + β`, with the column's
/// mean μ and biased variance σ². Parameters `weight` (γ, ones) and `bias` (β, zeros).
///
/// Statistics are two passes per column in `S`: the mean, then the mean squared deviation from it,
/// both with Eigen's vectorised reductions (several packet accumulators, so each sums only
/// features/16 or so terms in sequence). The second pass sums centred terms, so nothing cancels
/// (unlike E[x²] − E[x]²): the variance keeps full relative accuracy whatever the mean, and x̂ is off
/// by about the rounding of μ, i.e. an ulp of the mean over σ — as in PyTorch's own float LayerNorm.
/// Summing in double would not vectorise (Eigen 3.4 has no packet float→double cast on AVX) and
/// would cost several times as much for accuracy the float inputs do not carry. 1/σ is formed in double.
///
/// Forward caches x̂ = (x − μ)/σ and 1/σ per column; backward needs nothing else:
/// dL/dx = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) with g = γ ⊙ dL/dy, per column. Columns run in
/// parallel; γ's and β's gradients are summed over fixed column partitions merged in order (in
/// double), so the bits do not depend on the thread count.
template <class S = float, int Features = Dynamic>
class LayerNorm : public FusedLayer<LayerNorm<S, Features>, S, Features, Features>,
                  public detail::VisitsParameters<LayerNorm<S, Features>> {
  using Base = FusedLayer<LayerNorm<S, Features>, S, Features, Features>;
  friend Base;

 public:
  using typename Base::Input;
  using typename Base::Output;
  using Vector = detail::ParamVector<S, Features>;
  static constexpr std::string_view name = "LayerNorm";

  /// \brief Inference buffers of one caller.
  struct Workspace : detail::FusedWorkspace<S, Features> {};

  /// \brief Static feature count: `LayerNorm<float, 256> ln;`.
  /// \param options eps
  /// \throws std::invalid_argument unless eps > 0
  explicit LayerNorm(LayerNormOptions options = {}) requires(Features != Dynamic) : LayerNorm(Features, options) {}

  /// \brief Run-time feature count (must agree with the static one, where given).
  /// \param features the normalised rows
  /// \param options eps
  /// \throws std::invalid_argument on features < 1 or disagreeing with the static count, or eps <= 0
  explicit LayerNorm(Index features, LayerNormOptions options = {}) : m_opt(options) {
    detail::check_features(name, "features", Features, features);
    if (features < 1) throw std::invalid_argument("LayerNorm: features must be >= 1, got 0");
    if (!(options.eps > 0))
      throw std::invalid_argument("LayerNorm: eps must be > 0, got " + std::to_string(options.eps));
    m_weight.setOnes(features);
    m_bias.setZero(features);
    m_dL_dweight.setZero(features);
    m_dL_dbias.setZero(features);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_weight.size(); }
  [[nodiscard]] Index out_features() const noexcept { return m_weight.size(); }
  [[nodiscard]] const LayerNormOptions& options() const noexcept { return m_opt; }

  Vector& weight() noexcept { return m_weight; }
  const Vector& weight() const noexcept { return m_weight; }
  Vector& bias() noexcept { return m_bias; }
  const Vector& bias() const noexcept { return m_bias; }
  const Vector& weight_grad() const noexcept { return m_dL_dweight; }
  const Vector& bias_grad() const noexcept { return m_dL_dbias; }
  /// \brief The last forward's x̂ = (x − μ)/σ (features × columns) and 1/σ per column.
  /// \returns x̂ (inv_std() returns 1/σ)
  const Output& normalized() const noexcept { return m_xhat; }
  const Eigen::Matrix<S, Eigen::Dynamic, 1>& inv_std() const noexcept { return m_inv_std; }

  void zero_grad() {
    m_dL_dweight.setZero();
    m_dL_dbias.setZero();
  }

 private:
  friend detail::VisitsParameters<LayerNorm<S, Features>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    f(prefix.child("weight").view(), self.m_weight, self.m_dL_dweight);
    f(prefix.child("bias").view(), self.m_bias, self.m_dL_dbias);
  }

  /// Columns per partition of the parameter-gradient sums: fixed, so the bits do not depend on threads.
  static constexpr Index k_part_columns = 32;

  /// Columns per epilogue call: about 32 KB of data, so the epilogue finds its block in cache.
  [[nodiscard]] static Index column_block(Index rows) noexcept {
    return std::max<Index>(1, (Index(1) << 13) / std::max<Index>(rows, 1));
  }

  // The kernels FusedLayer runs (see there).
  Index forward_begin(const Input& x) {
    detail::check_input_features(name, in_features(), x);
    m_xhat.resize(x.rows(), x.cols());
    m_inv_std.resize(x.cols());
    return x.cols();
  }
  void forward_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue) {
    normalize(x, m_xhat, m_inv_std.data(), y, skip, epilogue);
    m_forward_done = true;
  }
  Index infer_begin(const Input& x, Workspace&) const {
    detail::check_input_features(name, in_features(), x);
    return x.cols();
  }
  void infer_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue, Workspace&) const {
    normalize(x, y, nullptr, y, skip, epilogue);  // x̂ goes into y, then y = γ x̂ + β (+ skip) in place
  }
  Index backward_begin(const Output& dL_dy) const {
    detail::check_forward_done(name, m_forward_done);
    detail::check_output_gradient(name, m_xhat.rows(), m_xhat.cols(), dL_dy);
    return m_xhat.cols();
  }
  void backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, detail::BlockFn epilogue);

  void normalize(const Input& x, Output& xhat, S* inv_std, Output& y, const Output* skip,
                 detail::BlockFn epilogue) const;

  LayerNormOptions m_opt;
  Vector m_weight, m_bias, m_dL_dweight, m_dL_dbias;
  Output m_xhat;                                  ///< x̂ of the last forward
  Eigen::Matrix<S, Eigen::Dynamic, 1> m_inv_std;  ///< 1/σ per column of the last forward
  Eigen::Matrix<S, Features, Eigen::Dynamic> m_parts;
  bool m_forward_done = false;
};

/// Per column j: μ, σ, xhat_j = (x_j − μ)/σ (and inv_std[j] = 1/σ when given), then
/// y_j = γ ⊙ xhat_j + β (+ skip_j) read back from xhat, which may be y itself (inference):
/// forward and infer run this same code, so their results agree bit for bit.
template <class S, int Features>
void LayerNorm<S, Features>::normalize(const Input& x, Output& xhat, S* inv_std, Output& y, const Output* skip,
                                       detail::BlockFn epilogue) const {
  const Index rows = x.rows(), block = column_block(rows);
  const S count = S(rows);
  detail::parallel_for(x.cols(), double(rows) * 8.0, [&](Index c0, Index c1) {
    for (Index b = c0; b < c1; b += block) {
      const Index e = std::min(b + block, c1);
      for (Index j = b; j < e; ++j) {
        const auto xj = x.col(j).array();
        const S mean = xj.sum() / count;
        const S var = (xj - mean).square().sum() / count;
        const S rstd = S(1.0 / std::sqrt(double(var) + m_opt.eps));
        if (inv_std) inv_std[j] = rstd;
        xhat.col(j).array() = (xj - mean) * rstd;
        if (skip)
          y.col(j).array() = xhat.col(j).array() * m_weight.array() + m_bias.array() + skip->col(j).array();
        else
          y.col(j).array() = xhat.col(j).array() * m_weight.array() + m_bias.array();
      }
      epilogue(0, rows, b, e - b);
    }
  });
}

/// dL/dx per column (+ skip_grad); γ's and β's gradients over fixed partitions merged in order.
template <class S, int Features>
void LayerNorm<S, Features>::backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
                                             detail::BlockFn epilogue) {
  const Index rows = m_xhat.rows(), cols = m_xhat.cols();
  const Index parts = (cols + k_part_columns - 1) / k_part_columns;
  m_parts.resize(rows, 2 * parts);
  const S count = S(rows);
  detail::parallel_for(parts, double(k_part_columns) * double(rows) * 12.0, [&](Index p0, Index p1) {
    for (Index p = p0; p < p1; ++p) {
      const Index c0 = p * k_part_columns, c1 = std::min(cols, c0 + k_part_columns);
      auto sum_dy = m_parts.col(2 * p).array();           // Σ dy over the partition's columns
      auto sum_dy_xhat = m_parts.col(2 * p + 1).array();  // Σ dy ⊙ x̂
      sum_dy.setZero();
      sum_dy_xhat.setZero();
      for (Index j = c0; j < c1; ++j) {
        const auto dy = dL_dy.col(j).array();
        const auto xh = m_xhat.col(j).array();
        const auto g = dy * m_weight.array();
        const S mean_g = g.sum() / count, mean_g_xhat = (g * xh).sum() / count;
        if (skip_grad)
          dL_dx.col(j).array() = m_inv_std(j) * ((g - mean_g) - xh * mean_g_xhat) + skip_grad->col(j).array();
        else
          dL_dx.col(j).array() = m_inv_std(j) * ((g - mean_g) - xh * mean_g_xhat);
        sum_dy += dy;
        sum_dy_xhat += dy * xh;
      }
      epilogue(0, rows, c0, c1 - c0);
    }
  });
  for (Index r = 0; r < rows; ++r) {  // partitions merged in order, in double
    double db = 0, dw = 0;
    for (Index p = 0; p < parts; ++p) {
      db += double(m_parts(r, 2 * p));
      dw += double(m_parts(r, 2 * p + 1));
    }
    m_dL_dbias(r) += S(db);
    m_dL_dweight(r) += S(dw);
  }
}

// Compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
RESBLOCKS_EXTERN_KERNEL(class LayerNorm<float>)
RESBLOCKS_EXTERN_KERNEL(class LayerNorm<double>)

}  // namespace resblocks
