#pragma once
/// \file
/// \brief BatchLoader: shuffled, normalised, optionally augmented mini-batches of an ImageDataset
/// on the image layout, with no allocation per batch (needs zlib through image_dataset.hpp).

#include "resblocks/core/image_size.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/io/image_dataset.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace resblocks {

/// Options of a BatchLoader.
struct BatchLoaderOptions {
  Index batch_size = 128;
  bool shuffle = true;     ///< a new random order every epoch
  bool drop_last = false;  ///< skip the final batch when it would be short
  std::uint64_t seed = 0;  ///< seeds the loader's own Generator (order and augmentation)
  double mean = 0;         ///< normalisation (pixel / 255 - mean) / std
  double std = 1;
  /// Random crop with zero padding (torchvision RandomCrop(size, padding)): the raw image is padded
  /// with `crop_padding` zero pixels on every side and an H×W window is taken at a uniform offset.
  Index crop_padding = 0;
  bool horizontal_flip = false;  ///< mirror left-right with probability 0.5 (after the crop)
  /// Sharding for data-parallel training (PyTorch's DistributedSampler): every rank shuffles the
  /// whole dataset with the same seed and takes the epoch order's positions rank, rank + world_size,
  /// rank + 2·world_size, …  Samples per rank: with drop_last, floor(N / world_size) (the tail of the
  /// order is dropped); otherwise, with pad_shards, ceil(N / world_size), the order wrapping around to
  /// its start (a few samples seen twice, every rank equally many: synchronous training), and without
  /// pad_shards N / world_size or one more (every sample exactly once: sharded evaluation).
  /// drop_last then also drops a rank's short last batch.
  Index rank = 0;
  Index world_size = 1;
  bool pad_shards = true;
};

/// \brief Mini-batches of an ImageDataset on the image layout: images() is C × (n·H·W), column
/// `w + W·(h + H·j)` holding pixel (h, w) of sample j, one row per channel, values
/// `(pixel / 255 - mean) / std`; labels() holds the n labels.
///
/// Usage: `for (...) { loader.start_epoch(); while (loader.next()) train(loader.images(), loader.labels()); }`
/// (the first next() starts an epoch by itself). The dataset must outlive the loader. Deterministic:
/// the order (Fisher–Yates) and the augmentation draw from one Generator seeded with options.seed,
/// so a seed gives the same batches, bit for bit, on every platform. With world_size > 1 the shuffle
/// still draws from the shared seed (the same order on every rank) and the augmentation from a
/// generator of its own per rank. Both batch buffers (full, and
/// the short last one when drop_last is off) are allocated by the constructor: next() never allocates.
template <class S>
class BatchLoader {
  static_assert(std::is_floating_point_v<S>, "BatchLoader: the scalar must be a floating-point type");

 public:
  using Scalar = S;

  /// Throws std::invalid_argument for batch_size < 1, std <= 0 (or not finite), a non-finite mean or
  /// crop_padding < 0, world_size < 1 or rank outside [0, world_size).
  /// \param data the dataset; must outlive the loader
  /// \param o batch size, order, normalisation, augmentation and sharding
  /// \throws std::invalid_argument on any of the settings above
  BatchLoader(const ImageDataset& data, BatchLoaderOptions o)
      : m_data(&data),
        m_options(o),
        m_rng(o.seed),
        m_rank_rng(o.seed ^ (0x9E3779B97F4A7C15ull * std::uint64_t(o.rank + 1))) {
    const std::string where = "BatchLoader: ";
    if (o.batch_size < 1)
      throw std::invalid_argument(where + "batch_size must be >= 1, got " + std::to_string(o.batch_size));
    if (!(o.std > 0) || !std::isfinite(o.std))
      throw std::invalid_argument(where + "std must be positive and finite, got " + std::to_string(o.std));
    if (!std::isfinite(o.mean)) throw std::invalid_argument(where + "mean must be finite");
    if (o.crop_padding < 0)
      throw std::invalid_argument(where + "crop_padding must be >= 0, got " + std::to_string(o.crop_padding));

    if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
      throw std::invalid_argument(where + "rank must be in [0, world_size) and world_size >= 1, got rank " +
                                  std::to_string(o.rank) + ", world_size " + std::to_string(o.world_size));

    const Index n = shard_size(data.size(), o);
    const Index full = n / o.batch_size;
    const Index rest = n % o.batch_size;
    m_batches = full + (rest > 0 && !o.drop_last ? 1 : 0);
    m_samples = o.drop_last ? full * o.batch_size : n;
    const Index area = data.height() * data.width();
    m_full.resize(data.channels(), full > 0 ? o.batch_size * area : 0);
    m_last.resize(data.channels(), rest > 0 && !o.drop_last ? rest * area : 0);
    m_labels.resize(static_cast<std::size_t>(std::min(n, o.batch_size)));
    m_order.resize(static_cast<std::size_t>(data.size()));
    for (int v = 0; v < 256; ++v) m_lut[static_cast<std::size_t>(v)] = static_cast<S>((v / 255.0 - o.mean) / o.std);
  }
  BatchLoader(const ImageDataset&&, BatchLoaderOptions) = delete;  // the dataset must outlive the loader

