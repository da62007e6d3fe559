#pragma once
/// \file
/// \brief from_nchw / to_nchw, from_nhwc / to_nhwc, from_nd / to_nd: between buffers in PyTorch's or
/// NumPy's memory order and resblocks' layout.
///
/// resblocks keeps a batch as a column-major matrix, features (channels) × columns: a dense batch of
/// n samples with d features is d × n, an image batch C × (n·H·W) with pixel (h, w) of sample s in
/// column w + W·(h + H·s) (core/image_size.hpp). In memory that is exactly a C-contiguous (n, d)
/// tensor and an NHWC (channels-last) tensor, so from_nd / from_nhwc copy straight through; PyTorch's
/// default NCHW order is transposed per sample by from_nchw / to_nchw. Mapping an NCHW buffer as
/// C × (n·H·W) directly gives wrong results with no error: use from_nchw.
///
/// Buffers are spans (`{pointer, size}`, or any contiguous container); their size is checked against
/// the shape (std::invalid_argument naming the function and both sizes). The `from_*` forms that take
/// an output matrix resize it only when its shape changes, so a steady loop does not allocate.

#include "resblocks/core/image_size.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief The shape (N, C, H, W) of an image tensor, whatever its memory order.
struct ImageTensorShape {
  Index n = 0, c = 0, h = 0, w = 0;
  [[nodiscard]] constexpr Index size() const noexcept { return n * c * h * w; }
  [[nodiscard]] constexpr ImageSize image() const noexcept { return {h, w}; }
  [[nodiscard]] std::string str() const {
    return "[" + std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) +
           "]";
  }
};

namespace detail {

inline void check_layout_shape(std::string_view function, const ImageTensorShape& s, std::size_t buffer) {
  if (s.n < 0 || s.c < 0 || s.h < 0 || s.w < 0)
    throw std::invalid_argument(std::string(function) + ": negative dimension in the shape " + s.str());
  if (static_cast<std::size_t>(s.size()) != buffer)
    throw std::invalid_argument(std::string(function) + ": the buffer has " + std::to_string(buffer) +
                                " elements, the shape " + s.str() + " needs " + std::to_string(s.size()));
}

template <class M>
void check_layout_rows(std::string_view function, const ImageTensorShape& s) {
  if (M::RowsAtCompileTime != Eigen::Dynamic && M::RowsAtCompileTime != s.c)
    throw std::invalid_argument(std::string(function) + ": the batch type has " + std::to_string(M::RowsAtCompileTime) +
                                " rows (channels), the shape " + s.str() + " has " + std::to_string(s.c));
}

/// The image shape of a C × (n·H·W) batch of images `size`.
template <class Derived>
ImageTensorShape image_shape_of(std::string_view function, const Eigen::MatrixBase<Derived>& x, ImageSize size) {
  if (size.empty() || x.cols() % size.area() != 0)
    throw std::invalid_argument(std::string(function) + ": a " + std::to_string(x.rows()) + "x" +
                                std::to_string(x.cols()) + " batch is not a whole number of " + size.str() + " images");
  return {x.cols() / size.area(), x.rows(), size.height, size.width};
}

}  // namespace detail

/// \brief `out` = the NCHW buffer `data` (PyTorch's default order) in resblocks' layout, C × (n·H·W).
/// \param data n·C·H·W values in NCHW order
/// \param shape (N, C, H, W)
/// \param out receives the batch, resized when its shape changes
/// \throws std::invalid_argument on a negative dimension, a buffer of another size, or a static row count of
///   `Matrix` other than C
template <class Matrix>
void from_nchw(std::span<const typename Matrix::Scalar> data, const ImageTensorShape& shape, Matrix& out) {
  detail::check_layout_shape("from_nchw", shape, data.size());
  detail::check_layout_rows<Matrix>("from_nchw", shape);
  out.resize(shape.c, shape.n * shape.h * shape.w);
  const Index hw = shape.h * shape.w;
  for (Index s = 0; s < shape.n; ++s)
    for (Index c = 0; c < shape.c; ++c) {
      const auto* plane = data.data() + (s * shape.c + c) * hw;  // (s, c, ·, ·): hw consecutive pixels
      for (Index p = 0; p < hw; ++p) out(c, s * hw + p) = plane[p];
    }
}

/// \brief The NCHW buffer `data` as a new C × (n·H·W) matrix: `auto x = from_nchw<float>(buffer, {n, c, h, w});`.
/// \param data n·C·H·W values in NCHW order
/// \param shape (N, C, H, W)
/// \returns the C × (n·H·W) batch
/// \throws std::invalid_argument on a negative dimension or a buffer of another size
template <class S>
Batch<S, Eigen::Dynamic> from_nchw(std::span<const S> data, const ImageTensorShape& shape) {
  Batch<S, Eigen::Dynamic> out;
  from_nchw(data, shape, out);
  return out;
}

