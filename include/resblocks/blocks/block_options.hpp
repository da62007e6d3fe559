#pragma once
/// \file
/// \brief BlockOptions: the choices shared by the ResNet blocks (skip kind, plain twin, zero-init).

#include "resblocks/core/types.hpp"
#include "resblocks/layers/shortcut.hpp"

namespace resblocks {

/// \brief How a ResNet block is built besides its channel counts and stride.
struct BlockOptions {
  /// The skip where the block changes shape: projection (He et al. option B; a bare 1×1 conv in
  /// the pre-activation blocks) or zero_pad (option A). Same-shape blocks always use the identity.
  ShortcutKind downsample = ShortcutKind::projection;
  bool plain = false;  ///< no skip at all: the plain network's block (same layers)
  bool zero_init_residual =
      false;  ///< the branch's last BatchNorm γ starts at 0: the block starts as its skip (Goyal et al.)
};

namespace detail {
/// The skip a block mapping `in` → `out` channels with `stride` gets under `o`.
inline ShortcutKind shortcut_kind(Index in, Index out, Index stride, const BlockOptions& o, bool pre_activation) {
  if (o.plain) return ShortcutKind::none;
  if (in == out && stride == 1) return ShortcutKind::identity;
  if (pre_activation && o.downsample == ShortcutKind::projection) return ShortcutKind::projection_conv;
  return o.downsample;
}
}  // namespace detail

}  // namespace resblocks
