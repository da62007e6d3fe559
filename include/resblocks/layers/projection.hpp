#pragma once
/// \file
/// \brief Projection: the bias-free linear map `P x` of a residual skip whose sizes change.

#include "resblocks/layers/linear.hpp"

namespace resblocks {

/// \brief Bias-free Linear, used as `Residual<Body, Projection<S, In, Out>>` (He et al.'s
/// projection shortcut; `nn.Linear(in, out, bias=False)` in PyTorch). Parameter: `weight`.
template <class S = float, int In = Dynamic, int Out = Dynamic>
class Projection : public Linear<S, In, Out> {
 public:
  Projection() requires(In != Dynamic && Out != Dynamic) : Linear<S, In, Out>(In, Out, false) {}
  Projection(Index in_features, Index out_features) : Linear<S, In, Out>(in_features, out_features, false) {}
};

}  // namespace resblocks
