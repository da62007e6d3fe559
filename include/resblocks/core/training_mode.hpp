#pragma once
/// \file
/// \brief set_training / eval / train: switch a whole network between training and evaluation mode.
///
/// The mode decides what `forward` does: BatchNorm2d normalises with the batch's statistics (and
/// updates its running ones) in training mode, with the running statistics in eval mode; Dropout
/// drops in training mode and passes through in eval mode. `infer` follows the mode too, except
/// that it never drops (it is const and draws no random numbers). Networks start in training mode.
/// Forgetting eval mode before predicting is a silent error (a batch's own statistics instead of
/// the running ones): call `eval(net)` first.

#include "resblocks/core/layer.hpp"

namespace resblocks {

/// Puts every layer of `net` (any layer or block) in training (`true`) or eval (`false`) mode;
/// layers without a mode are unaffected.
/// \param net the layer or network
/// \param training true for training mode, false for evaluation
template <class L>
void set_training(L& net, bool training) {
  detail::propagate_training(net, training);
}

/// \brief `set_training(net, false)`: running statistics, no dropout (PyTorch's `model.eval()`).
/// \param net the layer or network
template <class L>
void eval(L& net) {
  set_training(net, false);
}

/// \brief `set_training(net, true)`: batch statistics, dropout (PyTorch's `model.train()`).
/// \param net the layer or network
template <class L>
void train(L& net) {
  set_training(net, true);
}

}  // namespace resblocks
