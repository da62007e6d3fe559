// From and to PyTorch: load a torchvision resnet18(num_classes=10) state_dict saved as safetensors,
// predict on images given in PyTorch's NCHW order, write the logits in PyTorch's (n, classes) order,
// and save the weights back so that torch's `model.load_state_dict(load_file(path))` takes them as is.
//
//   torch_roundtrip weights.safetensors images.f32 N H W logits.f32 saved.safetensors
//
// images.f32: N×3×H×W float32 values in NCHW order (numpy: `x.numpy().tofile(path)`), on a
// little-endian machine; logits.f32: N×10 float32, row-major (numpy: `np.fromfile(path, "<f4")`).
// tests/reference/torch_roundtrip.py runs it against torch and torchvision.
#include <resblocks/resblocks.hpp>

#include <cstdio>
#include <exception>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::vector<float> read_floats(const std::string& path, std::size_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<float> values(count);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (in.gcount() != static_cast<std::streamsize>(count * sizeof(float)) || in.peek() != EOF)
    throw std::runtime_error(path + " does not hold exactly " + std::to_string(count) + " float32 values");
  return values;
}

void write_floats(const std::string& path, const std::vector<float>& values) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

int run(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: %s weights.safetensors images.f32 N H W logits.f32 saved.safetensors\n", argv[0]);
    return 2;
  }
  const resblocks::Index n = std::stol(argv[3]), h = std::stol(argv[4]), w = std::stol(argv[5]);
  const std::string weights = argv[1], saved = argv[7];
  const std::vector<float> images = read_floats(argv[2], static_cast<std::size_t>(n * 3 * h * w));

  // The README's "From and to PyTorch" block is these lines (a test checks it):
  auto net = resblocks::resnet18<float>({.classes = 10, .image = {h, w}});
  resblocks::load_safetensors(net, weights);  // every name, dtype and shape checked; all or nothing
  resblocks::eval(net);                       // model.eval(): BatchNorm's running statistics
  // images: n·3·h·w floats in NCHW order (torch's x.numpy().tofile(path)); x is 3 × (n·h·w)
  const Eigen::MatrixXf x = resblocks::from_nchw(std::span<const float>(images), {n, 3, h, w});
  decltype(net)::Workspace ws;
  const auto& logits = net.infer(x, ws);  // 10 × n: column j is sample j
  std::vector<float> out(static_cast<std::size_t>(logits.size()));
  resblocks::to_nd(logits, std::span<float>(out));  // (n, 10) row-major: torch's model(x) order
  resblocks::save_safetensors(net, saved);          // torch's names and shapes: load_state_dict takes it as is

  write_floats(argv[6], out);
  std::printf("torch_roundtrip: %ld images %ldx%ld, logits written to %s, weights saved to %s\n", static_cast<long>(n),
              static_cast<long>(h), static_cast<long>(w), argv[6], argv[7]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_roundtrip: error: %s\n", e.what());
    return 1;
  }
}
