#pragma once
/// \file
/// \brief Reduction: how a loss combines its per-element terms (PyTorch's `reduction=`).

namespace resblocks {

/// \brief `mean` divides the summed loss (and its gradient) by the number of terms, `sum` does not.
enum class Reduction { mean, sum };

}  // namespace resblocks
