#include "io/idx_test_files.hpp"
#include "support/catch.hpp"

#include <resblocks/io/image_dataset.hpp>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;
namespace fs = std::filesystem;
using rbtest::Bytes;
using rbtest::idx_bytes;
using rbtest::require_runtime_error;

namespace {

/// Pixel (n, h, w, c) of the test images.
unsigned char pixel(int n, int h, int w, int c) {
  return static_cast<unsigned char>(37 * n + 11 * h + 3 * w + 101 * c + 1);
}

/// Row-major (N, H, W, C) bytes of the test images.
Bytes nhwc(int n_images, int height, int width, int channels) {
  Bytes out;
  for (int n = 0; n < n_images; ++n)
    for (int h = 0; h < height; ++h)
      for (int w = 0; w < width; ++w)
        for (int c = 0; c < channels; ++c) out.push_back(pixel(n, h, w, c));
  return out;
}

}  // namespace

TEST_CASE("ImageDataset: from_idx with (N, H, W) images, gzipped", "[io][dataset]") {
  rbtest::TempDir dir;
  rbtest::write_gz(dir.file("img.gz"), idx_bytes(0x08, {4, 3, 5}, nhwc(4, 3, 5, 1)));
  rbtest::write_gz(dir.file("lab.gz"), idx_bytes(0x08, {4}, {3, 0, 6, 3}));
  const ImageDataset d = ImageDataset::from_idx(dir.file("img.gz"), dir.file("lab.gz"));
  REQUIRE(d.size() == 4);
  REQUIRE(d.channels() == 1);
  REQUIRE(d.height() == 3);
  REQUIRE(d.width() == 5);
  REQUIRE(d.image_bytes() == 15);
  REQUIRE(d.classes() == 7);
  REQUIRE(d.label(0) == 3);
  REQUIRE(d.label(2) == 6);
  for (int n = 0; n < 4; ++n)
    for (int h = 0; h < 3; ++h)
      for (int w = 0; w < 5; ++w) REQUIRE(d.image(n)[w + 5 * h] == pixel(n, h, w, 0));
  REQUIRE_THROWS_AS(d.image(4), std::out_of_range);
  REQUIRE_THROWS_AS(d.label(-1), std::out_of_range);
}

TEST_CASE("ImageDataset: labels outside the class count are refused at load, naming file, index and value",
          "[io][dataset]") {
  rbtest::TempDir dir;
  rbtest::write_raw(dir.file("img"), idx_bytes(0x08, {5, 2, 2}, nhwc(5, 2, 2, 1)));
  rbtest::write_raw(dir.file("lab"), idx_bytes(0x08, {5}, {3, 0, 9, 12, 200}));
  require_runtime_error([&] { (void)ImageDataset::from_idx(dir.file("img"), dir.file("lab"), 10); },
                        {dir.file("lab"), "label 3 is 12", "0..9"});
  REQUIRE(ImageDataset::from_idx(dir.file("img"), dir.file("lab")).classes() == 201);  // 0: any label
  // load_mnist expects 10 classes.
  fs::create_directory(dir.path() / "mnist");
  rbtest::write_raw(dir.file("mnist/train-images-idx3-ubyte"), idx_bytes(0x08, {5, 2, 2}, nhwc(5, 2, 2, 1)));
  rbtest::write_raw(dir.file("mnist/train-labels-idx1-ubyte"), idx_bytes(0x08, {5}, {3, 0, 9, 1, 10}));
  require_runtime_error([&] { (void)load_mnist(dir.file("mnist"), MnistSplit::train); },
                        {"train-labels-idx1-ubyte", "label 4 is 10", "0..9"});
  REQUIRE(load_mnist(dir.file("mnist"), MnistSplit::train, 11).classes() == 11);
  REQUIRE_THROWS_WITH(ImageDataset(1, 1, 1, {0, 1, 2}, {0, 7, 2}, 5), rbtest::contains("label 1 is 7, outside 0..4"));
}

