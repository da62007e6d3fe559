#pragma once
/// \file
/// \brief Linear: y = W x + b, one GEMM over the whole batch (a 1×1 convolution on image columns).

#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/fused_layer.hpp"
#include "resblocks/core/gemm.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief Fully connected layer `y = W x + b` (bias optional), as PyTorch's `nn.Linear`:
/// `weight` is Out×In, `bias` has Out entries, both initialised U(-1/√In, 1/√In).
template <class S = float, int In = Dynamic, int Out = Dynamic>
class Linear : public FusedLayer<Linear<S, In, Out>, S, In, Out>, public detail::VisitsParameters<Linear<S, In, Out>> {
  using Base = FusedLayer<Linear<S, In, Out>, S, In, Out>;
  friend Base;

 public:
  using typename Base::Input;
  using typename Base::Output;
  using Weight = detail::ParamMatrix<S, Out, In>;
  using Bias = detail::ParamVector<S, Out>;
  static constexpr std::string_view name = "Linear";

  /// \brief Inference buffers of one caller.
  struct Workspace : detail::FusedWorkspace<S, Out> {};

  /// \brief Static sizes: `Linear<float, 32, 64> fc;` or `fc(false)` for no bias.
  /// \param bias whether the layer has a bias b
  explicit Linear(bool bias = true) requires(In != Dynamic && Out != Dynamic) : Linear(In, Out, bias) {}

  /// \brief Run-time sizes (must agree with static ones, where given).
  /// \param in_features columns of W
  /// \param out_features rows of W
  /// \param bias whether the layer has a bias b
  /// \throws std::invalid_argument on a size that is negative or disagrees with a static one
  Linear(Index in_features, Index out_features, bool bias = true) : m_has_bias(bias) {
    detail::check_features(name, "in_features", In, in_features);
    detail::check_features(name, "out_features", Out, out_features);
    m_weight.setZero(out_features, in_features);
    m_dL_dweight.setZero(out_features, in_features);
    if (m_has_bias) {
      m_bias.setZero(out_features);
      m_dL_dbias.setZero(out_features);
    }
    reset_parameters(default_generator());
  }

  /// \brief PyTorch's default initialisation: W and b uniform in ±1/√in_features.
  /// \param g generator W and b are drawn from
  void reset_parameters(Generator& g) {
    const double bound = in_features() > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features())) : 0.0;
    fill_uniform(m_weight, bound, g);
    if (m_has_bias) fill_uniform(m_bias, bound, g);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_weight.cols(); }
  [[nodiscard]] Index out_features() const noexcept { return m_weight.rows(); }
  [[nodiscard]] bool has_bias() const noexcept { return m_has_bias; }

  Weight& weight() noexcept { return m_weight; }
  const Weight& weight() const noexcept { return m_weight; }
  Bias& bias() noexcept { return m_bias; }
  const Bias& bias() const noexcept { return m_bias; }
  const Weight& weight_grad() const noexcept { return m_dL_dweight; }
  const Bias& bias_grad() const noexcept { return m_dL_dbias; }

  void zero_grad() {
    detail::parallel_zero(m_dL_dweight);
    if (m_has_bias) m_dL_dbias.setZero();
  }

 private:
  friend detail::VisitsParameters<Linear<S, In, Out>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    f(prefix.child("weight").view(), self.m_weight, self.m_dL_dweight);
    if (self.m_has_bias) f(prefix.child("bias").view(), self.m_bias, self.m_dL_dbias);
  }

  // The kernels FusedLayer runs (see there).
  Index forward_begin(const Input& x) const {
    detail::check_input_features(name, in_features(), x);
    return x.cols();
  }
  void forward_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue) const {
    compute(x, y, skip, epilogue);
  }
  Index infer_begin(const Input& x, Workspace&) const { return forward_begin(x); }
  void infer_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue, Workspace&) const {
    compute(x, y, skip, epilogue);
  }
  Index backward_begin(const Output& dL_dy) const;
  void backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, detail::BlockFn epilogue);

  void compute(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue) const;

  Weight m_weight;
  Bias m_bias;
  Weight m_dL_dweight;
  Bias m_dL_dbias;
  bool m_has_bias;
};

/// y = skip + b + W x: each thread writes skip + b into its block of y, then accumulates W x on it.
template <class S, int In, int Out>
void Linear<S, In, Out>::compute(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue) const {
  detail::gemm<false, false>(
      y, m_weight, x,
      [&](Index r0, Index rows, Index c0, Index cols) {
        auto block = y.block(r0, c0, rows, cols);
        if (skip && m_has_bias)
          block = skip->block(r0, c0, rows, cols).colwise() + m_bias.segment(r0, rows);
        else if (skip)
          block = skip->block(r0, c0, rows, cols);
        else if (m_has_bias)
          block.colwise() = m_bias.segment(r0, rows);
        else
          block.setZero();
      },
      epilogue);
}

template <class S, int In, int Out>
Index Linear<S, In, Out>::backward_begin(const Output& dL_dy) const {
  const Input& x = this->cached_input();
  detail::check_output_gradient(name, out_features(), x.cols(), dL_dy);
  return x.cols();
}

/// dL/dW += dL_dy xᵀ (the thread owning column 0 of a row block adds that block's bias gradient);
/// dL_dx = skip_grad + Wᵀ dL_dy, skip_grad initialising the GEMM's accumulator.
template <class S, int In, int Out>
void Linear<S, In, Out>::backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
                                         detail::BlockFn epilogue) {
  const Input& x = this->cached_input();
  detail::gemm<false, true>(m_dL_dweight, dL_dy, x, [&](Index r0, Index rows, Index c0, Index) {
    // (An empty batch adds nothing, and its empty block would offset a null pointer.)
    if (m_has_bias && c0 == 0 && dL_dy.cols() > 0)
      m_dL_dbias.segment(r0, rows) += dL_dy.middleRows(r0, rows).rowwise().sum();
  });
  detail::gemm<true, false>(
      dL_dx, m_weight, dL_dy,
      [&](Index r0, Index rows, Index c0, Index cols) {
        if (skip_grad)
          dL_dx.block(r0, c0, rows, cols) = skip_grad->block(r0, c0, rows, cols);
        else
          dL_dx.block(r0, c0, rows, cols).setZero();
      },
      epilogue);
}

// Compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
RESBLOCKS_EXTERN_KERNEL(class Linear<float>)
RESBLOCKS_EXTERN_KERNEL(class Linear<double>)

}  // namespace resblocks
