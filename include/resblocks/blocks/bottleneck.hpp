#pragma once
/// \file
/// \brief Bottleneck: ResNet v1's 1×1-3×3-1×1 block with expansion 4.

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

/// The residual branch of a Bottleneck: conv1×1-BN-ReLU-conv3×3-BN-ReLU-conv1×1-BN.
template <class S = float>
using BottleneckBranch =
    Sequential<Conv2d<S>, BatchNorm2d<S>, ReLU<S>, Conv2d<S>, BatchNorm2d<S>, ReLU<S>, Conv2d<S>, BatchNorm2d<S>>;

/// \brief ResNet v1 bottleneck block: `channels` wide inside, `4·channels` out, the stride on the
/// 3×3 convolution (torchvision's "ResNet v1.5"); `Sequential<Residual<BottleneckBranch, Shortcut>, ReLU>`
/// with torchvision's names (`conv3.weight`, `bn3.bias`, `downsample.1.running_mean`).
template <class S = float>
class Bottleneck : public Sequential<Residual<BottleneckBranch<S>, Shortcut<S>>, ReLU<S>> {
  using Base = Sequential<Residual<BottleneckBranch<S>, Shortcut<S>>, ReLU<S>>;

 public:
  static constexpr std::string_view name = "Bottleneck";
  static constexpr Index expansion = 4;

  Bottleneck(Index in_channels, Index channels, Index stride = 1, const BlockOptions& o = {})
      : Base{Residual<BottleneckBranch<S>, Shortcut<S>>{
                 BottleneckBranch<S>{
                     Conv2d<S>(in_channels, channels, 1, {.bias = false}), BatchNorm2d<S>(channels), ReLU<S>(),
                     Conv2d<S>(channels, channels, 3, {.stride = stride, .padding = 1, .bias = false}),
                     BatchNorm2d<S>(channels), ReLU<S>(), Conv2d<S>(channels, channels * expansion, 1, {.bias = false}),
                     BatchNorm2d<S>(channels * expansion)},
                 Shortcut<S>(in_channels, channels * expansion, stride,
                             detail::shortcut_kind(in_channels, channels * expansion, stride, o, false))},
             ReLU<S>()} {
    this->set_child_names({"", ""});
    residual().set_child_names("", "downsample");
    branch().set_child_names({"conv1", "bn1", "", "conv2", "bn2", "", "conv3", "bn3"});
    if (o.zero_init_residual) branch().template get<7>().weight().setZero();
  }

  Residual<BottleneckBranch<S>, Shortcut<S>>& residual() noexcept { return this->template get<0>(); }
  BottleneckBranch<S>& branch() noexcept { return residual().body(); }
  Shortcut<S>& shortcut() noexcept { return residual().skip(); }
};

}  // namespace resblocks
