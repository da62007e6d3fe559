// BatchLoader: layout, normalisation, order, augmentation, determinism, no allocation per batch.
// This file replaces malloc and friends (glibc) for the whole io_tests executable, to count the
// allocations next() makes; the replacements forward to glibc's own.
#include "support/catch.hpp"

#include <resblocks/io/batch_loader.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>
// After the other headers: it replaces malloc, which they declare.
#include "support/allocation_counter.hpp"

using namespace resblocks;

namespace {

/// Pixel (c, h, w) of image n: 1..255, distinct within an image of up to 5x6 pixels and 3 channels.
unsigned char test_pixel(Index n, Index c, Index h, Index w) {
  return static_cast<unsigned char>(1 + (37 * n + 11 * h + 3 * w + 67 * c) % 255);
}

/// n images of C×H×W test pixels, labelled with their index.
ImageDataset make_dataset(Index n, Index channels, Index height, Index width) {
  std::vector<unsigned char> pixels(static_cast<std::size_t>(n * channels * height * width));
  std::vector<int> labels;
  for (Index i = 0; i < n; ++i) {
    labels.push_back(static_cast<int>(i));
    for (Index h = 0; h < height; ++h)
      for (Index w = 0; w < width; ++w)
        for (Index c = 0; c < channels; ++c)
          pixels[static_cast<std::size_t>(i * channels * height * width + c + channels * (w + width * h))] =
              test_pixel(i, c, h, w);
  }
  return ImageDataset(channels, height, width, std::move(pixels), std::move(labels));
}

/// All batches of one epoch, as (images, labels).
template <class S>
std::vector<std::pair<Batch<S, Dynamic>, std::vector<int>>> epoch(BatchLoader<S>& loader) {
  std::vector<std::pair<Batch<S, Dynamic>, std::vector<int>>> out;
  loader.start_epoch();
  while (loader.next())
    out.emplace_back(loader.images(), std::vector<int>(loader.labels().begin(), loader.labels().end()));
  return out;
}

}  // namespace

TEST_CASE("BatchLoader: shapes, column layout and counts in order", "[io][loader]") {
  const ImageDataset data = make_dataset(5, 2, 3, 4);
  BatchLoaderOptions o;
  o.batch_size = 2;
  o.shuffle = false;
  BatchLoader<float> loader(data, o);
  REQUIRE(loader.batches_per_epoch() == 3);
  REQUIRE(loader.samples_per_epoch() == 5);
  REQUIRE(loader.image_size() == ImageSize{3, 4});
  REQUIRE(loader.batch_index() == -1);
  for (Index b = 0; b < 3; ++b) {
    REQUIRE(loader.next());
    REQUIRE(loader.batch_index() == b);
    const Index n = b < 2 ? 2 : 1;
    const auto& x = loader.images();
    REQUIRE(x.rows() == 2);
    REQUIRE(x.cols() == n * 12);
    REQUIRE(loader.labels().size() == static_cast<std::size_t>(n));
    for (Index j = 0; j < n; ++j) {
      const Index i = 2 * b + j;
      REQUIRE(loader.labels()[static_cast<std::size_t>(j)] == i);
      for (Index h = 0; h < 3; ++h)
        for (Index w = 0; w < 4; ++w)
          for (Index c = 0; c < 2; ++c)
            REQUIRE(x(c, w + 4 * (h + 3 * j)) == static_cast<float>(test_pixel(i, c, h, w) / 255.0));
    }
  }
  REQUIRE_FALSE(loader.next());
  REQUIRE_FALSE(loader.next());  // stays over until start_epoch()
  loader.start_epoch();
  REQUIRE(loader.batch_index() == -1);
  REQUIRE(loader.next());
  REQUIRE(loader.labels()[0] == 0);
}

TEST_CASE("BatchLoader: normalisation (pixel / 255 - mean) / std", "[io][loader]") {
  const ImageDataset data = make_dataset(3, 1, 2, 2);
  BatchLoaderOptions o;
  o.batch_size = 3;
  o.shuffle = false;
  o.mean = 0.5;
  o.std = 0.25;
  BatchLoader<double> loader(data, o);
  REQUIRE(loader.next());
  // Image 1, pixel (0, 1, 0): 1 + (37 + 11) = 49 -> (49/255 - 0.5) * 4.
  REQUIRE(loader.images()(0, 0 + 2 * (1 + 2 * 1)) == Approx((49.0 / 255 - 0.5) * 4).epsilon(1e-15));
  for (Index i = 0; i < 3; ++i)
    for (Index h = 0; h < 2; ++h)
      for (Index w = 0; w < 2; ++w)
        REQUIRE(loader.images()(0, w + 2 * (h + 2 * i)) ==
                Approx((test_pixel(i, 0, h, w) / 255.0 - 0.5) / 0.25).epsilon(1e-15));

  BatchLoader<float> lf(data, o);
  REQUIRE(lf.next());
  REQUIRE(lf.images().cast<double>().isApprox(loader.images(), 1e-6));
}

