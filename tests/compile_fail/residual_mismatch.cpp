// Must not compile: an identity skip around a body that maps 8 features to 4.
#include <resblocks/resblocks.hpp>

int main() {
  resblocks::Residual<resblocks::Linear<float, 8, 4>> block;
  (void)block;
}
