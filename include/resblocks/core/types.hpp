#pragma once
/// \file
/// \brief The data layout: a batch is a column-major matrix, rows = features, columns = samples.

#include <Eigen/Core>

#include <type_traits>

namespace resblocks {

using Index = Eigen::Index;

/// A feature count known only at run time (Eigen's `Dynamic`).
inline constexpr int Dynamic = Eigen::Dynamic;

/// A batch of activations: `Features` rows (static or Dynamic), one column per sample or position.
template <class Scalar, int Features = Eigen::Dynamic>
using Batch = Eigen::Matrix<Scalar, Features, Eigen::Dynamic>;

namespace detail {

/// Largest fixed-size parameter matrix kept inline (elements); larger ones live on the heap
/// even when their sizes are static, so that a layer is never too big for the stack.
inline constexpr int k_max_inline_elements = 64 * 64;

template <int Rows, int Cols>
inline constexpr bool inline_storage =
    Rows != Eigen::Dynamic&& Cols != Eigen::Dynamic&& Rows* Cols <= k_max_inline_elements;

/// Storage of a Rows×Cols parameter: a fixed-size matrix when small, else a dynamic one sized at construction.
template <class Scalar, int Rows, int Cols>
using ParamMatrix = std::conditional_t<inline_storage<Rows, Cols>, Eigen::Matrix<Scalar, Rows, Cols>,
                                       Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>;

template <class Scalar, int Rows>
using ParamVector = std::conditional_t<inline_storage<Rows, 1>, Eigen::Matrix<Scalar, Rows, 1>,
                                       Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>;

}  // namespace detail
}  // namespace resblocks
