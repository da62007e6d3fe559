#pragma once
/// \file
/// \brief Run-time shape checks that throw std::invalid_argument naming the layer and both shapes.

#include "resblocks/core/types.hpp"

#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks::detail {

inline std::string shape_string(Index rows, Index cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

/// Throws unless `x` has `expected` rows (features). `expected < 0` accepts any.
template <class X>
void check_input_features(std::string_view layer, Index expected, const X& x) {
  if (expected >= 0 && x.rows() != expected)
    throw std::invalid_argument(std::string(layer) + ": input is " + shape_string(x.rows(), x.cols()) +
                                " (features x columns), expected " + std::to_string(expected) + " features");
}

/// Throws unless the gradient `dy` has the shape of the last forward output.
template <class G>
void check_output_gradient(std::string_view layer, Index rows, Index cols, const G& dy) {
  if (dy.rows() != rows || dy.cols() != cols)
    throw std::invalid_argument(std::string(layer) + ": output gradient is " + shape_string(dy.rows(), dy.cols()) +
                                ", expected " + shape_string(rows, cols) + " (the shape of the last forward output)");
}

/// Throws when backward() is called before any forward().
inline void check_forward_done(std::string_view layer, bool done) {
  if (!done) throw std::logic_error(std::string(layer) + ": backward() called before forward()");
}

/// Throws unless a run-time feature count agrees with the static one (`fixed`, or Dynamic).
inline void check_features(std::string_view layer, std::string_view what, int fixed, Index value) {
  if (value < 0) throw std::invalid_argument(std::string(layer) + ": " + std::string(what) + " must be >= 0");
  if (fixed != Dynamic && value != fixed)
    throw std::invalid_argument(std::string(layer) + ": " + std::string(what) + " is " + std::to_string(value) +
                                " but the type fixes it to " + std::to_string(fixed));
}

}  // namespace resblocks::detail