TEST_CASE("BatchLoader: every sample once per shuffled epoch, in a new order each epoch", "[io][loader]") {
  const ImageDataset data = make_dataset(37, 1, 2, 3);
  BatchLoaderOptions o;
  o.batch_size = 8;
  o.seed = 42;
  BatchLoader<float> loader(data, o);
  std::vector<std::vector<int>> orders;
  for (int e = 0; e < 3; ++e) {
    std::vector<int> order;
    for (const auto& [x, labels] : epoch(loader)) {
      for (std::size_t j = 0; j < labels.size(); ++j) {
        order.push_back(labels[j]);
        // The image is the one of its label.
        for (Index k = 0; k < 6; ++k)
          REQUIRE(x(0, static_cast<Index>(j) * 6 + k) ==
                  static_cast<float>(test_pixel(labels[j], 0, k / 3, k % 3) / 255.0));
      }
    }
    REQUIRE(order.size() == 37);
    REQUIRE(std::set<int>(order.begin(), order.end()).size() == 37);
    orders.push_back(order);
  }
  std::vector<int> identity(37);
  std::iota(identity.begin(), identity.end(), 0);
  REQUIRE(orders[0] != identity);
  REQUIRE(orders[0] != orders[1]);
  REQUIRE(orders[1] != orders[2]);
}

TEST_CASE("BatchLoader: the same seed gives the same batches, another seed others", "[io][loader]") {
  const ImageDataset data = make_dataset(50, 2, 5, 6);
  BatchLoaderOptions o;
  o.batch_size = 16;
  o.seed = 7;
  o.crop_padding = 2;
  o.horizontal_flip = true;
  BatchLoader<float> a(data, o);
  BatchLoader<float> b(data, o);
  o.seed = 8;
  BatchLoader<float> c(data, o);
  for (int e = 0; e < 2; ++e) {
    const auto ea = epoch(a);
    const auto eb = epoch(b);
    const auto ec = epoch(c);
    REQUIRE(ea.size() == 4);
    bool differs = false;
    for (std::size_t i = 0; i < ea.size(); ++i) {
      REQUIRE(ea[i].second == eb[i].second);
      REQUIRE((ea[i].first.array() == eb[i].first.array()).all());  // bit for bit
      differs = differs || ea[i].second != ec[i].second;
    }
    REQUIRE(differs);
  }
}

TEST_CASE("BatchLoader: drop_last", "[io][loader]") {
  const ImageDataset data = make_dataset(10, 1, 2, 2);
  BatchLoaderOptions o;
  o.batch_size = 4;
  o.drop_last = true;
  BatchLoader<float> dropping(data, o);
  REQUIRE(dropping.batches_per_epoch() == 2);
  REQUIRE(dropping.samples_per_epoch() == 8);
  auto batches = epoch(dropping);
  REQUIRE(batches.size() == 2);
  std::set<int> seen;
  for (const auto& [x, labels] : batches) {
    REQUIRE(x.cols() == 4 * 4);
    seen.insert(labels.begin(), labels.end());
  }
  REQUIRE(seen.size() == 8);

  o.drop_last = false;
  BatchLoader<float> keeping(data, o);
  REQUIRE(keeping.batches_per_epoch() == 3);
  REQUIRE(keeping.samples_per_epoch() == 10);
  batches = epoch(keeping);
  REQUIRE(batches.size() == 3);
  REQUIRE(batches[2].first.cols() == 2 * 4);
  REQUIRE(batches[2].second.size() == 2);

  o.batch_size = 32;  // one short batch, or none
  BatchLoader<float> single(data, o);
  REQUIRE(epoch(single).size() == 1);
  o.drop_last = true;
  BatchLoader<float> none(data, o);
  REQUIRE(none.batches_per_epoch() == 0);
  REQUIRE_FALSE(none.next());
}

