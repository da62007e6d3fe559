#pragma once
/// \file
/// \brief TorchShape: PyTorch's shape of a parameter that resblocks stores as a matrix of another
/// shape (Conv2d's weight: an Out × (In/groups·k·k) matrix, torch's [Out, In/groups, k, k]).
///
/// A layer whose parameter has such a shape passes it to the visitor of for_each_parameter as a
/// fourth argument, `f(name, value, grad, shape)`, when the visitor accepts one (see
/// detail::visit_parameter); visitors with three parameters are called as always. The element order
/// is the same either way (the matrix read row by row is torch's tensor), so only the shape differs.
/// save_safetensors writes this shape, and load_safetensors expects it.

#include "resblocks/core/types.hpp"

#include <array>
#include <cstddef>
#include <string_view>
#include <type_traits>

namespace resblocks {

/// \brief A tensor shape of rank 0 to 4, as PyTorch gives it.
struct TorchShape {
  std::array<Index, 4> dims{};
  std::size_t rank = 0;
};

namespace detail {

/// `f(name, value, grad, shape)` when the visitor takes the torch shape, else `f(name, value, grad)`.
template <class F, class V, class G>
void visit_parameter(F& f, std::string_view name, V& value, G& grad, const TorchShape& shape) {
  if constexpr (std::is_invocable_v<F&, std::string_view, V&, G&, const TorchShape&>)
    f(name, value, grad, shape);
  else
    f(name, value, grad);
}

}  // namespace detail
}  // namespace resblocks
