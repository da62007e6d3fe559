#pragma once
/// \file
/// \brief DenseNet: DenseNet-BC for small images (Huang et al. 2017), with torchvision's names.

#include "resblocks/blocks/dense_block.hpp"
#include "resblocks/blocks/dense_layer.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/blocks/transition.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/initializers.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"
#include "resblocks/layers/global_avg_pool.hpp"
#include "resblocks/layers/linear.hpp"
#include "resblocks/layers/relu.hpp"

#include <array>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief Settings of DenseNet (the paper's DenseNet-BC (L = 100, k = 12) for CIFAR by default).
struct DenseNetOptions {
  Index depth = 100;                    ///< 6n + 4: n layers per block (40, 100, 190, 250, …)
  std::array<Index, 3> block_layers{};  ///< layers of each block; when any is set it is used instead of depth
  Index growth_rate = 12;               ///< k
  double compression = 0.5;             ///< θ: a transition maps m channels to floor(θ·m)
  Index bn_size = 4;                    ///< each layer's bottleneck has bn_size·k channels
  Index in_channels = 3;
  Index classes = 10;
  ImageSize image{32, 32};
};

/// \brief DenseNet-BC for small images (Huang et al. 2017, the CIFAR networks): a 3×3 conv stem to
/// 2k channels, three DenseBlocks with Transitions (BN-ReLU-Conv1×1 to floor(θ·m), AvgPool 2) between
/// them, BN-ReLU, global average pool, Linear. Initialised as torchvision's DenseNet: every conv
/// weight kaiming_normal_ (fan_in, gain √2), BatchNorm γ = 1, β = 0, the classifier's bias 0 (its
/// weight nn.Linear's default). Names as torchvision's `state_dict`: `features.conv0.weight`,
/// `features.denseblock1.denselayer1.norm1.weight`, `features.transition1.conv.weight`,
/// `features.norm5.running_var`, `classifier.weight`.
template <class S = float>
class DenseNet : public Sequential<Conv2d<S>, DenseBlock<S>, Transition<S>, DenseBlock<S>, Transition<S>, DenseBlock<S>,
                                   BatchNorm2d<S>, ReLU<S>, GlobalAvgPool<S>, Linear<S>> {
  using Base = Sequential<Conv2d<S>, DenseBlock<S>, Transition<S>, DenseBlock<S>, Transition<S>, DenseBlock<S>,
                          BatchNorm2d<S>, ReLU<S>, GlobalAvgPool<S>, Linear<S>>;

 public:
  static constexpr std::string_view name = "DenseNet";

  /// \brief The channel counts a DenseNetOptions gives.
  struct Plan {
    std::array<Index, 3> layers;  ///< per block
    std::array<Index, 3> in;      ///< each block's input channels
    std::array<Index, 2> transition_out;
    Index features;  ///< channels into norm5 and the classifier
  };

  explicit DenseNet(const DenseNetOptions& o = {}) : DenseNet(o, plan(o)) {}

  /// \brief The blocks' sizes for `o`; throws std::invalid_argument on a bad depth, block list or compression.
  /// \param o the network's settings
  /// \returns the layers, input channels and transition outputs of the three blocks
  /// \throws std::invalid_argument on a depth that is not 6n + 4, a block of fewer than 1 layer, a growth rate
  ///   below 1, or a compression outside (0, 1] or that leaves no channels
  static Plan plan(const DenseNetOptions& o) {
    auto fail = [](const std::string& what) { throw std::invalid_argument("DenseNet: " + what); };
    Plan p{};
    const bool listed = o.block_layers[0] != 0 || o.block_layers[1] != 0 || o.block_layers[2] != 0;
    if (listed) {
      for (Index n : o.block_layers)
        if (n < 1) fail("block_layers must all be >= 1, got " + std::to_string(n));
      p.layers = o.block_layers;
    } else {
      if (o.depth < 10 || (o.depth - 4) % 6 != 0)
        fail("depth must be 6n+4 (DenseNet-BC: 40, 100, 190, 250, ...), got " + std::to_string(o.depth));
      const Index n = (o.depth - 4) / 6;
      p.layers = {n, n, n};
    }
    if (o.growth_rate < 1) fail("growth_rate must be >= 1, got " + std::to_string(o.growth_rate));
    if (!(o.compression > 0 && o.compression <= 1))
      fail("compression must be in (0, 1], got " + std::to_string(o.compression));
    Index c = 2 * o.growth_rate;
    for (int b = 0; b < 3; ++b) {
      p.in[std::size_t(b)] = c;
      c += p.layers[std::size_t(b)] * o.growth_rate;
      if (b < 2) {
        c = static_cast<Index>(std::floor(o.compression * double(c)));
        if (c < 1) fail("compression " + std::to_string(o.compression) + " leaves no channels");
        p.transition_out[std::size_t(b)] = c;
      }
    }
    p.features = c;
    return p;
  }

  DenseBlock<S>& block(int i) {
    switch (i) {
      case 0:
        return this->template get<1>();
      case 1:
        return this->template get<3>();
      case 2:
        return this->template get<5>();
      default:
        throw std::out_of_range("DenseNet: block index must be 0, 1 or 2, got " + std::to_string(i));
    }
  }
  Linear<S>& classifier() noexcept { return this->template get<9>(); }

  /// \brief Re-draws the parameters as the constructor does, from `g` (see initialize()).
  /// \param g generator the new parameters are drawn from
  void reset_parameters(Generator& g) {
    this->for_each_layer([&g](auto& child) { initialize(child, g); });
    torchvision_init(g);
  }

 private:
  DenseNet(const DenseNetOptions& o, const Plan& p)
      : Base{Conv2d<S>(o.in_channels, 2 * o.growth_rate, 3, {.padding = 1, .bias = false}),
             DenseBlock<S>(p.in[0], o.growth_rate, p.layers[0], layer_options(o)),
             Transition<S>(p.in[0] + p.layers[0] * o.growth_rate, p.transition_out[0]),
             DenseBlock<S>(p.in[1], o.growth_rate, p.layers[1], layer_options(o)),
             Transition<S>(p.in[1] + p.layers[1] * o.growth_rate, p.transition_out[1]),
             DenseBlock<S>(p.in[2], o.growth_rate, p.layers[2], layer_options(o)),
             BatchNorm2d<S>(p.features),
             ReLU<S>(),
             GlobalAvgPool<S>(),
             Linear<S>(p.features, o.classes)} {
    this->set_child_names({"features.conv0", "features.denseblock1", "features.transition1", "features.denseblock2",
                           "features.transition2", "features.denseblock3", "features.norm5", "", "", "classifier"});
    torchvision_init(default_generator());
    this->set_image_size(o.image);
  }

  static DenseLayerOptions layer_options(const DenseNetOptions& o) { return DenseLayerOptions{.bn_size = o.bn_size}; }

  static bool ends_with(std::string_view s, std::string_view tail) {
    return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
  }

  /// kaiming_normal_ on every convolution weight (fan_in: its columns, In·k·k), classifier bias 0.
  void torchvision_init(Generator& g) {
    this->for_each_parameter([&](std::string_view n, auto& value, auto&) {
      if (ends_with(n, "conv0.weight") || ends_with(n, "conv1.weight") || ends_with(n, "conv2.weight") ||
          ends_with(n, ".conv.weight"))
        kaiming_normal(value, value.cols(), value.rows(), KaimingOptions{}, g);
    });
    classifier().bias().setZero();
  }
};

}  // namespace resblocks