TEST_CASE("ImageDataset: from_idx with (N, H, W, C) images stores channels last", "[io][dataset]") {
  rbtest::TempDir dir;
  rbtest::write_raw(dir.file("img"), idx_bytes(0x08, {2, 4, 3, 3}, nhwc(2, 4, 3, 3)));
  rbtest::write_raw(dir.file("lab"), idx_bytes(0x08, {2}, {1, 0}));
  const ImageDataset d = ImageDataset::from_idx(dir.file("img"), dir.file("lab"));
  REQUIRE(d.channels() == 3);
  REQUIRE(d.height() == 4);
  REQUIRE(d.width() == 3);
  REQUIRE(d.image_size() == ImageSize{4, 3});
  for (int n = 0; n < 2; ++n)
    for (int h = 0; h < 4; ++h)
      for (int w = 0; w < 3; ++w)
        for (int c = 0; c < 3; ++c) REQUIRE(d.image(n)[c + 3 * (w + 3 * h)] == pixel(n, h, w, c));
}

TEST_CASE("ImageDataset: from_idx rejects mismatched counts, types and shapes", "[io][dataset][error]") {
  rbtest::TempDir dir;
  const auto images = dir.file("images");
  const auto labels = dir.file("labels");
  rbtest::write_raw(images, idx_bytes(0x08, {3, 2, 2}, nhwc(3, 2, 2, 1)));
  rbtest::write_raw(labels, idx_bytes(0x08, {2}, {0, 1}));
  require_runtime_error([&] { (void)ImageDataset::from_idx(images, labels); }, {labels, "2 labels", "3 images"});

  rbtest::write_raw(labels, idx_bytes(0x08, {3, 1}, {0, 1, 2}));
  require_runtime_error([&] { (void)ImageDataset::from_idx(images, labels); }, {labels, "dims (N)", "(3, 1)"});
  rbtest::write_raw(labels, idx_bytes(0x0C, {3}, Bytes(12, 0)));
  require_runtime_error([&] { (void)ImageDataset::from_idx(images, labels); }, {labels, "unsigned bytes", "0x0c"});

  rbtest::write_raw(labels, idx_bytes(0x08, {3}, {0, 1, 2}));
  rbtest::write_raw(images, idx_bytes(0x08, {3, 4}, Bytes(12, 0)));
  require_runtime_error([&] { (void)ImageDataset::from_idx(images, labels); }, {images, "(N, H, W)", "(3, 4)"});
  rbtest::write_raw(images, idx_bytes(0x0D, {3, 1, 1}, Bytes(12, 0)));
  require_runtime_error([&] { (void)ImageDataset::from_idx(images, labels); }, {images, "unsigned bytes", "0x0d"});
  // File-level problems come from read_idx, naming the file.
  require_runtime_error([&] { (void)ImageDataset::from_idx(dir.file("absent"), labels); }, {"absent", "no such file"});
}

TEST_CASE("ImageDataset: construction checks and classes", "[io][dataset]") {
  const ImageDataset d(1, 1, 2, {0, 255, 255, 0, 51, 51}, {0, 2, 1});
  REQUIRE(d.classes() == 3);
  REQUIRE(ImageDataset(1, 1, 2, {0, 255, 255, 0, 51, 51}, {0, 2, 1}, 10).classes() == 10);
  REQUIRE_THROWS_AS(ImageDataset(1, 1, 2, {0, 255, 255}, {0, 1}), std::invalid_argument);  // 3 bytes, 2 images
  REQUIRE_THROWS_AS(ImageDataset(1, 1, 1, {0, 255}, {0, -1}), std::invalid_argument);      // negative label
  REQUIRE_THROWS_AS(ImageDataset(1, 1, 1, {0, 255}, {0, 3}, 3), std::invalid_argument);    // label >= classes
  REQUIRE_THROWS_AS(ImageDataset(0, 1, 1, {}, {}), std::invalid_argument);                 // no channels
  REQUIRE(ImageDataset().size() == 0);
}

TEST_CASE("ImageDataset: head keeps the first images and the class count", "[io][dataset]") {
  const ImageDataset d(1, 1, 2, {0, 255, 255, 0, 51, 52}, {0, 2, 1});
  const ImageDataset h = d.head(2);
  REQUIRE(h.size() == 2);
  REQUIRE(h.classes() == 3);
  REQUIRE(h.label(1) == 2);
  REQUIRE(h.image(1)[0] == 255);
  REQUIRE(h.image(1)[1] == 0);
  REQUIRE(d.head(10).size() == 3);
  REQUIRE(d.head(10).image(2)[1] == 52);
  REQUIRE(d.head(0).size() == 0);
  REQUIRE_THROWS_AS(d.head(-1), std::invalid_argument);
  REQUIRE(ImageDataset().head(5).size() == 0);
}