namespace {
/// Which transform of its raw image sample j of `x` is: the shift (dy, dx) and flip with
/// out(h, w) = raw(h + dy, w' + dx), w' = W-1-w if flipped, and `fill` outside the image.
/// Returns every match as dy*100 + dx*10 + flip (dy, dx in 0..2p stored with +p).
std::vector<int> matches(const Batch<double, Dynamic>& x, Index j, Index image, Index c_count, Index height,
                         Index width, Index p, bool try_flip, double fill) {
  std::vector<int> found;
  for (Index dy = -p; dy <= p; ++dy)
    for (Index dx = -p; dx <= p; ++dx)
      for (int flip = 0; flip <= (try_flip ? 1 : 0); ++flip) {
        bool ok = true;
        for (Index h = 0; h < height && ok; ++h)
          for (Index w = 0; w < width && ok; ++w)
            for (Index c = 0; c < c_count && ok; ++c) {
              const Index sh = h + dy;
              const Index sw = (flip ? width - 1 - w : w) + dx;
              const bool inside = sh >= 0 && sh < height && sw >= 0 && sw < width;
              const double expected = inside ? test_pixel(image, c, sh, sw) / 255.0 : fill;
              ok = x(c, w + width * (h + height * j)) == expected;
            }
        if (ok) found.push_back(static_cast<int>((dy + p) * 100 + (dx + p) * 10 + flip));
      }
  return found;
}

/// Maps a batch normalised with mean 0.1, std 0.5 back to the raw pixel / 255 (the nearest
/// multiple of 1/255, undoing the rounding of the affine map), and `fill` to -1.
Batch<double, Dynamic> unnormalise(const Batch<double, Dynamic>& x, double fill) {
  return x.unaryExpr([fill](double v) { return v == fill ? -1.0 : std::round((v * 0.5 + 0.1) * 255) / 255; });
}
}  // namespace

TEST_CASE("BatchLoader: no augmentation leaves the pixels, a flip mirrors the columns", "[io][loader][augment]") {
  const ImageDataset data = make_dataset(40, 3, 5, 6);
  BatchLoaderOptions o;
  o.batch_size = 40;
  o.horizontal_flip = true;
  BatchLoader<double> loader(data, o);
  int flipped = 0;
  for (int e = 0; e < 2; ++e) {
    loader.start_epoch();
    REQUIRE(loader.next());
    for (Index j = 0; j < 40; ++j) {
      const auto found =
          matches(loader.images(), j, loader.labels()[static_cast<std::size_t>(j)], 3, 5, 6, 0, true, -1);
      REQUIRE(found.size() == 1);  // exactly one of identity and mirror
      flipped += found[0] % 10;
    }
  }
  REQUIRE(flipped > 0);
  REQUIRE(flipped < 80);

  o.horizontal_flip = false;
  BatchLoader<double> plain(data, o);
  REQUIRE(plain.next());
  for (Index j = 0; j < 40; ++j)
    REQUIRE(matches(plain.images(), j, plain.labels()[static_cast<std::size_t>(j)], 3, 5, 6, 0, true, -1) ==
            std::vector<int>{0});  // the identity, never the mirror
}

