// What the skip costs, counted in instructions (deterministic, unlike time on a shared machine):
// run under callgrind, single-threaded, and compare the inclusive cost of block_steps and body_steps.
// (Built without -march=native: valgrind does not run AVX-512 code.)
//   valgrind --tool=callgrind --callgrind-out-file=cg.out build/bench/skip_cost 64 32
//   callgrind_annotate --inclusive=yes cg.out | grep -E "block_steps|body_steps"
#include <resblocks/resblocks.hpp>

#include <cstdio>
#include <cstdlib>

using namespace resblocks;

namespace {
using Body = Sequential<Linear<float>, ReLU<float>, Linear<float>>;
using Block = Residual<Body>;

template <class Net>
void steps(Net& net, const Eigen::MatrixXf& x, const Eigen::MatrixXf& g, int count) {
  for (int i = 0; i < count; ++i) {
    net.zero_grad();
    net.forward(x);
    net.backward(g);
  }
}
// Separate, never-inlined functions so that callgrind reports each one's inclusive cost.
__attribute__((noinline)) void block_steps(Block& net, const Eigen::MatrixXf& x, const Eigen::MatrixXf& g, int n) {
  steps(net, x, g, n);
}
__attribute__((noinline)) void body_steps(Body& net, const Eigen::MatrixXf& x, const Eigen::MatrixXf& g, int n) {
  steps(net, x, g, n);
}
}  // namespace

int main(int argc, char** argv) {
  const Index d = argc > 1 ? std::atoi(argv[1]) : 64, n = argc > 2 ? std::atoi(argv[2]) : 32;
  const int count = argc > 3 ? std::atoi(argv[3]) : 20;
  set_num_threads(1);
  Body body(Linear<float>(d, d), ReLU<float>(), Linear<float>(d, d));
  Block block(body);
  Generator gen(3);
  Eigen::MatrixXf x(d, n), g(d, n);
  fill_uniform(x, 1.0, gen);
  fill_uniform(g, 1.0, gen);
  steps(block, x, g, 2);  // warm-up: buffers sized outside the measured functions
  steps(body, x, g, 2);
  block_steps(block, x, g, count);
  body_steps(body, x, g, count);
  std::printf("ran %d steps of Residual<Body> and of Body, d=%ld n=%ld\n", count, static_cast<long>(d),
              static_cast<long>(n));
}
