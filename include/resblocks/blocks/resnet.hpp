#pragma once
/// \file
/// \brief ResNet: the ImageNet-style networks (ResNet-18/34/50) with torchvision's parameter names.

#include "resblocks/blocks/basic_block.hpp"
#include "resblocks/blocks/block_options.hpp"
#include "resblocks/blocks/bottleneck.hpp"
#include "resblocks/blocks/repeat.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/initializers.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"
#include "resblocks/layers/global_avg_pool.hpp"
#include "resblocks/layers/linear.hpp"
#include "resblocks/layers/max_pool2d.hpp"
#include "resblocks/layers/relu.hpp"

#include <array>
#include <string_view>

namespace resblocks {

/// \brief Settings of the ImageNet-style ResNets (torchvision's defaults).
struct ResNetOptions {
  Index classes = 1000;
  Index in_channels = 3;
  ImageSize image{224, 224};        ///< input size the network is configured for (set_image_size changes it)
  bool zero_init_residual = false;  ///< each block's last BN γ = 0 (torchvision's `zero_init_residual`)
};

namespace detail {
/// torchvision's initialisation: Kaiming-normal (fan_out, ReLU) convolutions, BN γ = 1 and β = 0,
/// the classifier as nn.Linear's default.
template <class Net>
void torchvision_init(Net& net, Generator& g = default_generator()) {
  for_each_leaf(net, [&g](auto& layer) {
    if constexpr (requires {
                    layer.fan_out();
                    layer.kernel_size();
                  })  // the convolutions
      kaiming_normal(layer, KaimingOptions{.mode = FanMode::fan_out, .nonlinearity = Nonlinearity::relu}, g);
  });
}

/// A torchvision-initialised model's reset_parameters: every child as its constructor draws it,
/// then the convolutions again as torchvision does (the draws of the model's constructor).
template <class Net>
void reset_torchvision_model(Net& net, Generator& g) {
  net.for_each_layer([&g](auto& child) { initialize(child, g); });
  torchvision_init(net, g);
}

/// One stage of `blocks` blocks, the first with `stride` (and the channel change in_channels → channels·expansion).
template <class Block>
Repeat<Block> resnet_stage(Index in_channels, Index channels, Index blocks, Index stride, const BlockOptions& o) {
  return Repeat<Block>(blocks, [&](Index i) {
    return Block(i == 0 ? in_channels : channels * Block::expansion, channels, i == 0 ? stride : 1, o);
  });
}
}  // namespace detail

/// \brief ResNet for ImageNet-sized inputs (He et al. 2016, torchvision's layout and names):
/// conv1 7×7/2 - bn1 - relu - maxpool 3×3/2 - layer1 … layer4 (BasicBlock or Bottleneck stages,
/// strides 1, 2, 2, 2) - global average pool - fc. Parameters and buffers are named as
/// torchvision's `state_dict` (`conv1.weight`, `layer1.0.bn2.running_var`, `layer2.0.downsample.0.weight`, `fc.bias`).
template <class Block>
class ResNet : public Sequential<Conv2d<typename Block::Scalar>, BatchNorm2d<typename Block::Scalar>,
                                 ReLU<typename Block::Scalar>, MaxPool2d<typename Block::Scalar>, Repeat<Block>,
                                 Repeat<Block>, Repeat<Block>, Repeat<Block>, GlobalAvgPool<typename Block::Scalar>,
                                 Linear<typename Block::Scalar>> {
  using S = typename Block::Scalar;
  using Base = Sequential<Conv2d<S>, BatchNorm2d<S>, ReLU<S>, MaxPool2d<S>, Repeat<Block>, Repeat<Block>, Repeat<Block>,
                          Repeat<Block>, GlobalAvgPool<S>, Linear<S>>;

 public:
  static constexpr std::string_view name = "ResNet";

  /// \brief `layers`: blocks per stage, e.g. {2, 2, 2, 2} for ResNet-18.
  /// \param layers blocks in layer1 … layer4
  /// \param o classes, input channels, image size and zero_init_residual
  /// \throws std::invalid_argument on a negative count or an empty `o.image`
  ResNet(const std::array<Index, 4>& layers, const ResNetOptions& o = {})
      : Base{Conv2d<S>(o.in_channels, 64, 7, {.stride = 2, .padding = 3, .bias = false}),
             BatchNorm2d<S>(64),
             ReLU<S>(),
             MaxPool2d<S>(3, 2, 1),
             detail::resnet_stage<Block>(64, 64, layers[0], 1, block_options(o)),
             detail::resnet_stage<Block>(64 * Block::expansion, 128, layers[1], 2, block_options(o)),
             detail::resnet_stage<Block>(128 * Block::expansion, 256, layers[2], 2, block_options(o)),
             detail::resnet_stage<Block>(256 * Block::expansion, 512, layers[3], 2, block_options(o)),
             GlobalAvgPool<S>(),
             Linear<S>(512 * Block::expansion, o.classes)} {
    this->set_child_names({"conv1", "bn1", "", "", "layer1", "layer2", "layer3", "layer4", "", "fc"});
    detail::torchvision_init(*this);
    this->set_image_size(o.image);
  }

  /// \brief Re-draws the parameters as the constructor does, from `g` (see initialize()).
  /// \param g generator the new parameters are drawn from
  void reset_parameters(Generator& g) { detail::reset_torchvision_model(*this, g); }

 private:
  static BlockOptions block_options(const ResNetOptions& o) {
    return BlockOptions{.downsample = ShortcutKind::projection, .zero_init_residual = o.zero_init_residual};
  }
};

/// \brief ResNet-18: BasicBlock stages of 2, 2, 2, 2 (11.7 M parameters at 1000 classes).
/// \param o classes, input channels, image size and zero_init_residual
/// \returns the network, initialised as torchvision's
/// \throws std::invalid_argument on a negative count or an empty `o.image`
template <class S = float>
ResNet<BasicBlock<S>> resnet18(const ResNetOptions& o = {}) {
  return ResNet<BasicBlock<S>>({2, 2, 2, 2}, o);
}
/// \brief ResNet-34: BasicBlock stages of 3, 4, 6, 3.
/// \param o classes, input channels, image size and zero_init_residual
/// \returns the network, initialised as torchvision's
/// \throws std::invalid_argument on a negative count or an empty `o.image`
template <class S = float>
ResNet<BasicBlock<S>> resnet34(const ResNetOptions& o = {}) {
  return ResNet<BasicBlock<S>>({3, 4, 6, 3}, o);
}
/// \brief ResNet-50: Bottleneck stages of 3, 4, 6, 3.
/// \param o classes, input channels, image size and zero_init_residual
/// \returns the network, initialised as torchvision's
/// \throws std::invalid_argument on a negative count or an empty `o.image`
template <class S = float>
ResNet<Bottleneck<S>> resnet50(const ResNetOptions& o = {}) {
  return ResNet<Bottleneck<S>>({3, 4, 6, 3}, o);
}

}  // namespace resblocks