  /// Starts an epoch: a new order when shuffling (the identity permutation, shuffled), else 0..N-1.
  void start_epoch() {
    std::iota(m_order.begin(), m_order.end(), Index{0});
    if (m_options.shuffle)
      for (std::size_t i = m_order.size(); i > 1; --i)  // Fisher–Yates: swap i-1 with a uniform j <= i-1
        std::swap(m_order[i - 1], m_order[static_cast<std::size_t>(below(m_rng, i))]);
    m_position = 0;
    m_batch = -1;
    m_count = 0;
    m_started = true;
  }

  /// Fills the next batch of the epoch; false (and the batch unchanged) once the epoch is over,
  /// until start_epoch() is called.
  /// \returns true when a batch was filled, false at the end of the epoch
  bool next() {
    if (!m_started) start_epoch();
    const Index n = std::min(m_options.batch_size, m_samples - m_position);
    if (n <= 0) return false;
    Batch<S, Dynamic>& out = n == m_options.batch_size ? m_full : m_last;
    const Index bytes = m_data->image_bytes();
    const bool augment = m_options.crop_padding > 0 || m_options.horizontal_flip;
    std::array<S, 256> lut;  // a local copy: the compiler need not reload it after every store
    std::copy(m_lut.begin(), m_lut.end(), lut.begin());
    for (Index j = 0; j < n; ++j) {
      // Sample k of this rank's shard is the order's position rank + k·world_size (wrapping when padded).
      const Index in_shard = m_position + j;
      const Index i =
          m_order[static_cast<std::size_t>((m_options.rank + in_shard * m_options.world_size) % m_data->size())];
      m_labels[static_cast<std::size_t>(j)] = m_data->labels()[static_cast<std::size_t>(i)];
      const unsigned char* src = m_data->pixels().data() + i * bytes;
      S* dst = out.data() + j * bytes;  // the sample's H·W columns of C rows are contiguous
      if (augment)
        augmented(src, dst, lut.data());
      else
        for (Index k = 0; k < bytes; ++k) dst[k] = lut[src[k]];
    }
    m_position += n;
    m_count = n;
    ++m_batch;
    m_short = &out == &m_last;
    return true;
  }

  /// \brief The current batch, C × (n·H·W); valid after next() returned true.
  /// \returns the normalised images, in a buffer the loader owns
  [[nodiscard]] const Batch<S, Dynamic>& images() const noexcept { return m_short ? m_last : m_full; }
  /// \brief The labels of the current batch (n of them).
  /// \returns a view of the loader's label buffer
  [[nodiscard]] std::span<const int> labels() const noexcept {
    return {m_labels.data(), static_cast<std::size_t>(m_count)};
  }
  /// \brief Index of the current batch in the epoch (0-based); -1 before the epoch's first next().
  /// \returns the batch index, or -1
  [[nodiscard]] Index batch_index() const noexcept { return m_batch; }
  /// \brief Batches per epoch: ceil(N / batch_size), or floor with drop_last.
  /// \returns the number of batches next() fills per epoch
  [[nodiscard]] Index batches_per_epoch() const noexcept { return m_batches; }
  /// \brief Samples per epoch (of this rank's shard): N, or a multiple of batch_size with drop_last.
  /// \returns the number of samples per epoch
  [[nodiscard]] Index samples_per_epoch() const noexcept { return m_samples; }
  /// \brief Height and width of the images (for set_image_size on a network).
  /// \returns the dataset's image size
  [[nodiscard]] ImageSize image_size() const noexcept { return m_data->image_size(); }
  [[nodiscard]] const BatchLoaderOptions& options() const noexcept { return m_options; }