TEST_CASE("BatchLoader: random crop shifts by up to the padding and fills with the normalised 0",
          "[io][loader][augment]") {
  const ImageDataset data = make_dataset(50, 1, 5, 6);
  BatchLoaderOptions o;
  o.batch_size = 50;
  o.crop_padding = 2;
  o.mean = 0.1;
  o.std = 0.5;
  const double fill = (0.0 - 0.1) / 0.5;
  BatchLoader<double> loader(data, o);
  std::set<int> shifts;
  for (int e = 0; e < 4; ++e) {
    loader.start_epoch();
    REQUIRE(loader.next());
    const Batch<double, Dynamic> x = unnormalise(loader.images(), fill);
    for (Index j = 0; j < 50; ++j) {
      const auto found = matches(x, j, loader.labels()[static_cast<std::size_t>(j)], 1, 5, 6, 2, false, -1);
      REQUIRE(found.size() == 1);
      shifts.insert(found[0]);
    }
    REQUIRE((loader.images().array() == fill).any());
  }
  REQUIRE(shifts.size() == 25);  // every offset of the 5x5 window occurs

  o.horizontal_flip = true;  // crop and flip together
  BatchLoader<double> both(data, o);
  std::set<int> transforms;
  for (int e = 0; e < 4; ++e) {
    both.start_epoch();
    REQUIRE(both.next());
    const Batch<double, Dynamic> x = unnormalise(both.images(), fill);
    for (Index j = 0; j < 50; ++j) {
      const auto found = matches(x, j, both.labels()[static_cast<std::size_t>(j)], 1, 5, 6, 2, true, -1);
      REQUIRE(found.size() == 1);
      transforms.insert(found[0]);
    }
  }
  REQUIRE(transforms.size() > 30);  // of the 50 shift-and-flip combinations

  o.crop_padding = 7;  // more than the image: some crops hold no pixel at all
  BatchLoader<double> wide(data, o);
  int blank = 0;
  for (int e = 0; e < 4; ++e) {
    wide.start_epoch();
    REQUIRE(wide.next());
    const Batch<double, Dynamic> x = unnormalise(wide.images(), fill);
    for (Index j = 0; j < 50; ++j) {
      REQUIRE_FALSE(matches(x, j, wide.labels()[static_cast<std::size_t>(j)], 1, 5, 6, 7, true, -1).empty());
      blank += (x.middleCols(30 * j, 30).array() == -1.0).all() ? 1 : 0;
    }
  }
  REQUIRE(blank > 0);
  REQUIRE(blank < 200);
}

