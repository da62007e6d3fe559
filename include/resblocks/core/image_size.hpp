#pragma once
/// \file
/// \brief ImageSize: the spatial size (height × width) that image layers carry at run time.

#include "resblocks/core/types.hpp"

#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief Height and width of the images in a batch. On the image layout a batch is
/// channels × (n·height·width): column `w + width·(h + height·sample)` holds pixel (h, w) of a
/// sample, so each sample is `height·width` consecutive columns (PyTorch's NHWC order).
struct ImageSize {
  Index height = 0;
  Index width = 0;

  [[nodiscard]] constexpr Index area() const noexcept { return height * width; }
  [[nodiscard]] constexpr bool empty() const noexcept { return height <= 0 || width <= 0; }
  friend constexpr bool operator==(const ImageSize&, const ImageSize&) = default;
  [[nodiscard]] std::string str() const { return std::to_string(height) + "x" + std::to_string(width); }
};

namespace detail {

/// The blocks a layer's forward epilogue runs on when each is one whole sample of its output:
/// `columns` per sample, `samples` of them (0, 0: blocks are not samples). Conv2d reports them
/// (forward_sample_blocks) so that a BatchNorm2d after it sums its statistics sample by sample.
struct SampleBlocks {
  Index columns = 0;
  Index samples = 0;
  explicit operator bool() const noexcept { return columns > 0 && samples > 0; }
};

/// Throws unless `size` has been set (a layer's set_image_size was called).
inline void check_image_size_set(std::string_view layer, ImageSize size) {
  if (size.empty())
    throw std::logic_error(std::string(layer) +
                           ": image size not set; call set_image_size({height, width}) on the network first");
}

/// Throws unless a batch with `columns` columns holds whole images of `size`; returns the sample count.
inline Index samples_in(std::string_view layer, ImageSize size, Index channels, Index columns) {
  check_image_size_set(layer, size);
  if (columns % size.area() != 0)
    throw std::invalid_argument(std::string(layer) + ": input is " + std::to_string(channels) + "x" +
                                std::to_string(columns) + " (channels x columns), not a whole number of " + size.str() +
                                " images");
  return columns / size.area();
}

}  // namespace detail
}  // namespace resblocks