/// \brief Writes the C × (n·H·W) batch `x` of images `size` into `out` in NCHW order.
/// \param x the batch
/// \param size height and width of each image
/// \param out receives n·C·H·W values
/// \throws std::invalid_argument when x is not a whole number of `size` images or out has another size
template <class Derived>
void to_nchw(const Eigen::MatrixBase<Derived>& x, ImageSize size, std::span<typename Derived::Scalar> out) {
  const ImageTensorShape shape = detail::image_shape_of("to_nchw", x, size);
  detail::check_layout_shape("to_nchw", shape, out.size());
  const Index hw = size.area();
  for (Index s = 0; s < shape.n; ++s)
    for (Index c = 0; c < shape.c; ++c) {
      auto* plane = out.data() + (s * shape.c + c) * hw;
      for (Index p = 0; p < hw; ++p) plane[p] = x(c, s * hw + p);
    }
}

/// \brief `out` = the NHWC (channels-last) buffer `data` in resblocks' layout: the same memory order, a copy.
/// \param data n·H·W·C values in NHWC order
/// \param shape (N, C, H, W)
/// \param out receives the batch, resized when its shape changes
/// \throws std::invalid_argument on a negative dimension, a buffer of another size, or a static row count of
///   `Matrix` other than C
template <class Matrix>
void from_nhwc(std::span<const typename Matrix::Scalar> data, const ImageTensorShape& shape, Matrix& out) {
  detail::check_layout_shape("from_nhwc", shape, data.size());
  detail::check_layout_rows<Matrix>("from_nhwc", shape);
  out = Eigen::Map<const Eigen::Matrix<typename Matrix::Scalar, Eigen::Dynamic, Eigen::Dynamic>>(
      data.data(), shape.c, shape.n * shape.h * shape.w);
}

/// \brief The NHWC buffer `data` as a new C × (n·H·W) matrix.
/// \param data n·H·W·C values in NHWC order
/// \param shape (N, C, H, W)
/// \returns the C × (n·H·W) batch
/// \throws std::invalid_argument on a negative dimension or a buffer of another size
template <class S>
Batch<S, Eigen::Dynamic> from_nhwc(std::span<const S> data, const ImageTensorShape& shape) {
  Batch<S, Eigen::Dynamic> out;
  from_nhwc(data, shape, out);
  return out;
}

/// \brief Writes the C × (n·H·W) batch `x` of images `size` into `out` in NHWC order.
/// \param x the batch
/// \param size height and width of each image
/// \param out receives n·H·W·C values
/// \throws std::invalid_argument when x is not a whole number of `size` images or out has another size
template <class Derived>
void to_nhwc(const Eigen::MatrixBase<Derived>& x, ImageSize size, std::span<typename Derived::Scalar> out) {
  const ImageTensorShape shape = detail::image_shape_of("to_nhwc", x, size);
  detail::check_layout_shape("to_nhwc", shape, out.size());
  Eigen::Map<Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>>(out.data(), x.rows(), x.cols()) =
      x;
}

/// \brief `out` = the row-major (n, d) buffer `data` (a PyTorch/NumPy dense batch) as resblocks' d × n.
/// \param data n·d values, sample after sample
/// \param n samples
/// \param d features per sample
/// \param out receives the d × n batch, resized when its shape changes
/// \throws std::invalid_argument on a negative n or d, a buffer of another size, or a static row count of
///   `Matrix` other than d
template <class Matrix>
void from_nd(std::span<const typename Matrix::Scalar> data, Index n, Index d, Matrix& out) {
  detail::check_layout_shape("from_nd", {n, d, 1, 1}, data.size());
  detail::check_layout_rows<Matrix>("from_nd", {n, d, 1, 1});
  out = Eigen::Map<const Eigen::Matrix<typename Matrix::Scalar, Eigen::Dynamic, Eigen::Dynamic>>(data.data(), d, n);
}

/// \brief The row-major (n, d) buffer `data` as a new d × n matrix.
/// \param data n·d values, sample after sample
/// \param n samples
/// \param d features per sample
/// \returns the d × n batch
/// \throws std::invalid_argument on a negative n or d, or a buffer of another size
template <class S>
Batch<S, Eigen::Dynamic> from_nd(std::span<const S> data, Index n, Index d) {
  Batch<S, Eigen::Dynamic> out;
  from_nd(data, n, d, out);
  return out;
}

/// \brief Writes the d × n batch `x` into `out` as a row-major (n, d) buffer.
/// \param x the batch
/// \param out receives n·d values
/// \throws std::invalid_argument when out's size is not d·n
template <class Derived>
void to_nd(const Eigen::MatrixBase<Derived>& x, std::span<typename Derived::Scalar> out) {
  detail::check_layout_shape("to_nd", {x.cols(), x.rows(), 1, 1}, out.size());
  Eigen::Map<Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>>(out.data(), x.rows(), x.cols()) =
      x;
}

}  // namespace resblocks
