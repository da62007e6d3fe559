#pragma once
/// \file
/// \brief Linear: y = W x + b, one GEMM over the whole batch (a 1×1 convolution on image columns).

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/gemm.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/types.hpp"

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief Fully connected layer `y = W x + b` (bias optional), as PyTorch's `nn.Linear`:
/// `weight` is Out×In, `bias` has Out entries, both initialised U(-1/√In, 1/√In).
template <class S = float, int In = Dynamic, int Out = Dynamic>
class Linear {
 public:
  using Scalar = S;
  static constexpr int InFeatures = In;
  static constexpr int OutFeatures = Out;
  using Input = Batch<S, In>;
  using Output = Batch<S, Out>;
  using Weight = detail::ParamMatrix<S, Out, In>;
  using Bias = detail::ParamVector<S, Out>;
  static constexpr std::string_view name = "Linear";
  static constexpr bool has_epilogue_hooks = true;  ///< offers forward_then / backward_then / infer_then

  /// \brief Inference buffers of one caller.
  struct Workspace {
    Output y;
  };

  /// Static sizes: `Linear<float, 32, 64> fc;` or `fc(false)` for no bias.
  explicit Linear(bool bias = true)
    requires(In != Dynamic && Out != Dynamic)
      : Linear(In, Out, bias) {}

  /// Run-time sizes (must agree with static ones, where given).
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

  /// PyTorch's default initialisation: W and b uniform in ±1/√in_features.
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

  const Output& forward(const Input& x) {
    forward_add(x, m_y, Output::Zero(out_features(), x.cols()));
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// forward(x), then `epilogue(y, r0, rows, c0, cols)` on each finished block of y inside the
  /// GEMM's parallel region (Sequential uses it to apply a following activation while in cache).
  /// `prepare(y)` runs first, once, after y is sized.
  template <class Prepare, class Epilogue>
  const Output& forward_then(const Input& x, const Prepare& prepare, const Epilogue& epilogue) {
    detail::check_input_features(name, in_features(), x);
    m_x = &x;
    compute(x, m_y, Output::Zero(out_features(), x.cols()), prepare, epilogue);
    return m_y;
  }

  /// infer(x, ws) with the hooks of forward_then.
  template <class Prepare, class Epilogue>
  const Output& infer_then(const Input& x, Workspace& ws, const Prepare& prepare, const Epilogue& epilogue) const {
    detail::check_input_features(name, in_features(), x);
    compute(x, ws.y, Output::Zero(out_features(), x.cols()), prepare, epilogue);
    return ws.y;
  }

  /// y = skip + W x + b: the skip initialises the GEMM's accumulator.
  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    detail::check_input_features(name, in_features(), x);
    m_x = &x;
    compute(x, y, skip);
  }

  const Input& backward(const Output& dL_dy) {
    backward_into(dL_dy, m_dL_dx, nullptr_skip{});
    return m_dL_dx;
  }

  /// backward(dL_dy), then `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// (Sequential applies a preceding activation's backward there); `prepare(dL_dx)` runs first.
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    backward_into(dL_dy, m_dL_dx, nullptr_skip{}, prepare, epilogue);
    return m_dL_dx;
  }

  /// dL_dx = skip_grad + Wᵀ dL_dy (skip_grad initialises the GEMM's accumulator).
  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    backward_into(dL_dy, dL_dx, skip_grad);
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    infer_add(x, ws.y, Output::Zero(out_features(), x.cols()), ws);
    return ws.y;
  }

  template <class Skip>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace&) const {
    detail::check_input_features(name, in_features(), x);
    compute(x, y, skip);
  }

  void zero_grad() {
    m_dL_dweight.setZero();
    if (m_has_bias) m_dL_dbias.setZero();
  }

  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    f(prefix.child("weight").view(), m_weight, m_dL_dweight);
    if (m_has_bias) f(prefix.child("bias").view(), m_bias, m_dL_dbias);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    f(prefix.child("weight").view(), m_weight, m_dL_dweight);
    if (m_has_bias) f(prefix.child("bias").view(), m_bias, m_dL_dbias);
  }

 private:
  struct nullptr_skip {};

  /// y = skip + b + W x: each thread writes skip + b into its block of y, then accumulates W x on it.
  template <class Skip, class Prepare = detail::NoPrepare, class Epilogue = detail::NoEpilogue>
  void compute(const Input& x, Output& y, const Skip& skip, const Prepare& prepare = {},
               const Epilogue& epilogue = {}) const {
    y.resize(out_features(), x.cols());
    prepare(std::as_const(y));
    detail::gemm<false, false>(
        y, m_weight, x,
        [&](Index r0, Index rows, Index c0, Index cols) {
          if (m_has_bias)
            y.block(r0, c0, rows, cols) = skip.block(r0, c0, rows, cols).colwise() + m_bias.segment(r0, rows);
          else
            y.block(r0, c0, rows, cols) = skip.block(r0, c0, rows, cols);
        },
        [&](Index r0, Index rows, Index c0, Index cols) { epilogue(std::as_const(y), r0, rows, c0, cols); });
  }

  template <class SkipGrad, class Prepare = detail::NoPrepare, class Epilogue = detail::NoEpilogue>
  void backward_into(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad, const Prepare& prepare = {},
                     const Epilogue& epilogue = {}) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, out_features(), x.cols(), dL_dy);
    // dL/dW += dL_dy xᵀ; the thread owning column 0 of a row block adds that block's bias gradient.
    detail::gemm<false, true>(m_dL_dweight, dL_dy, x, [&](Index r0, Index rows, Index c0, Index) {
      if (m_has_bias && c0 == 0) m_dL_dbias.segment(r0, rows) += dL_dy.middleRows(r0, rows).rowwise().sum();
    });
    dL_dx.resize(in_features(), dL_dy.cols());
    prepare(std::as_const(dL_dx));
    auto then = [&](Index r0, Index rows, Index c0, Index cols) { epilogue(std::as_const(dL_dx), r0, rows, c0, cols); };
    if constexpr (std::is_same_v<SkipGrad, nullptr_skip>)
      detail::gemm<true, false>(dL_dx, m_weight, dL_dy, detail::zero_block(dL_dx), then);
    else
      detail::gemm<true, false>(dL_dx, m_weight, dL_dy, detail::assign_block(dL_dx, skip_grad), then);
  }

  Weight m_weight;
  Bias m_bias;
  Weight m_dL_dweight;
  Bias m_dL_dbias;
  bool m_has_bias;
  detail::CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
