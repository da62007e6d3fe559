// Must not compile: a 16-channel convolution feeding an 8-channel batch norm. The error names both.
#include <resblocks/resblocks.hpp>

int main() {
  resblocks::Sequential<resblocks::Conv2d<float, 3, 16>, resblocks::BatchNorm2d<float, 8>> net(
      resblocks::Conv2d<float, 3, 16>(3), resblocks::BatchNorm2d<float, 8>());
  (void)net;
}
