#pragma once
/// \file
/// \brief BasicBlock: ResNet v1's two 3×3 convolutions with a skip.

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

/// The residual branch of a BasicBlock: conv3×3-BN-ReLU-conv3×3-BN.
template <class S = float>
using BasicBranch = Sequential<Conv2d<S>, BatchNorm2d<S>, ReLU<S>, Conv2d<S>, BatchNorm2d<S>>;

/// \brief ResNet v1 basic block (He et al. 2016), `relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))`,
/// composed as `Sequential<Residual<BasicBranch, Shortcut>, ReLU>`. The stride sits on conv1 and the
/// shortcut. Parameter names are torchvision's: `conv1.weight`, `bn2.running_var`, `downsample.0.weight`.
template <class S = float>
class BasicBlock : public Sequential<Residual<BasicBranch<S>, Shortcut<S>>, ReLU<S>> {
  using Base = Sequential<Residual<BasicBranch<S>, Shortcut<S>>, ReLU<S>>;

 public:
  static constexpr std::string_view name = "BasicBlock";
  static constexpr Index expansion = 1;  ///< output channels per `channels`

  BasicBlock(Index in_channels, Index channels, Index stride = 1, const BlockOptions& o = {})
      : Base{Residual<BasicBranch<S>, Shortcut<S>>{
                 BasicBranch<S>{Conv2d<S>(in_channels, channels, 3, {.stride = stride, .padding = 1, .bias = false}),
                                BatchNorm2d<S>(channels), ReLU<S>(),
                                Conv2d<S>(channels, channels, 3, {.padding = 1, .bias = false}),
                                BatchNorm2d<S>(channels)},
                 Shortcut<S>(in_channels, channels, stride,
                             detail::shortcut_kind(in_channels, channels, stride, o, false))},
             ReLU<S>()} {
    this->set_child_names({"", ""});
    residual().set_child_names("", "downsample");
    branch().set_child_names({"conv1", "bn1", "", "conv2", "bn2"});
    if (o.zero_init_residual) branch().template get<4>().weight().setZero();
  }

  Residual<BasicBranch<S>, Shortcut<S>>& residual() noexcept { return this->template get<0>(); }
  BasicBranch<S>& branch() noexcept { return residual().body(); }
  Shortcut<S>& shortcut() noexcept { return residual().skip(); }
};

}  // namespace resblocks
