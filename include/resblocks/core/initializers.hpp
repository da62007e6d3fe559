#pragma once
/// \file
/// \brief He/Kaiming initialisation as torch.nn.init computes it (gain, fan_in/fan_out, normal/uniform),
/// and initialize(): a network's random parameters drawn in a defined order.

#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace resblocks {

/// Which fan sets the variance: fan_in keeps forward activations' variance, fan_out the gradients'.
enum class FanMode { fan_in, fan_out };

/// The non-linearity that follows the initialised layer (its gain, as torch.nn.init.calculate_gain).
enum class Nonlinearity { linear, relu, leaky_relu, tanh, sigmoid };

/// \brief torch.nn.init.calculate_gain: 1, √2, √(2/(1+slope²)), 5/3, 1.
/// \param nonlinearity the non-linearity after the layer
/// \param negative_slope the leaky ReLU's slope (used for leaky_relu only)
/// \returns the gain: 1 for linear and sigmoid, √2 for relu, √(2/(1+slope²)) for leaky_relu, 5/3 for tanh
inline double calculate_gain(Nonlinearity nonlinearity, double negative_slope = 0.01) {
  switch (nonlinearity) {
    case Nonlinearity::relu:
      return std::sqrt(2.0);
    case Nonlinearity::leaky_relu:
      return std::sqrt(2.0 / (1.0 + negative_slope * negative_slope));
    case Nonlinearity::tanh:
      return 5.0 / 3.0;
    default:
      return 1.0;
  }
}

/// \brief Settings of kaiming_normal / kaiming_uniform (torch's defaults: a = 0, fan_in, leaky_relu,
/// which with a = 0 is ReLU's gain √2). torchvision's ResNets use fan_out with relu for convolutions.
struct KaimingOptions {
  FanMode mode = FanMode::fan_in;
  Nonlinearity nonlinearity = Nonlinearity::leaky_relu;
  double a = 0.0;  ///< negative slope of the leaky ReLU
};

namespace detail {
inline double kaiming_std(Index fan_in, Index fan_out, const KaimingOptions& o) {
  const Index fan = o.mode == FanMode::fan_in ? fan_in : fan_out;
  if (fan <= 0) throw std::invalid_argument("kaiming init: the fan must be > 0, got " + std::to_string(fan));
  return calculate_gain(o.nonlinearity, o.a) / std::sqrt(static_cast<double>(fan));
}
}  // namespace detail

/// \brief Fills `w` from N(0, std²), std = gain/√fan (torch.nn.init.kaiming_normal_).
/// \param w the weight matrix, filled column by column
/// \param fan_in inputs per output unit
/// \param fan_out outputs per input unit
/// \param o fan mode, non-linearity and its slope
/// \param g generator the values are drawn from
/// \throws std::invalid_argument when the fan `o.mode` selects is not > 0
template <class Matrix>
void kaiming_normal(Matrix& w, Index fan_in, Index fan_out, const KaimingOptions& o, Generator& g) {
  using S = typename Matrix::Scalar;
  const double std = detail::kaiming_std(fan_in, fan_out, o);
  for (Index j = 0; j < w.cols(); ++j)
    for (Index i = 0; i < w.rows(); ++i) w(i, j) = static_cast<S>(std * g.normal());
}

/// \brief Fills `w` from U(-b, b), b = gain·√(3/fan) (torch.nn.init.kaiming_uniform_).
/// \param w the weight matrix
/// \param fan_in inputs per output unit
/// \param fan_out outputs per input unit
/// \param o fan mode, non-linearity and its slope
/// \param g generator the values are drawn from
/// \throws std::invalid_argument when the fan `o.mode` selects is not > 0
template <class Matrix>
void kaiming_uniform(Matrix& w, Index fan_in, Index fan_out, const KaimingOptions& o, Generator& g) {
  fill_uniform(w, std::sqrt(3.0) * detail::kaiming_std(fan_in, fan_out, o), g);
}

namespace detail {
/// {fan_in, fan_out} of a layer's weight: a Conv2d's own (with the kernel area), else in/out features.
template <class L>
std::pair<Index, Index> layer_fans(const L& layer) {
  if constexpr (requires { layer.fan_in(); })
    return {layer.fan_in(), layer.fan_out()};
  else
    return {layer.in_features(), layer.out_features()};
}
}  // namespace detail

/// Kaiming-normal initialisation of a layer's `weight` (Conv2d or Linear: anything with weight(),
/// fan_in() and fan_out(), or in_features()/out_features() for a Linear); the bias is left alone.
/// \param layer the layer whose weight is drawn
/// \param o fan mode, non-linearity and its slope
/// \param g generator the values are drawn from
/// \throws std::invalid_argument when the fan `o.mode` selects is not > 0
template <class L>
void kaiming_normal(L& layer, const KaimingOptions& o = {}, Generator& g = default_generator()) {
  const auto [fan_in, fan_out] = detail::layer_fans(layer);
  kaiming_normal(layer.weight(), fan_in, fan_out, o, g);
}

/// \brief Kaiming-uniform initialisation of a layer's `weight` (see the kaiming_normal overload).
/// \param layer the layer whose weight is drawn
/// \param o fan mode, non-linearity and its slope
/// \param g generator the values are drawn from
/// \throws std::invalid_argument when the fan `o.mode` selects is not > 0
template <class L>
void kaiming_uniform(L& layer, const KaimingOptions& o = {}, Generator& g = default_generator()) {
  const auto [fan_in, fan_out] = detail::layer_fans(layer);
  kaiming_uniform(layer.weight(), fan_in, fan_out, o, g);
}

/// \brief Draws the random initial parameters of `layer` (a whole network) again from `g`, in
/// forward order: a layer with a `reset_parameters(Generator&)` member re-draws as its constructor
/// does (Linear, Conv2d, MultiHeadAttention, TokenEmbedding, learned PositionalEncoding, DenseLayer,
/// and the blocks and models with a scheme of their own: Highway, TransformerBlock, ResNet,
/// CifarResNet, CifarPreActResNet, DenseNet); a composite without one recurses into its children
/// (`for_each_layer`). Parameters that are not drawn keep their values (BatchNorm's γ and β, a
/// zero-initialised γ, Highway's gate bias): call it right after construction.
///
/// Layers draw from default_generator() when they are constructed, so a network built with
/// parentheses, `Net net(Linear(...), Linear(...))`, gets weights that depend on the order in which
/// the compiler evaluates the arguments (GCC and Clang differ). After `initialize(net, seed)` they
/// depend on the seed alone.
/// \param layer the layer or network to re-draw
/// \param g generator the parameters are drawn from
template <class L>
void initialize(L& layer, Generator& g) {
  if constexpr (requires { layer.reset_parameters(g); })
    layer.reset_parameters(g);
  else if constexpr (requires { layer.for_each_layer([](auto&) {}); })
    layer.for_each_layer([&g](auto& child) { initialize(child, g); });
}

/// \brief initialize(layer, g) with g = Generator(seed).
/// \param layer the layer or network to re-draw
/// \param seed seed of the generator
template <class L>
void initialize(L& layer, std::uint64_t seed) {
  Generator g(seed);
  initialize(layer, g);
}

}  // namespace resblocks
