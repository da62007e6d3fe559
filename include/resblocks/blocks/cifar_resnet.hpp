#pragma once
/// \file
/// \brief CifarResNet: He et al.'s ResNet-(6n+2) for small images, and its plain twin.

#include "resblocks/blocks/basic_block.hpp"
#include "resblocks/blocks/block_options.hpp"
#include "resblocks/blocks/repeat.hpp"
#include "resblocks/blocks/resnet.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"
#include "resblocks/layers/global_avg_pool.hpp"
#include "resblocks/layers/linear.hpp"
#include "resblocks/layers/relu.hpp"
#include "resblocks/layers/shortcut.hpp"

#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief Settings of CifarResNet (the paper's CIFAR-10 networks by default).
struct CifarResNetOptions {
  Index depth = 20;       ///< 6n + 2: 20, 32, 44, 56, 110, …
  Index in_channels = 3;  ///< 1 for Fashion-MNIST
  Index classes = 10;
  Index width = 16;  ///< channels of the first stage (then 2× and 4×)
  ImageSize image{32, 32};
  ShortcutKind downsample = ShortcutKind::zero_pad;  ///< option A, as the paper's CIFAR nets; or projection (B)
  bool plain = false;                                ///< the plain twin: the same layers, no skips
  bool zero_init_residual = false;
  /// false: backward skips the input gradient (the first convolution's dL/dx, returned as zeros),
  /// which training never uses — as PyTorch does for inputs without requires_grad.
  bool input_gradient = true;
};

namespace detail {
/// The blocks' options of a CIFAR network.
inline BlockOptions cifar_block_options(const CifarResNetOptions& o) {
  return BlockOptions{.downsample = o.downsample, .plain = o.plain, .zero_init_residual = o.zero_init_residual};
}

/// What both CIFAR networks do once their layers are named: torchvision's initialisation, the image
/// size, and the stem convolution's input gradient (layer 0).
template <class Net>
void finish_cifar_net(Net& net, const CifarResNetOptions& o) {
  torchvision_init(net);
  net.set_image_size(o.image);
  net.template get<0>().set_input_gradient(o.input_gradient);
}
}  // namespace detail

/// \brief ResNet-(6n+2) for small images (He et al. 2016, section 4.2): conv3×3 - bn - relu, three
/// stages of n BasicBlocks (width w, 2w, 4w; strides 1, 2, 2), global average pool, fc. With
/// `plain`, every skip is removed (same layers and parameters: the depth experiment's control).
/// Names: `conv1.weight`, `layer2.0.conv1.weight`, `fc.bias`.
template <class S = float>
class CifarResNet : public Sequential<Conv2d<S>, BatchNorm2d<S>, ReLU<S>, Repeat<BasicBlock<S>>, Repeat<BasicBlock<S>>,
                                      Repeat<BasicBlock<S>>, GlobalAvgPool<S>, Linear<S>> {
  using Base = Sequential<Conv2d<S>, BatchNorm2d<S>, ReLU<S>, Repeat<BasicBlock<S>>, Repeat<BasicBlock<S>>,
                          Repeat<BasicBlock<S>>, GlobalAvgPool<S>, Linear<S>>;

 public:
  static constexpr std::string_view name = "CifarResNet";

  explicit CifarResNet(const CifarResNetOptions& o = {}) : CifarResNet(o, blocks_per_stage(o.depth)) {}

  /// \brief Blocks per stage n of a (6n+2)-layer network; throws unless depth = 6n + 2, n ≥ 1.
  /// \param depth layers of the network, 6n + 2 (20, 32, 44, 56, 110, …)
  /// \returns n
  /// \throws std::invalid_argument unless depth = 6n + 2 with n ≥ 1
  static Index blocks_per_stage(Index depth) {
    if (depth < 8 || (depth - 2) % 6 != 0)
      throw std::invalid_argument("CifarResNet: depth must be 6n+2 (20, 32, 44, 56, 110, ...), got " +
                                  std::to_string(depth));
    return (depth - 2) / 6;
  }

  /// \brief Re-draws the parameters as the constructor does, from `g` (see initialize()).
  /// \param g generator the new parameters are drawn from
  void reset_parameters(Generator& g) { detail::reset_torchvision_model(*this, g); }

 private:
  CifarResNet(const CifarResNetOptions& o, Index n)
      : Base{Conv2d<S>(o.in_channels, o.width, 3, {.padding = 1, .bias = false}),
             BatchNorm2d<S>(o.width),
             ReLU<S>(),
             detail::resnet_stage<BasicBlock<S>>(o.width, o.width, n, 1, detail::cifar_block_options(o)),
             detail::resnet_stage<BasicBlock<S>>(o.width, 2 * o.width, n, 2, detail::cifar_block_options(o)),
             detail::resnet_stage<BasicBlock<S>>(2 * o.width, 4 * o.width, n, 2, detail::cifar_block_options(o)),
             GlobalAvgPool<S>(),
             Linear<S>(4 * o.width, o.classes)} {
    this->set_child_names({"conv1", "bn1", "", "layer1", "layer2", "layer3", "", "fc"});
    detail::finish_cifar_net(*this, o);
  }
};

}  // namespace resblocks