 private:
  /// Samples in a rank's shard of `total` (see BatchLoaderOptions::rank), before drop_last's batch cut.
  static Index shard_size(Index total, const BatchLoaderOptions& o) noexcept {
    const Index p = o.world_size;
    if (p == 1) return total;
    if (o.drop_last) return total / p;
    if (o.pad_shards) return (total + p - 1) / p;
    return o.rank < total ? (total - o.rank + p - 1) / p : 0;
  }

  Generator& augment_rng() noexcept { return m_options.world_size > 1 ? m_rank_rng : m_rng; }

  /// Uniform integer in [0, bound), unbiased (rejection of the top 2^64 mod bound values).
  static std::uint64_t below(Generator& rng, std::uint64_t bound) {
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      const std::uint64_t r = rng.next();
      if (r >= threshold) return r % bound;
    }
  }

  /// One sample through the random crop and flip: out(h, w) = padded(h + top, w' + left) with
  /// w' = W-1-w when flipped, padded(y, x) = raw(y - p, x - p) or 0 outside the image.
  void augmented(const unsigned char* src, S* dst, const S* lut) {
    const Index p = m_options.crop_padding;
    const Index c = m_data->channels();
    const Index height = m_data->height();
    const Index width = m_data->width();
    Index top = 0;
    Index left = 0;
    if (p > 0) {  // torchvision draws the row offset, then the column offset
      top = static_cast<Index>(below(augment_rng(), static_cast<std::uint64_t>(2 * p + 1)));
      left = static_cast<Index>(below(augment_rng(), static_cast<std::uint64_t>(2 * p + 1)));
    }
    const bool flip = m_options.horizontal_flip && (augment_rng().next() >> 63) != 0;
    const S zero = lut[0];
    // Source column sw = w + shift, or W-1-w + shift flipped; it is inside the image for w in [w0, w1).
    const Index shift = left - p;
    const Index w0 = std::clamp(flip ? shift : -shift, Index{0}, width);
    const Index w1 = std::clamp(flip ? width + shift : width - shift, w0, width);
    for (Index h = 0; h < height; ++h) {
      S* row = dst + c * width * h;
      const Index sh = h + top - p;
      if (sh < 0 || sh >= height) {
        std::fill(row, row + c * width, zero);
        continue;
      }
      const unsigned char* src_row = src + c * width * sh;
      std::fill(row, row + c * w0, zero);
      std::fill(row + c * w1, row + c * width, zero);
      if (!flip) {
        const Index offset = c * shift;  // output pixel w is source pixel w + shift
        for (Index k = c * w0; k < c * w1; ++k) row[k] = lut[src_row[k + offset]];
      } else {
        for (Index w = w0; w < w1; ++w) {
          const unsigned char* from = src_row + c * (width - 1 - w + shift);
          for (Index k = 0; k < c; ++k) row[c * w + k] = lut[from[k]];
        }
      }
    }
  }

  const ImageDataset* m_data;
  BatchLoaderOptions m_options;
  Generator m_rng;             ///< the shuffle (and, on one rank, the augmentation)
  Generator m_rank_rng;        ///< the augmentation when sharded: a stream of this rank's own
  std::array<S, 256> m_lut{};  ///< normalised value of each pixel byte
  std::vector<Index> m_order;  ///< sample order of the epoch
  Batch<S, Dynamic> m_full;    ///< C × (batch_size·H·W)
  Batch<S, Dynamic> m_last;    ///< C × (rest·H·W): the short last batch when drop_last is off
  std::vector<int> m_labels;
  Index m_batches = 0;
  Index m_samples = 0;
  Index m_position = 0;  ///< samples of the epoch already delivered
  Index m_batch = -1;
  Index m_count = 0;  ///< samples in the current batch
  bool m_started = false;
  bool m_short = false;  ///< the current batch is m_last
};

}  // namespace resblocks
