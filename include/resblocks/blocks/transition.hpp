#pragma once
/// \file
/// \brief Transition: DenseNet's layer between dense blocks, BN-ReLU-Conv1×1-AvgPool2d(2).

#include "resblocks/blocks/sequential.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/avg_pool2d.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"
#include "resblocks/layers/relu.hpp"

#include <string_view>

namespace resblocks {

/// \brief DenseNet's transition layer, as torchvision's `_Transition`: `pool(conv(relu(norm(x))))`,
/// conv 1×1 without bias from in_channels to out_channels, pool AvgPool2d(2, stride 2); the image
/// halves (floor). The pool runs before the conv: a bias-free 1×1 convolution and an average pool
/// commute (both linear, one per channel, the other per pixel), so the result is the same and the
/// convolution costs a quarter. Names: `norm.weight`, `norm.bias`, `conv.weight` and the buffers
/// `norm.running_mean`, …. The conv starts as PyTorch's default; DenseNet re-initialises it.
template <class S = float>
class Transition : public Sequential<BatchNorm2d<S>, ReLU<S>, AvgPool2d<S>, Conv2d<S>> {
  using Base = Sequential<BatchNorm2d<S>, ReLU<S>, AvgPool2d<S>, Conv2d<S>>;

 public:
  static constexpr std::string_view name = "Transition";

  Transition(Index in_channels, Index out_channels)
      : Base(BatchNorm2d<S>(in_channels), ReLU<S>(), AvgPool2d<S>(2, 2),
             Conv2d<S>(in_channels, out_channels, 1, {.bias = false})) {
    this->set_child_names({"norm", "", "", "conv"});
  }

  BatchNorm2d<S>& norm() noexcept { return this->template get<0>(); }
  Conv2d<S>& conv() noexcept { return this->template get<3>(); }
};

}  // namespace resblocks
