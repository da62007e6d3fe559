// A seeded training run is bit-identical when repeated (and with 1 or 2 threads): the same initial
// weights, the same shuffled and augmented batches, the same updates.
#include "support/helpers.hpp"

#include <resblocks/io/batch_loader.hpp>
#include <resblocks/io/image_dataset.hpp>
#include <resblocks/resblocks.hpp>

#include <cstdint>
#include <cstring>
#include <vector>

using namespace resblocks;

namespace {

/// 40 synthetic 10×10 one-channel images in 3 classes (a bright square whose place depends on the class).
ImageDataset synthetic_images() {
  const Index n = 40, h = 10, w = 10;
  std::vector<unsigned char> pixels(static_cast<std::size_t>(n * h * w));
  std::vector<int> labels(static_cast<std::size_t>(n));
  Generator g(7);
  for (Index i = 0; i < n; ++i) {
    const int label = static_cast<int>(i % 3);
    labels[static_cast<std::size_t>(i)] = label;
    for (Index y = 0; y < h; ++y)
      for (Index x = 0; x < w; ++x) {
        const bool square = y >= 2 + 2 * label && y < 5 + 2 * label && x >= 3 && x < 7;
        pixels[static_cast<std::size_t>(i * h * w + y * w + x)] =
            static_cast<unsigned char>(square ? 200 + g.next() % 56 : g.next() % 40);
      }
  }
  return ImageDataset(1, h, w, std::move(pixels), std::move(labels), 3);
}

/// Every parameter and buffer of a ResNet-8 after `steps` seeded training steps, as raw bytes.
std::vector<unsigned char> train_and_snapshot(std::uint64_t seed, int threads, int steps, int width = 4) {
  set_num_threads(threads);
  const ImageDataset data = synthetic_images();
  BatchLoader<float> loader(data, {.batch_size = 8,
                                   .shuffle = true,
                                   .drop_last = true,
                                   .seed = seed,
                                   .mean = 0.3,
                                   .std = 0.3,
                                   .crop_padding = 2,
                                   .horizontal_flip = true});
  manual_seed(seed);
  CifarResNet<float> net({.depth = 8,
                          .in_channels = 1,
                          .classes = 3,
                          .width = width,
                          .image = {10, 10},
                          .downsample = ShortcutKind::projection});
  Sgd opt(net, {.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
  const LinearWarmup schedule(CosineAnnealingLr(0.05, steps), 2, 0.1);
  CrossEntropyLoss<float> loss({.label_smoothing = 0.05});
  for (int step = 0; step < steps; ++step) {
    if (!loader.next()) {
      loader.start_epoch();
      loader.next();
    }
    opt.set_lr(schedule(step));
    loss.forward(net.forward(loader.images()), loader.labels());
    net.zero_grad();
    net.backward(loss.backward());
    opt.step(net);
  }
  std::vector<unsigned char> bytes;
  auto append = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    bytes.insert(bytes.end(), b, b + n);
  };
  net.for_each_parameter([&](std::string_view, const auto& value, const auto&) {
    append(value.data(), sizeof(float) * static_cast<std::size_t>(value.size()));
  });
  auto buffers = [&](std::string_view, const auto& value) {
    using V = std::remove_cvref_t<decltype(value)>;
    if constexpr (std::is_arithmetic_v<V>)
      append(&value, sizeof value);
    else
      append(value.data(), sizeof(typename V::Scalar) * static_cast<std::size_t>(value.size()));
  };
  detail::visit_buffers(net, buffers, ParameterName());
  set_num_threads(2);
  return bytes;
}

}  // namespace

TEST_CASE("a seeded training run is bit-identical when repeated", "[train][reproducibility]") {
  const auto first = train_and_snapshot(11, 2, 12);
  const auto again = train_and_snapshot(11, 2, 12);
  REQUIRE(first.size() > 1000);
  CHECK(first == again);
}

TEST_CASE("a seeded training run gives the same bits on 1 and 2 threads", "[train][reproducibility]") {
  CHECK(train_and_snapshot(11, 1, 12) == train_and_snapshot(11, 2, 12));
}

// Work is handed to the threads as they come free and cut by the shape, never by the thread count:
// 3 threads (more than a 2-core machine has, so some wait) give the bits of 1. Width 16: the
// convolutions are large enough to run in parts (with parts per thread, 3 threads changed the bits).
TEST_CASE("a seeded training run gives the same bits on 1 and 3 threads", "[train][reproducibility]") {
  CHECK(train_and_snapshot(11, 1, 4, 16) == train_and_snapshot(11, 3, 4, 16));
}

// Beside a co-tenant the pool runs its regions on the calling thread alone, every thread's part in turn
// (detail::ContentionMonitor): the same parts, so the same bits as on the threads.
TEST_CASE("a seeded training run gives the same bits when the pool runs its regions alone",
          "[train][reproducibility]") {
  const auto threaded = train_and_snapshot(11, 2, 4, 16);
  std::vector<unsigned char> alone;
  {
    const rbtest::PoolAlone scope;
    alone = train_and_snapshot(11, 2, 4, 16);
  }
  CHECK(threaded == alone);
}

TEST_CASE("another seed gives another run (the comparison above can fail)", "[train][reproducibility]") {
  CHECK(train_and_snapshot(11, 2, 12) != train_and_snapshot(12, 2, 12));
}
