// Must not compile: a Highway around an H that maps 8 features to 4 (y mixes H(x) with x).
#include <resblocks/blocks/highway.hpp>
#include <resblocks/resblocks.hpp>

int main() {
  resblocks::Highway<resblocks::Linear<float, 8, 4>> block;
  (void)block;
}
