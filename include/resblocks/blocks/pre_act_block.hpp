#pragma once
/// \file
/// \brief PreActBlock: ResNet v2's basic block, BN-ReLU-conv twice, then the add.

#include "resblocks/blocks/block_options.hpp"
#include "resblocks/blocks/residual.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"
#include "resblocks/layers/relu.hpp"
#include "resblocks/layers/shortcut.hpp"

#include <string_view>

namespace resblocks {

/// The residual branch of a PreActBlock: BN-ReLU-conv3×3-BN-ReLU-conv3×3.
template <class S = float>
using PreActBranch = Sequential<BatchNorm2d<S>, ReLU<S>, Conv2d<S>, BatchNorm2d<S>, ReLU<S>, Conv2d<S>>;

/// \brief ResNet v2 (pre-activation) basic block (He et al., "Identity Mappings", 2016):
/// `shortcut(x) + conv2(relu(bn2(conv1(relu(bn1(x))))))`, nothing after the add. The shortcut takes
/// x itself (a bare strided 1×1 conv where the shape changes). The add is fused into conv2's GEMM.
/// Names: `bn1.*`, `conv1.weight`, `bn2.*`, `conv2.weight`, `downsample.0.weight`.
template <class S = float>
class PreActBlock : public Residual<PreActBranch<S>, Shortcut<S>> {
  using Base = Residual<PreActBranch<S>, Shortcut<S>>;

 public:
  static constexpr std::string_view name = "PreActBlock";
  static constexpr Index expansion = 1;

  PreActBlock(Index in_channels, Index channels, Index stride = 1, const BlockOptions& o = {})
      : Base{
            PreActBranch<S>{BatchNorm2d<S>(in_channels), ReLU<S>(),
                            Conv2d<S>(in_channels, channels, 3, {.stride = stride, .padding = 1, .bias = false}),
                            BatchNorm2d<S>(channels), ReLU<S>(),
                            Conv2d<S>(channels, channels, 3, {.padding = 1, .bias = false})},
            Shortcut<S>(in_channels, channels, stride, detail::shortcut_kind(in_channels, channels, stride, o, true))} {
    this->set_child_names("", "downsample");
    branch().set_child_names({"bn1", "", "conv1", "bn2", "", "conv2"});
    if (o.zero_init_residual) branch().template get<3>().weight().setZero();
  }

  PreActBranch<S>& branch() noexcept { return this->body(); }
  Shortcut<S>& shortcut() noexcept { return this->skip(); }
};

}  // namespace resblocks
