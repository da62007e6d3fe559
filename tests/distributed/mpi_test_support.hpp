#pragma once
// Shared pieces of the MPI tests: the small ResNet they train, batches, and cross-rank checks.
#include <resblocks/distributed/communicator.hpp>
#include <resblocks/resblocks.hpp>

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace rbtest {

/// ResNet-8 (one block per stage), width 4, projection shortcuts (with BatchNorm), 1×8×8 inputs, 3 classes.
template <class S>
resblocks::CifarResNet<S> small_resnet(std::uint64_t seed) {
  resblocks::manual_seed(seed);
  return resblocks::CifarResNet<S>({.depth = 8,
                                    .in_channels = 1,
                                    .classes = 3,
                                    .width = 4,
                                    .image = {8, 8},
                                    .downsample = resblocks::ShortcutKind::projection});
}

/// n images (1×8×8) and labels, the same for a seed on every rank.
template <class S>
void make_batch(std::uint64_t seed, resblocks::Index n, resblocks::Batch<S, resblocks::Dynamic>& x,
                std::vector<int>& labels) {
  resblocks::Generator g(seed);
  x.resize(1, 64 * n);
  resblocks::fill_uniform(x, 1.0, g);
  labels.resize(static_cast<std::size_t>(n));
  for (auto& l : labels) l = static_cast<int>(g.next() % 3);
}

/// FNV-1a of the bytes of every parameter: equal on two ranks iff their parameters are bit-identical.
template <class Net>
std::uint64_t parameter_hash(const Net& net) {
  std::uint64_t h = 14695981039346656037ull;
  net.for_each_parameter([&](std::string_view, const auto& value, const auto&) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(value.data());
    for (std::size_t i = 0; i < sizeof(*value.data()) * static_cast<std::size_t>(value.size()); ++i)
      h = (h ^ bytes[i]) * 1099511628211ull;
  });
  return h;
}

/// The same value on every rank?
inline bool same_on_all_ranks(const resblocks::Communicator& comm, std::uint64_t value) {
  std::vector<std::uint64_t> all(static_cast<std::size_t>(comm.size()));
  comm.all_gather(value, std::span<std::uint64_t>(all));
  for (const auto v : all)
    if (v != all[0]) return false;
  return true;
}

/// Largest |a - b| over all parameters of two networks of the same type, and the largest |a|.
template <class Net>
std::pair<double, double> max_parameter_difference(const Net& a, const Net& b) {
  std::vector<double> values;
  a.for_each_parameter([&](std::string_view, const auto& v, const auto&) {
    for (resblocks::Index i = 0; i < v.size(); ++i) values.push_back(double(v.data()[i]));
  });
  double diff = 0, scale = 0;
  std::size_t k = 0;
  b.for_each_parameter([&](std::string_view, const auto& v, const auto&) {
    for (resblocks::Index i = 0; i < v.size(); ++i, ++k) {
      diff = std::max(diff, std::abs(values[k] - double(v.data()[i])));
      scale = std::max(scale, std::abs(values[k]));
    }
  });
  return {diff, scale};
}

}  // namespace rbtest
