// Built by GCC and by Clang (CTest init:gcc_clang_same_weights): a network whose layers are
// constructor arguments in parentheses, so the compiler picks the order in which they draw their
// weights. Prints a checksum of the parameters as constructed and after initialize(net, 5); the
// second must be the same with both compilers.
#include <resblocks/resblocks.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>

using namespace resblocks;

namespace {
template <class Net>
std::uint64_t checksum(const Net& net) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the bits of every value
  net.for_each_parameter([&](std::string_view, const auto& value, const auto&) {
    for (Index i = 0; i < value.size(); ++i) {
      double v = static_cast<double>(value.data()[i]);
      std::uint64_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
  });
  return h;
}
}  // namespace

int main() {
  using Block = Residual<Sequential<Linear<double>, Tanh<double>>>;
  manual_seed(1);
  Sequential<Linear<double>, Repeat<Block>, Linear<double>> net(
      Linear<double>(4, 8),
      Repeat<Block>(
          2,
          [](Index) { return Block(Sequential<Linear<double>, Tanh<double>>(Linear<double>(8, 8), Tanh<double>())); }),
      Linear<double>(8, 3));
  std::printf("constructed %016llx\n", static_cast<unsigned long long>(checksum(net)));
  initialize(net, 5);
  std::printf("initialized %016llx\n", static_cast<unsigned long long>(checksum(net)));
  return 0;
}
