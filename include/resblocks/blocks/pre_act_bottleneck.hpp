#pragma once
/// \file
/// \brief PreActBottleneck: ResNet v2's bottleneck, (BN-ReLU-conv) × 3 with 1×1-3×3-1×1 kernels.

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

/// The residual branch of a PreActBottleneck.
template <class S = float>
using PreActBottleneckBranch = Sequential<BatchNorm2d<S>, ReLU<S>, Conv2d<S>, BatchNorm2d<S>, ReLU<S>, Conv2d<S>,
                                          BatchNorm2d<S>, ReLU<S>, Conv2d<S>>;

/// \brief ResNet v2 bottleneck: `channels` wide inside, `4·channels` out, stride on the 3×3 conv;
/// `shortcut(x) + conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))))`.
template <class S = float>
class PreActBottleneck : public Residual<PreActBottleneckBranch<S>, Shortcut<S>> {
  using Base = Residual<PreActBottleneckBranch<S>, Shortcut<S>>;

 public:
  static constexpr std::string_view name = "PreActBottleneck";
  static constexpr Index expansion = 4;

  PreActBottleneck(Index in_channels, Index channels, Index stride = 1, const BlockOptions& o = {})
      : Base{PreActBottleneckBranch<S>{
                 BatchNorm2d<S>(in_channels), ReLU<S>(), Conv2d<S>(in_channels, channels, 1, {.bias = false}),
                 BatchNorm2d<S>(channels), ReLU<S>(),
                 Conv2d<S>(channels, channels, 3, {.stride = stride, .padding = 1, .bias = false}),
                 BatchNorm2d<S>(channels), ReLU<S>(), Conv2d<S>(channels, channels * expansion, 1, {.bias = false})},
             Shortcut<S>(in_channels, channels * expansion, stride,
                         detail::shortcut_kind(in_channels, channels * expansion, stride, o, true))} {
    this->set_child_names("", "downsample");
    branch().set_child_names({"bn1", "", "conv1", "bn2", "", "conv2", "bn3", "", "conv3"});
    if (o.zero_init_residual) branch().template get<6>().weight().setZero();
  }

  PreActBottleneckBranch<S>& branch() noexcept { return this->body(); }
  Shortcut<S>& shortcut() noexcept { return this->skip(); }
};

}  // namespace resblocks
