#pragma once
/// \file
/// \brief Activation<Op>: an element-wise layer; ReLU, GELU, … are Ops plugged into it.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <string_view>
#include <utility>

namespace resblocks {

/// \brief Element-wise layer y = op(x), N features (static, or Dynamic: any, unless set).
///
/// `Op` provides `name`, `forward(x)` → array expression of y, and `backward(x, y, dL_dy)` →
/// array expression of dL/dx (x, y, dL_dy given as Eigen arrays). See relu.hpp for an example.
template <class Op, class S = float, int N = Dynamic>
class Activation {
 public:
  using Scalar = S;
  static constexpr int InFeatures = N;
  static constexpr int OutFeatures = N;
  using Input = Batch<S, N>;
  using Output = Batch<S, N>;
  static constexpr std::string_view name = Op::name;

  struct Workspace {
    Output y;
  };

  /// \brief `features` fixes the size of a Dynamic activation; -1 (default) takes any.
  /// \param op the element-wise function
  /// \param features rows of the input and output
  /// \throws std::invalid_argument when a static N is given another `features`
  explicit Activation(Op op = {}, Index features = N) : m_op(std::move(op)), m_features(features) {
    if (N != Dynamic) detail::check_features(name, "features", N, features);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_features; }
  [[nodiscard]] Index out_features() const noexcept { return m_features; }
  const Op& op() const noexcept { return m_op; }

  const Output& forward(const Input& x) {
    fused_forward_prepare(x);
    by_columns(x, [&](Index c0, Index n) { fused_forward_block(x, 0, x.rows(), c0, n); });
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    fused_backward_prepare(dL_dy);
    by_columns(dL_dy, [&](Index c0, Index n) { fused_backward_block(dL_dy, 0, dL_dy.rows(), c0, n); });
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    fused_infer_prepare(x, ws);
    by_columns(x, [&](Index c0, Index n) { fused_infer_block(x, ws, 0, x.rows(), c0, n); });
    return ws.y;
  }

  /// \name Fused use by a neighbouring Linear (see Sequential): the same results as forward,
  /// backward and infer, computed block by block inside the Linear's GEMM region.
  /// @{
  void fused_forward_prepare(const Input& x) {
    detail::check_input_features(name, m_features, x);
    m_x = &x;
    m_y.resize(x.rows(), x.cols());
  }
  void fused_forward_block(const Input& x, Index r0, Index rows, Index c0, Index cols) {
    m_y.block(r0, c0, rows, cols).array() = m_op.forward(x.block(r0, c0, rows, cols).array());
  }
  const Output& fused_output() const noexcept { return m_y; }
  void fused_backward_prepare(const Output& dL_dy) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, x.rows(), x.cols(), dL_dy);
    m_dL_dx.resize(dL_dy.rows(), dL_dy.cols());
  }
  void fused_backward_block(const Output& dL_dy, Index r0, Index rows, Index c0, Index cols) {
    const Input& x = m_x.get(name);
    m_dL_dx.block(r0, c0, rows, cols).array() =
        m_op.backward(x.block(r0, c0, rows, cols).array(), m_y.block(r0, c0, rows, cols).array(),
                      dL_dy.block(r0, c0, rows, cols).array());
  }
  const Input& fused_grad() const noexcept { return m_dL_dx; }
  void fused_infer_prepare(const Input& x, Workspace& ws) const {
    detail::check_input_features(name, m_features, x);
    ws.y.resize(x.rows(), x.cols());
  }
  void fused_infer_block(const Input& x, Workspace& ws, Index r0, Index rows, Index c0, Index cols) const {
    ws.y.block(r0, c0, rows, cols).array() = m_op.forward(x.block(r0, c0, rows, cols).array());
  }
  /// @}

  void zero_grad() noexcept {}
  template <class F>
  void for_each_parameter(F&&, const ParameterName& = {}) const noexcept {}

 private:
  /// f(c0, count) over column ranges of m, in parallel when large.
  template <class M, class F>
  static void by_columns(const M& m, const F& f) {
    detail::parallel_for(m.cols(), static_cast<double>(m.rows()), [&](Index c0, Index c1) { f(c0, c1 - c0); });
  }

  Op m_op;
  Index m_features;
  CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
