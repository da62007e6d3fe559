#pragma once
/// \file
/// \brief ImageDataset: labelled 8-bit images in memory, read from IDX files (MNIST, Fashion-MNIST)
/// with from_idx or load_mnist (needs zlib: link resblocks::io).

#include "resblocks/core/image_size.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/io/idx_file.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace resblocks {

/// \brief N images of C×H×W unsigned-byte pixels with an int label each. Image i is C·H·W
/// consecutive bytes in channels-last order: pixel (c, h, w) at `c + C·(w + W·h)`, the column order
/// of a batch (see ImageSize), so a batch is filled image by image.
class ImageDataset {
 public:
  /// An empty dataset.
  ImageDataset() = default;

  /// Takes `pixels` (labels.size() images, channels-last as above) and `labels` (each >= 0).
  /// `classes` = 0 means max label + 1; otherwise it must exceed every label.
  /// Throws std::invalid_argument on inconsistent sizes or labels.
  /// \param channels C
  /// \param height H
  /// \param width W
  /// \param pixels labels.size()·C·H·W bytes, image after image
  /// \param labels one label per image
  /// \param classes the number of classes, or 0 for max label + 1
  /// \throws std::invalid_argument when C, H or W is < 1, the pixel count does not match the labels, classes < 0,
  ///   or a label is negative or not below `classes`
  ImageDataset(Index channels, Index height, Index width, std::vector<unsigned char> pixels, std::vector<int> labels,
               int classes = 0)
      : m_channels(channels),
        m_height(height),
        m_width(width),
        m_pixels(std::move(pixels)),
        m_labels(std::move(labels)) {
    const std::string where = "ImageDataset: ";
    if (channels < 1 || height < 1 || width < 1)
      throw std::invalid_argument(where + "image shape " + std::to_string(channels) + "x" + std::to_string(height) +
                                  "x" + std::to_string(width) + " (CxHxW) must be positive");
    const auto count = static_cast<Index>(m_labels.size());
    if (static_cast<Index>(m_pixels.size()) != count * image_bytes())
      throw std::invalid_argument(where + std::to_string(m_pixels.size()) + " pixel bytes for " +
                                  std::to_string(count) + " labels, expected " + std::to_string(count) + " images of " +
                                  std::to_string(image_bytes()) + " bytes");
    if (classes < 0) throw std::invalid_argument(where + "classes must be >= 0 (0: max label + 1)");
    int max_label = -1;
    for (std::size_t i = 0; i < m_labels.size(); ++i) {
      const int l = m_labels[i];
      if (l < 0 || (classes > 0 && l >= classes))
        throw std::invalid_argument(
            where + "label " + std::to_string(i) + " is " + std::to_string(l) + ", outside " +
            (classes > 0 ? "0.." + std::to_string(classes - 1) + " (" + std::to_string(classes) + " classes)"
                         : std::string("the non-negative numbers")));
      max_label = std::max(max_label, l);
    }
    m_classes = classes > 0 ? classes : max_label + 1;
  }