TEST_CASE("BatchLoader: options are validated", "[io][loader][error]") {
  const ImageDataset data = make_dataset(4, 1, 2, 2);
  auto with = [](auto change) {
    BatchLoaderOptions o;
    change(o);
    return o;
  };
  REQUIRE_THROWS_WITH(BatchLoader<float>(data, with([](auto& o) { o.batch_size = 0; })),
                      rbtest::contains("batch_size"));
  REQUIRE_THROWS_WITH(BatchLoader<float>(data, with([](auto& o) { o.std = 0; })),
                      rbtest::contains("std must be positive"));
  REQUIRE_THROWS_WITH(BatchLoader<float>(data, with([](auto& o) { o.std = -1; })),
                      rbtest::contains("std must be positive"));
  REQUIRE_THROWS_AS(BatchLoader<float>(data, with([](auto& o) { o.std = std::numeric_limits<double>::quiet_NaN(); })),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(BatchLoader<float>(data, with([](auto& o) { o.mean = std::numeric_limits<double>::infinity(); })),
                    std::invalid_argument);
  REQUIRE_THROWS_WITH(BatchLoader<float>(data, with([](auto& o) { o.crop_padding = -1; })),
                      rbtest::contains("crop_padding"));
  REQUIRE_THROWS_AS(BatchLoader<float>(data, with([](auto& o) { o.batch_size = -3; })), std::invalid_argument);
}

TEST_CASE("BatchLoader: rank/world_size shards one shared shuffle (DistributedSampler semantics)",
          "[io][loader][shard]") {
  const ImageDataset data = make_dataset(10, 1, 2, 2);
  // The whole epoch's order on one rank (same seed): the shards must be its strided slices.
  BatchLoader<float> whole(data, {.batch_size = 100, .shuffle = true, .seed = 5});
  REQUIRE(whole.next());
  const std::vector<int> order(whole.labels().begin(), whole.labels().end());
  auto shard = [&](Index rank, Index world, bool drop_last, bool pad, Index batch = 2) {
    BatchLoader<float> loader(data, {.batch_size = batch,
                                     .shuffle = true,
                                     .drop_last = drop_last,
                                     .seed = 5,
                                     .rank = rank,
                                     .world_size = world,
                                     .pad_shards = pad});
    std::vector<int> seen;
    Index batches = 0;
    while (loader.next()) {
      seen.insert(seen.end(), loader.labels().begin(), loader.labels().end());
      ++batches;
    }
    REQUIRE(batches == loader.batches_per_epoch());
    REQUIRE(static_cast<Index>(seen.size()) == loader.samples_per_epoch());
    return seen;
  };
  SECTION("uneven: 10 samples on 3 ranks, padded (every rank 4, the order wraps to its start)") {
    for (Index r = 0; r < 3; ++r) {
      const std::vector<int> s = shard(r, 3, false, true);
      REQUIRE(s.size() == 4);
      for (std::size_t k = 0; k < s.size(); ++k) REQUIRE(s[k] == order[(static_cast<std::size_t>(r) + 3 * k) % 10]);
    }
  }
  SECTION("uneven, not padded: 4, 3, 3 samples, every sample exactly once over the ranks (evaluation)") {
    std::vector<int> all;
    for (Index r = 0; r < 3; ++r) {
      const std::vector<int> s = shard(r, 3, false, false);
      REQUIRE(s.size() == (r == 0 ? 4u : 3u));
      all.insert(all.end(), s.begin(), s.end());
    }
    std::sort(all.begin(), all.end());
    std::vector<int> expected(10);
    std::iota(expected.begin(), expected.end(), 0);
    REQUIRE(all == expected);
  }
  SECTION("drop_last: floor(10 / 3) = 3 samples per rank, then the short batch dropped: one batch of 2") {
    for (Index r = 0; r < 3; ++r) {
      const std::vector<int> s = shard(r, 3, true, true);
      REQUIRE(s.size() == 2);
      for (std::size_t k = 0; k < s.size(); ++k) REQUIRE(s[k] == order[static_cast<std::size_t>(r) + 3 * k]);
    }
    REQUIRE(shard(1, 3, true, true, 3).size() == 3);
  }
  SECTION("one rank of one is the unsharded loader") { REQUIRE(shard(0, 1, false, true, 100) == order); }
  REQUIRE_THROWS_WITH(BatchLoader<float>(data, {.rank = 2, .world_size = 2}),
                      rbtest::contains("rank must be in [0, world_size)"));
  REQUIRE_THROWS_AS(BatchLoader<float>(data, {.rank = 0, .world_size = 0}), std::invalid_argument);
}

TEST_CASE("BatchLoader: next() does not allocate, the buffers stay put", "[io][loader][allocation]") {
  const ImageDataset data = make_dataset(100, 1, 5, 6);
  BatchLoaderOptions o;
  o.batch_size = 16;  // 6 full batches and a short one of 4
  o.crop_padding = 1;
  o.horizontal_flip = true;
  BatchLoader<float> loader(data, o);
  REQUIRE(loader.next());
  const float* full = loader.images().data();
#if defined(__GLIBC__)
  const long counted = allocations_in([] {
    std::vector<int> v(10);
    v[0] = 1;
  });
  REQUIRE(counted > 0);  // the counter works, so the checks below can fail
  long batches = 0;
  const long allocations = allocations_in([&] {
    for (int e = 0; e < 3; ++e) {
      while (loader.next()) ++batches;
      loader.start_epoch();
    }
  });
  CHECK(allocations == 0);
  REQUIRE(batches == 6 + 2 * 7);
#endif
  loader.start_epoch();
  for (int b = 0; b < 6; ++b) {
    REQUIRE(loader.next());
    REQUIRE(loader.images().data() == full);
  }
  REQUIRE(loader.next());
  REQUIRE(loader.images().cols() == 4 * 30);
}

#if defined(RESBLOCKS_FASHION_MNIST_DIR)
// Compiled only when CMake found the Fashion-MNIST files at configure time (see tests/CMakeLists.txt).
TEST_CASE("BatchLoader: an epoch of the real Fashion-MNIST training set", "[io][loader][real]") {
  const ImageDataset train = load_mnist(RESBLOCKS_FASHION_MNIST_DIR, MnistSplit::train);
  const auto [mean, std] = train.pixel_mean_std();
  BatchLoaderOptions o;
  o.mean = mean;
  o.std = std;
  o.crop_padding = 2;
  o.horizontal_flip = true;
  BatchLoader<float> loader(train, o);
  REQUIRE(loader.batches_per_epoch() == 469);
  std::vector<int> per_class(10, 0);
  Index batches = 0;
  double sum = 0;
  while (loader.next()) {
    ++batches;
    REQUIRE(loader.images().rows() == 1);
    REQUIRE(loader.images().cols() == static_cast<Index>(loader.labels().size()) * 784);
    for (const int l : loader.labels()) ++per_class[static_cast<std::size_t>(l)];
    sum += loader.images().cast<double>().sum();
  }
  REQUIRE(batches == 469);
  REQUIRE(loader.labels().size() == 60000 - 468 * 128);
  REQUIRE(per_class == std::vector<int>(10, 6000));
  // Normalised with the dataset's own statistics: mean ~0 (crops add some zero pixels, which pull it down).
  const double batch_mean = sum / (60000.0 * 784);
  REQUIRE(batch_mean < 0.0);
  REQUIRE(batch_mean > -0.2);
}
#endif
