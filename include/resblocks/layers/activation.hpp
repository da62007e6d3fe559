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
///
/// An Op that declares `static constexpr bool in_place = true` (its backward gives the same with y in
/// place of x: ReLU) runs in place when fused into a neighbour's pass (see Sequential): y overwrites
/// the neighbour's output, and dL/dx the neighbour's dL/dx, blocks still in cache; that saves writing
/// (and first reading) one more buffer of the batch's size in each direction. The standalone passes
/// never write into their argument.
template <class Op, class S = float, int N = Dynamic>
class Activation {
 public:
  using Scalar = S;
  static constexpr int InFeatures = N;
  static constexpr int OutFeatures = N;
  using Input = Batch<S, N>;
  using Output = Batch<S, N>;
  static constexpr std::string_view name = Op::name;
  /// The Op is ReLU's (Op::is_relu): a convolution after a normalisation before it may apply it itself
  /// (Sequential, detail::NormInputTriple).
  static constexpr bool is_relu = requires { requires Op::is_relu; };

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
    prepare_forward(x, false);
    by_columns(x, [&](Index c0, Index n) { fused_forward_block(x, 0, x.rows(), c0, n); });
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    prepare_backward(dL_dy, false);
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
  /// \brief Starts a fused forward over x (an in-place Op writes y into x).
  /// \param x the neighbour's own output buffer (a non-const object)
  void fused_forward_prepare(const Input& x) { prepare_forward(x, in_place); }
  void fused_forward_block(const Input& x, Index r0, Index rows, Index c0, Index cols) {
    Output& y = out();
    by_segments(x.rows(), r0, rows, c0, cols,
                [&](Index at, Index n) { flat(y, at, n) = m_op.forward(flat(x, at, n)); });
  }
  const Output& fused_output() { return out(); }
  /// \brief Starts a fused backward over dL_dy (an in-place Op writes dL/dx into it).
  /// \param dL_dy the neighbour's own dL/dx buffer (a non-const object)
  void fused_backward_prepare(const Output& dL_dy) { prepare_backward(dL_dy, in_place); }
  void fused_backward_block(const Output& dL_dy, Index r0, Index rows, Index c0, Index cols) {
    const Input& x = m_x.get(name);
    const Output& y = out();
    Input& dL_dx = grad();
    by_segments(x.rows(), r0, rows, c0, cols, [&](Index at, Index n) {
      flat(dL_dx, at, n) = m_op.backward(flat(x, at, n), flat(y, at, n), flat(dL_dy, at, n));
    });
  }
  const Input& fused_grad() { return grad(); }
  void fused_infer_prepare(const Input& x, Workspace& ws) const {
    detail::check_input_features(name, m_features, x);
    ws.y.resize(x.rows(), x.cols());
  }
  void fused_infer_block(const Input& x, Workspace& ws, Index r0, Index rows, Index c0, Index cols) const {
    by_segments(x.rows(), r0, rows, c0, cols,
                [&](Index at, Index n) { flat(ws.y, at, n) = m_op.forward(flat(x, at, n)); });
  }
  /// @}

  void zero_grad() noexcept {}
  template <class F>
  void for_each_parameter(F&&, const ParameterName& = {}) const noexcept {}

 private:
  static constexpr bool in_place = requires { requires Op::in_place; };

  void prepare_forward(const Input& x, bool into_x) {
    detail::check_input_features(name, m_features, x);
    m_x = &x;
    m_y_in_x = into_x;
    if (!into_x) m_y.resize(x.rows(), x.cols());
  }
  void prepare_backward(const Output& dL_dy, bool into_dy) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, x.rows(), x.cols(), dL_dy);
    m_dy = &dL_dy;
    m_grad_in_dy = into_dy;
    if (!into_dy) m_dL_dx.resize(dL_dy.rows(), dL_dy.cols());
  }
  // In place, y is the buffer x (dL/dx the buffer dL_dy) the neighbour handed over: its own, a
  // non-const object, so the const_cast is sound. Copies of the layer keep neither reference.
  Output& out() { return m_y_in_x ? const_cast<Output&>(m_x.get(name)) : m_y; }
  Input& grad() { return m_grad_in_dy ? const_cast<Input&>(m_dy.get(name)) : m_dL_dx; }

  /// f(at, n) over the contiguous runs of the block (r0, rows, c0, cols) of a matrix of ld rows: one
  /// run when the block spans whole columns, else one per column. On flat runs Eigen takes its linear
  /// loop, without a head and tail per column (16-row blocks: 1.08x backward, 1.17x forward).
  template <class F>
  static void by_segments(Index ld, Index r0, Index rows, Index c0, Index cols, const F& f) {
    if (rows == ld) return f(c0 * ld, rows * cols);
    for (Index c = c0; c < c0 + cols; ++c) f(c * ld + r0, rows);
  }
  static auto flat(Output& m, Index at, Index n) {
    return Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(m.data() + at, n);
  }
  static auto flat(const Output& m, Index at, Index n) {
    return Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(m.data() + at, n);
  }

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
  CachedInput<Output> m_dy;   ///< dL/dy of the last backward
  bool m_y_in_x = false;      ///< the last forward wrote y into x (fused, in place)
  bool m_grad_in_dy = false;  ///< the last backward wrote dL/dx into dL/dy
};

}  // namespace resblocks