  /// Images from an IDX file of unsigned bytes with dims (N, H, W) (one channel) or (N, H, W, C), labels
  /// from one with dims (N), unsigned bytes, each below `classes` (0: any; then classes() = max + 1).
  /// Throws std::runtime_error naming the file and the problem (for a label: its index and value).
  /// \param images_path the images' IDX file
  /// \param labels_path the labels' IDX file
  /// \param classes the number of classes, or 0 for max label + 1
  /// \returns the dataset
  /// \throws std::runtime_error on an unreadable or corrupt file, wrong types or dims, differing counts, or a
  ///   label not below `classes`
  /// \throws std::invalid_argument on classes < 0
  static ImageDataset from_idx(const std::string& images_path, const std::string& labels_path, int classes = 0) {
    IdxArray images = read_idx(images_path);
    const IdxArray labels = read_idx(labels_path);
    auto fail = [](const std::string& path, const std::string& problem) {
      throw std::runtime_error("ImageDataset::from_idx: '" + path + "': " + problem);
    };
    auto dims_string = [](const std::vector<Index>& dims) {
      std::string s = "(";
      for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
      return s + ")";
    };
    if (images.type != IdxType::u8)
      fail(images_path, "images must be unsigned bytes (type 0x08), the file holds type " +
                            detail::hex_byte(static_cast<unsigned>(images.type)));
    if (images.dims.size() != 3 && images.dims.size() != 4)
      fail(images_path, "images must have dims (N, H, W) or (N, H, W, C), the file has " + dims_string(images.dims));
    if (labels.type != IdxType::u8)
      fail(labels_path, "labels must be unsigned bytes (type 0x08), the file holds type " +
                            detail::hex_byte(static_cast<unsigned>(labels.type)));
    if (labels.dims.size() != 1)
      fail(labels_path, "labels must have dims (N), the file has " + dims_string(labels.dims));
    if (labels.dims[0] != images.dims[0])
      fail(labels_path, std::to_string(labels.dims[0]) + " labels but '" + images_path + "' holds " +
                            std::to_string(images.dims[0]) + " images");
    if (classes < 0)
      throw std::invalid_argument("ImageDataset::from_idx: classes must be >= 0, got " + std::to_string(classes));
    if (classes > 0)
      for (std::size_t i = 0; i < labels.data.size(); ++i)
        if (labels.data[i] >= classes)
          fail(labels_path, "label " + std::to_string(i) + " is " + std::to_string(labels.data[i]) + ", outside 0.." +
                                std::to_string(classes - 1) + " (the data set has " + std::to_string(classes) +
                                " classes): a corrupt or foreign labels file?");
    const Index channels = images.dims.size() == 4 ? images.dims[3] : 1;
    // Row-major (N, H, W, C) is already the channels-last order of a stored image.
    return ImageDataset(channels, images.dims[1], images.dims[2], std::move(images.data),
                        std::vector<int>(labels.data.begin(), labels.data.end()), classes);
  }

  [[nodiscard]] Index size() const noexcept { return static_cast<Index>(m_labels.size()); }
  [[nodiscard]] Index channels() const noexcept { return m_channels; }
  [[nodiscard]] Index height() const noexcept { return m_height; }
  [[nodiscard]] Index width() const noexcept { return m_width; }
  [[nodiscard]] ImageSize image_size() const noexcept { return {m_height, m_width}; }
  /// \brief Bytes per image, C·H·W.
  /// \returns C·H·W
  [[nodiscard]] Index image_bytes() const noexcept { return m_channels * m_height * m_width; }
  /// \brief Max label + 1, or the count given at construction.
  /// \returns the number of classes
  [[nodiscard]] int classes() const noexcept { return m_classes; }

  /// \brief The C·H·W pixels of image i (channels-last); throws std::out_of_range for a bad index.
  /// \param i the image's index
  /// \returns a pointer to its first byte
  /// \throws std::out_of_range unless 0 <= i < size()
  [[nodiscard]] const unsigned char* image(Index i) const { return m_pixels.data() + checked(i) * image_bytes(); }
  /// \brief The label of image i; throws std::out_of_range for a bad index.
  /// \param i the image's index
  /// \returns its label
  /// \throws std::out_of_range unless 0 <= i < size()
  [[nodiscard]] int label(Index i) const { return m_labels[static_cast<std::size_t>(checked(i))]; }
  /// \brief All pixels, image after image.
  /// \returns size()·C·H·W bytes
  [[nodiscard]] const std::vector<unsigned char>& pixels() const noexcept { return m_pixels; }
  /// \brief All labels.
  /// \returns one label per image
  [[nodiscard]] const std::vector<int>& labels() const noexcept { return m_labels; }

