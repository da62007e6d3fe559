// A residual block's training step and the build line: the package's headers, Eigen and
// (with zlib) the IDX reader's header all compile and link.
#include <resblocks/resblocks.hpp>
#if defined(RESBLOCKS_TEST_IO)
#include <resblocks/io/idx_file.hpp>
#endif

#include <cstdio>

int main() {
  std::printf("%s\n", resblocks::build_info().c_str());
  using Block = resblocks::Residual<resblocks::Linear<float, 8, 8>>;
  resblocks::manual_seed(1);
  Block block;
  const resblocks::Batch<float, 8> x = resblocks::Batch<float, 8>::Ones(8, 4);
  const auto& y = block.forward(x);
  block.zero_grad();
  block.backward(y);
  std::printf("resblocks test_package: y(0, 0) = %.4f\n", static_cast<double>(y(0, 0)));
  return 0;
}