TEST_CASE("ImageDataset: pixel_mean_std over all pixels in [0, 1]", "[io][dataset]") {
  // Pixels 0, 255, 255, 0, 51, 51: values 0, 1, 1, 0, 0.2, 0.2 -> mean 2.4 / 6 = 0.4,
  // variance (0.16 + 0.36 + 0.36 + 0.16 + 0.04 + 0.04) / 6 = 1.12 / 6.
  const ImageDataset d(1, 1, 2, {0, 255, 255, 0, 51, 51}, {0, 2, 1});
  const auto [mean, std] = d.pixel_mean_std();
  REQUIRE(mean == Approx(0.4).epsilon(1e-14));
  REQUIRE(std == Approx(std::sqrt(1.12 / 6)).epsilon(1e-14));
}

TEST_CASE("load_mnist: finds the files of either split, plain or gzipped", "[io][dataset]") {
  rbtest::TempDir dir;
  rbtest::write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_bytes(0x08, {3, 2, 2}, nhwc(3, 2, 2, 1)));
  rbtest::write_raw(dir.file("train-labels-idx1-ubyte"), idx_bytes(0x08, {3}, {9, 0, 4}));
  rbtest::write_raw(dir.file("t10k-images.idx3-ubyte"), idx_bytes(0x08, {1, 2, 2}, nhwc(1, 2, 2, 1)));
  rbtest::write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes(0x08, {1}, {5}));

  const ImageDataset train = load_mnist(dir.path().string(), MnistSplit::train);
  REQUIRE(train.size() == 3);
  REQUIRE(train.label(0) == 9);
  REQUIRE(train.image(2)[3] == pixel(2, 1, 1, 0));
  const ImageDataset test = load_mnist(dir.path().string(), MnistSplit::test);
  REQUIRE(test.size() == 1);
  REQUIRE(test.label(0) == 5);

  std::filesystem::remove(dir.file("t10k-labels-idx1-ubyte.gz"));
  require_runtime_error([&] { (void)load_mnist(dir.path().string(), MnistSplit::test); },
                        {"no t10k labels", "t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"});
}

#if defined(RESBLOCKS_FASHION_MNIST_DIR)
// Compiled only when CMake found the Fashion-MNIST files at configure time (see tests/CMakeLists.txt).
TEST_CASE("load_mnist: the real Fashion-MNIST files", "[io][dataset][real]") {
  const ImageDataset train = load_mnist(RESBLOCKS_FASHION_MNIST_DIR, MnistSplit::train);
  REQUIRE(train.size() == 60000);
  REQUIRE(train.channels() == 1);
  REQUIRE(train.height() == 28);
  REQUIRE(train.width() == 28);
  REQUIRE(train.classes() == 10);
  REQUIRE(train.label(0) == 9);  // an ankle boot
  std::vector<int> per_class(10, 0);
  for (Index i = 0; i < train.size(); ++i) {
    REQUIRE((train.label(i) >= 0 && train.label(i) <= 9));
    ++per_class[static_cast<std::size_t>(train.label(i))];
  }
  REQUIRE(per_class == std::vector<int>(10, 6000));
  REQUIRE(std::accumulate(train.image(0), train.image(0) + 784, 0L) == 76247);
  const auto [mean, std] = train.pixel_mean_std();  // the usual Normalize((0.2860,), (0.3530,))
  REQUIRE(mean == Approx(0.2860406).margin(1e-6));
  REQUIRE(std == Approx(0.3530242).margin(1e-6));

  const ImageDataset test = load_mnist(RESBLOCKS_FASHION_MNIST_DIR, MnistSplit::test);
  REQUIRE(test.size() == 10000);
  REQUIRE(test.image_size() == ImageSize{28, 28});
  REQUIRE(test.classes() == 10);
  REQUIRE(test.label(0) == 9);
}
#endif