  /// \brief The first min(n, size()) images, as a new dataset with the same classes(); n >= 0.
  /// \param n the number of images to keep
  /// \returns the new dataset (a copy)
  /// \throws std::invalid_argument on n < 0
  [[nodiscard]] ImageDataset head(Index n) const {
    if (n < 0) throw std::invalid_argument("ImageDataset::head: n must be >= 0, got " + std::to_string(n));
    if (m_channels == 0) return {};  // a default-constructed dataset
    const Index k = std::min(n, size());
    return ImageDataset(m_channels, m_height, m_width,
                        std::vector<unsigned char>(m_pixels.begin(), m_pixels.begin() + k * image_bytes()),
                        std::vector<int>(m_labels.begin(), m_labels.begin() + k), m_classes > 0 ? m_classes : 0);
  }

  /// Mean and (population) standard deviation of all pixels scaled to [0, 1], for
  /// BatchLoaderOptions::mean and BatchLoaderOptions::std; {0, 0} when empty.
  /// \returns {mean, standard deviation}
  [[nodiscard]] std::pair<double, double> pixel_mean_std() const {
    if (m_pixels.empty()) return {0.0, 0.0};
    std::array<std::uint64_t, 256> histogram{};
    for (const unsigned char p : m_pixels) ++histogram[p];
    const auto n = static_cast<double>(m_pixels.size());
    double mean = 0;
    for (int v = 0; v < 256; ++v) mean += static_cast<double>(histogram[static_cast<std::size_t>(v)]) * (v / 255.0);
    mean /= n;
    double var = 0;  // two passes over the histogram: no cancellation
    for (int v = 0; v < 256; ++v) {
      const double d = v / 255.0 - mean;
      var += static_cast<double>(histogram[static_cast<std::size_t>(v)]) * d * d;
    }
    return {mean, std::sqrt(var / n)};
  }

 private:
  Index checked(Index i) const {
    if (i < 0 || i >= size())
      throw std::out_of_range("ImageDataset: image " + std::to_string(i) + " of " + std::to_string(size()));
    return i;
  }

  Index m_channels = 0;
  Index m_height = 0;
  Index m_width = 0;
  int m_classes = 0;
  std::vector<unsigned char> m_pixels;
  std::vector<int> m_labels;
};

/// The two files of an MNIST-style directory: `train-*` or `t10k-*`.
enum class MnistSplit { train, test };

/// Loads MNIST or Fashion-MNIST (same file names) from `dir`: `train-images-idx3-ubyte` and
/// `train-labels-idx1-ubyte` (or `t10k-...` for the test split), each plain or with `.gz`; the
/// dotted spelling `train-images.idx3-ubyte` is also accepted. Every label must be below `classes`
/// (10 for MNIST and Fashion-MNIST), checked at load. Throws std::runtime_error listing the files it
/// looked for when one is missing, naming the file, the index and the value of a bad label.
/// \param dir the directory holding the files
/// \param split the training or the test files
/// \param classes every label must be below it (0: any)
/// \returns the dataset
/// \throws std::runtime_error on a missing, unreadable or corrupt file or a label not below `classes`
/// \throws std::invalid_argument on classes < 0
inline ImageDataset load_mnist(const std::string& dir, MnistSplit split, int classes = 10) {
  const std::string prefix = split == MnistSplit::train ? "train" : "t10k";
  auto find = [&](const std::string& what, const std::string& idx) {
    const std::filesystem::path base(dir);
    std::string looked;
    for (const std::string& stem :
         {prefix + "-" + what + "-" + idx + "-ubyte", prefix + "-" + what + "." + idx + "-ubyte"})
      for (const char* suffix : {"", ".gz"}) {
        std::string candidate = (base / (stem + suffix)).string();
        std::error_code ec;
        if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
        looked += (looked.empty() ? "" : ", ") + candidate;
      }
    throw std::runtime_error("load_mnist: no " + prefix + " " + what + " in '" + dir + "': looked for " + looked);
  };
  const std::string images = find("images", "idx3");
  const std::string labels = find("labels", "idx1");
  return ImageDataset::from_idx(images, labels, classes);
}

}  // namespace resblocks
