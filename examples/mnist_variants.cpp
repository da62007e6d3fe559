// Writes small MNIST-style data sets, one directory each, for the example tests of bad input:
//   mnist_variants <dir>   ->  <dir>/good, <dir>/train_label_10, <dir>/test_label_200,
//                              <dir>/test_14x56, <dir>/test_14x14, <dir>/constant
// Each holds train-{images,labels} (256 images) and t10k-{images,labels} (64 images), plain IDX files.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<unsigned char>;

void write_idx(const std::filesystem::path& path, const std::vector<std::uint32_t>& dims, const Bytes& payload) {
  Bytes out{0, 0, 0x08, static_cast<unsigned char>(dims.size())};
  for (const std::uint32_t d : dims)
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<unsigned char>(d >> (8 * i)));
  out.insert(out.end(), payload.begin(), payload.end());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

struct Split {
  std::uint32_t n, h, w;
  Bytes pixels, labels;
};

/// n images of h×w: class k is a bright horizontal band at row k, plus deterministic noise.
Split make(std::uint32_t n, std::uint32_t h, std::uint32_t w, std::uint32_t seed) {
  Split s{n, h, w, Bytes(std::size_t{n} * h * w), Bytes(n)};
  std::uint32_t state = seed;
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto label = static_cast<unsigned char>(i % 10);
    s.labels[i] = label;
    for (std::uint32_t y = 0; y < h; ++y)
      for (std::uint32_t x = 0; x < w; ++x) {
        state = state * 1664525u + 1013904223u;
        const unsigned noise = state >> 27;  // 0..31
        s.pixels[(std::size_t{i} * h + y) * w + x] =
            static_cast<unsigned char>((y * 10 / h == label ? 200 : 20) + noise);
      }
  }
  return s;
}

void write_set(const std::filesystem::path& dir, const Split& train, const Split& test) {
  std::filesystem::create_directories(dir);
  write_idx(dir / "train-images-idx3-ubyte", {train.n, train.h, train.w}, train.pixels);
  write_idx(dir / "train-labels-idx1-ubyte", {train.n}, train.labels);
  write_idx(dir / "t10k-images-idx3-ubyte", {test.n, test.h, test.w}, test.pixels);
  write_idx(dir / "t10k-labels-idx1-ubyte", {test.n}, test.labels);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: mnist_variants <output directory>\n");
    return 2;
  }
  const std::filesystem::path root(argv[1]);
  const Split train = make(256, 28, 28, 1), test = make(64, 28, 28, 2);
  write_set(root / "good", train, test);
  Split bad_train = train;
  bad_train.labels[5] = 10;
  write_set(root / "train_label_10", bad_train, test);
  Split bad_test = test;
  bad_test.labels[7] = 200;
  write_set(root / "test_label_200", train, bad_test);
  write_set(root / "test_14x56", train, make(64, 14, 56, 3));
  write_set(root / "test_14x14", train, make(64, 14, 14, 4));
  Split constant = train;
  for (auto& p : constant.pixels) p = 0;
  write_set(root / "constant", constant, test);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mnist_variants: %s\n", e.what());
  return 1;
}
