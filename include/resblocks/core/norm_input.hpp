#pragma once
/// \file
/// \brief NormInput: a batch normalisation's output through a ReLU, as the normalisation's input and
/// per-channel coefficients, which the convolution after them reads sample by sample (no pass writes
/// the normalised batch out in between).

#include "resblocks/core/channel_affine.hpp"
#include "resblocks/core/relu_grad.hpp"

#include <Eigen/Core>

namespace resblocks::detail {

/// \brief The input of a convolution after BatchNorm2d → ReLU, column j = max(scale ∘ x_j + shift, 0),
/// not written out.
///
/// x is the normalisation's input (`rows` × columns, column-major), scale and shift its coefficients
/// of the pass (one per row). Sequential runs BatchNorm2d → ReLU → Conv2d so in forward
/// (BatchNorm2d::forward_deferred, Conv2d::set_norm_input) and in infer (infer_deferred, the
/// convolution's Workspace::set_norm_input): the convolution computes each sample's
/// input with columns() into scratch that stays in cache, forward and again for dL/dW, instead of the
/// normalisation writing the batch and the convolution reading it back; its backward applies ReLU's
/// backward with relu_backward() on each sample of dL/dx. Same formulas as the layers': same bits.
template <class S>
struct NormInput {
  const S* x = nullptr;
  const S* scale = nullptr;
  const S* shift = nullptr;
  Eigen::Index rows = 0;

  explicit operator bool() const noexcept { return x != nullptr; }

  /// out (rows × cols, column-major, contiguous) = columns [c0, c0 + cols) of the ReLU's output.
  void columns(Eigen::Index c0, Eigen::Index cols, S* out) const {
    channel_affine_relu(x + c0 * rows, scale, shift, out, rows, cols);
  }
};

/// g = y > 0 ? g : 0 over n values: ReLU's backward from its output y (as ReLU's own, in place).
template <class S>
void relu_backward(const S* y, S* g, Eigen::Index n) {
  using Values = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
  Values(g, n) = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(y, n).binaryExpr(Values(g, n), ReLUGradOp{});
}

/// Hands `layer` (a Conv2d, or its Workspace for infer) the input g for its passes within this scope
/// (layer.set_norm_input(g): it reads its input through g), and takes it back at the end.
template <class L>
class NormInputScope {
 public:
  template <class S>
  NormInputScope(L& layer, const NormInput<S>& g) : m_layer(layer) {
    m_layer.set_norm_input(g);
  }
  ~NormInputScope() { m_layer.set_norm_input({}); }
  NormInputScope(const NormInputScope&) = delete;
  NormInputScope& operator=(const NormInputScope&) = delete;

 private:
  L& m_layer;
};

}  // namespace resblocks::detail
