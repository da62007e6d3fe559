// Must not compile: a Linear giving 16 features followed by one taking 12.
#include <resblocks/resblocks.hpp>

int main() {
  resblocks::Sequential<resblocks::Linear<float, 8, 16>, resblocks::Linear<float, 12, 4>> net;
  (void)net;
}
