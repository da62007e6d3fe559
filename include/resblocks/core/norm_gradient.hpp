#pragma once
/// \file
/// \brief NormGradient: a batch normalisation's dL/dx as its per-channel coefficients, which the layer
/// before it applies while it reads its own dL/dy (no pass writes the gradient out in between).

#include "resblocks/core/channel_affine.hpp"

#include <Eigen/Core>

namespace resblocks::detail {

/// \brief dL/dx of a BatchNorm2d, column j = scale ∘ g_j + b ∘ x_j + c, not written out.
///
/// g is the normalisation's dL/dy and x its input (both `rows` × columns, column-major); scale, b and
/// c hold one coefficient per row. Sequential pairs Conv2d → BatchNorm2d: the convolution's backward
/// computes each sample's dL/dy with columns() into a buffer that stays in cache, instead of the
/// normalisation writing the whole gradient and the convolution reading it back (3 of the 7 passes
/// over memory of the normalisation's backward). Same formula as BatchNorm2d's own backward: same bits.
template <class S>
struct NormGradient {
  const S* g = nullptr;
  const S* x = nullptr;
  const S* scale = nullptr;
  const S* b = nullptr;
  const S* c = nullptr;
  Eigen::Index rows = 0;

  explicit operator bool() const noexcept { return g != nullptr; }

  /// out (rows × cols, column-major, contiguous) = columns [c0, c0 + cols) of the gradient, plus
  /// `add` (same layout; may be out itself) when not null.
  void columns(Eigen::Index c0, Eigen::Index cols, S* out, const S* add = nullptr) const {
    channel_affine(g + c0 * rows, scale, x + c0 * rows, b, c, add, out, rows, cols);
  }
};

/// Hands `layer` (a Conv2d) the gradient g for its backward passes within this scope
/// (layer.set_norm_gradient(g): it reads its dL/dy through g), and takes it back at the end.
template <class L>
class NormGradientScope {
 public:
  template <class S>
  NormGradientScope(L& layer, const NormGradient<S>& g) : m_layer(layer) {
    m_layer.set_norm_gradient(g);
  }
  ~NormGradientScope() { m_layer.set_norm_gradient({}); }
  NormGradientScope(const NormGradientScope&) = delete;
  NormGradientScope& operator=(const NormGradientScope&) = delete;

 private:
  L& m_layer;
};

}  // namespace resblocks::detail
