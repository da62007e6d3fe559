#pragma once
/// \file
/// \brief CifarPreActResNet: the pre-activation ResNet-(6n+2) for small images (ResNet v2), and its plain twin.

#include "resblocks/blocks/cifar_resnet.hpp"
#include "resblocks/blocks/pre_act_block.hpp"
#include "resblocks/blocks/repeat.hpp"
#include "resblocks/blocks/resnet.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"
#include "resblocks/layers/global_avg_pool.hpp"
#include "resblocks/layers/linear.hpp"
#include "resblocks/layers/relu.hpp"

#include <string_view>

namespace resblocks {

/// \brief Pre-activation ResNet-(6n+2) for small images (He et al., "Identity Mappings in Deep Residual
/// Networks", 2016): conv3×3, three stages of n PreActBlocks (width w, 2w, 4w; strides 1, 2, 2), the
/// final BN-ReLU that pre-activation needs, global average pool, fc. Every skip is a clean identity
/// (a bare 1×1 conv where the shape changes), which is what lets it train at 1000+ layers; with
/// `plain`, the same layers without skips. Options as CifarResNet (`downsample` projection or
/// zero_pad; `zero_init_residual` zeroes each block's second BN γ, so every block starts as its skip).
/// Names: `conv1.weight`, `layer1.0.bn1.weight`, `layer2.0.downsample.0.weight`, `bn.weight`, `fc.bias`.
template <class S = float>
class CifarPreActResNet
    : public Sequential<Conv2d<S>, Repeat<PreActBlock<S>>, Repeat<PreActBlock<S>>, Repeat<PreActBlock<S>>,
                        BatchNorm2d<S>, ReLU<S>, GlobalAvgPool<S>, Linear<S>> {
  using Base = Sequential<Conv2d<S>, Repeat<PreActBlock<S>>, Repeat<PreActBlock<S>>, Repeat<PreActBlock<S>>,
                          BatchNorm2d<S>, ReLU<S>, GlobalAvgPool<S>, Linear<S>>;

 public:
  static constexpr std::string_view name = "CifarPreActResNet";

  explicit CifarPreActResNet(const CifarResNetOptions& o = {})
      : CifarPreActResNet(o, CifarResNet<S>::blocks_per_stage(o.depth)) {}

  /// \brief Re-draws the parameters as the constructor does, from `g` (see initialize()).
  /// \param g generator the new parameters are drawn from
  void reset_parameters(Generator& g) { detail::reset_torchvision_model(*this, g); }

 private:
  CifarPreActResNet(const CifarResNetOptions& o, Index n)
      : Base{Conv2d<S>(o.in_channels, o.width, 3, {.padding = 1, .bias = false}),
             detail::resnet_stage<PreActBlock<S>>(o.width, o.width, n, 1, detail::cifar_block_options(o)),
             detail::resnet_stage<PreActBlock<S>>(o.width, 2 * o.width, n, 2, detail::cifar_block_options(o)),
             detail::resnet_stage<PreActBlock<S>>(2 * o.width, 4 * o.width, n, 2, detail::cifar_block_options(o)),
             BatchNorm2d<S>(4 * o.width),
             ReLU<S>(),
             GlobalAvgPool<S>(),
             Linear<S>(4 * o.width, o.classes)} {
    this->set_child_names({"conv1", "layer1", "layer2", "layer3", "bn", "", "", "fc"});
    detail::finish_cifar_net(*this, o);
  }
};

}  // namespace resblocks
