// libFuzzer harness: load_safetensors from bytes in memory into a small conv / BatchNorm / Linear
// network (the network of tests/reference/fixtures/torch_small.safetensors, a seed). Any input must
// either load or throw std::runtime_error, and a failed load must leave the model unchanged.
#include <resblocks/blocks/sequential.hpp>
#include <resblocks/io/safetensors.hpp>
#include <resblocks/layers/batch_norm2d.hpp>
#include <resblocks/layers/conv2d.hpp>
#include <resblocks/layers/flatten.hpp>
#include <resblocks/layers/linear.hpp>
#include <resblocks/layers/relu.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>

namespace {

using Net = resblocks::Sequential<resblocks::Conv2d<float, 2, 3>, resblocks::BatchNorm2d<float, 3>,
                                  resblocks::ReLU<float, 3>, resblocks::Flatten<float, 3>, resblocks::Linear<float>>;

Net make_net() {
  resblocks::manual_seed(1);
  Net net(resblocks::Conv2d<float, 2, 3>(3, {.padding = 1, .bias = false}), resblocks::BatchNorm2d<float, 3>(),
          resblocks::ReLU<float, 3>(), resblocks::Flatten<float, 3>(), resblocks::Linear<float>(48, 5));
  net.set_image_size({4, 4});
  return net;
}

/// The sum of every parameter's bits, to see that a failed load changed nothing.
float checksum(Net& net) {
  float sum = 0;
  net.for_each_parameter([&](std::string_view, const auto& value, const auto&) { sum += value.sum(); });
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Net net = make_net();
  const auto bytes = std::as_bytes(std::span(data, size));
  for (const bool strict : {true, false}) {
    const float before = checksum(net);
    try {
      resblocks::load_safetensors(net, bytes, strict, "fuzz");
    } catch (const std::runtime_error&) {
      const float after = checksum(net);
      if (!(after == before) && !(after != after && before != before)) std::abort();  // a failed load changed the model
    }
  }
  return 0;
}
