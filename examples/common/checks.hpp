#pragma once
// The examples' checks of user input before the first training step (data sets against each other
// and against the flags, output paths), and saving the trained weights with a fallback path.
#include "common/svg_chart.hpp"

#include <resblocks/blocks/cifar_resnet.hpp>
#include <resblocks/io/detail/file_io.hpp>
#include <resblocks/io/image_dataset.hpp>
#include <resblocks/io/safetensors.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace examples {

/// Throws std::invalid_argument naming `flag` unless `depth` is a CIFAR ResNet depth, 6n+2.
inline void check_depth(long depth, const std::string& flag) {
  try {
    resblocks::CifarResNet<float>::blocks_per_stage(depth);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(flag + " " + std::to_string(depth) + ": " + e.what());
  }
}

/// "28x28" (or "3x28x28" for several channels).
inline std::string image_shape(const resblocks::ImageDataset& d) {
  return (d.channels() == 1 ? std::string() : std::to_string(d.channels()) + "x") + std::to_string(d.height()) + "x" +
         std::to_string(d.width());
}

/// Throws std::invalid_argument naming the cause when the data cannot train a `classes`-way classifier
/// with batches of `batch`: test images of another shape than the training ones, other class
/// counts, a batch larger than the training set, no image at all.
inline void check_data(const resblocks::ImageDataset& train, const resblocks::ImageDataset& test, long batch,
                       int classes, const std::string& data_flag) {
  if (train.size() == 0) throw std::invalid_argument("the training set in " + data_flag + " holds no images");
  if (test.size() == 0) throw std::invalid_argument("the test set in " + data_flag + " holds no images");
  if (test.channels() != train.channels() || test.height() != train.height() || test.width() != train.width())
    throw std::invalid_argument("the test images in " + data_flag + " are " + image_shape(test) +
                                " but the training images " + image_shape(train) +
                                ": both files must come from the same data set");
  if (train.classes() != classes || test.classes() != classes)
    throw std::invalid_argument("the network has " + std::to_string(classes) + " classes but the data in " + data_flag +
                                " has " + std::to_string(train.classes()) + " (training) and " +
                                std::to_string(test.classes()) + " (test)");
  if (batch > train.size())
    throw std::invalid_argument("--batch " + std::to_string(batch) + " is larger than the " +
                                std::to_string(train.size()) + " training images (after --limit): use --batch " +
                                std::to_string(train.size()) + " or less");
}

/// The training pixels' mean and standard deviation for normalisation; throws std::invalid_argument
/// when every pixel has the same value (no variation: most likely a wrong or blank file).
inline std::pair<double, double> pixel_mean_std(const resblocks::ImageDataset& train, const std::string& data_flag) {
  const auto [mean, std] = train.pixel_mean_std();
  if (!(std > 0))
    throw std::invalid_argument("the training images in " + data_flag + " have no variation (every pixel is " +
                                std::to_string(static_cast<int>(mean * 255 + 0.5)) +
                                "): a wrong or blank images file? Nothing can be learnt from them");
  return {mean, std};
}

/// Throws std::runtime_error naming the flag unless every (flag, path) can be written, and
/// std::invalid_argument when two flags name the same file (one would overwrite the other).
inline void check_outputs(const std::vector<std::pair<std::string, std::string>>& outputs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    resblocks::detail::check_writable(outputs[i].second, outputs[i].first);
    for (std::size_t j = 0; j < i; ++j) {
      std::error_code ec;
      const bool same =
          outputs[i].second == outputs[j].second || std::filesystem::weakly_canonical(outputs[i].second, ec) ==
                                                        std::filesystem::weakly_canonical(outputs[j].second, ec);
      if (same)
        throw std::invalid_argument(outputs[j].first + " and " + outputs[i].first + " name the same file '" +
                                    outputs[i].second + "'");
    }
  }
}

/// Saves the plot; a failure (disk full) is a warning, so that it cannot cost the training run.
inline void save_plot(const SvgChart& chart, const std::string& path, const std::string& program) {
  try {
    chart.save(path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: warning: %s; training goes on\n", program.c_str(), e.what());
  }
}

/// Saves `net` to `path`; when that fails (the disk filled up, the directory went away), saves it to
/// a fallback file in the temporary directory and says where on stderr. Returns the path written,
/// or throws when both fail.
template <class Net>
std::string save_weights(Net& net, const std::string& path, const std::string& program) {
  try {
    resblocks::save_safetensors(net, path);
    return path;
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
    if (ec) dir = ".";
    const std::string fallback =
        (dir / (program + "-" + std::to_string(static_cast<long>(::getpid())) + ".safetensors")).string();
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    resblocks::save_safetensors(net, fallback);
    std::fprintf(stderr, "%s: saved the trained weights to %s instead\n", program.c_str(), fallback.c_str());
    return fallback;
  }
}

}  // namespace examples
