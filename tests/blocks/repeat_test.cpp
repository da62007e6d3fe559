#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

namespace {
using Block = Residual<Sequential<Linear<double, 3, 4>, Tanh<double, 4>, Linear<double, 4, 3>>>;
using DynBlock = Residual<Sequential<Linear<double>, GELU<double>, Linear<double>>>;
DynBlock dyn_block(Index d, Index h) {
  return DynBlock(Sequential<Linear<double>, GELU<double>, Linear<double>>(Linear<double>(d, h), GELU<double>(),
                                                                           Linear<double>(h, d)));
}
}  // namespace

TEST_CASE("Repeat: gradients through a deep stack (40 residual blocks)", "[repeat][gradient]") {
  Repeat<Block> deep(40);
  REQUIRE(deep.size() == 40);
  rbtest::require_gradients(deep, rbtest::random_batch<Batch<double, 3>>(3, 2, 81));
}

TEST_CASE("Repeat: gradients with dynamic blocks, and as the body of a Residual", "[repeat][gradient]") {
  Repeat<DynBlock> stack(5, [](Index) { return dyn_block(4, 6); });
  rbtest::require_gradients(stack, rbtest::random_batch<Eigen::MatrixXd>(4, 3, 82));
  Residual<Repeat<Block>> outer(Repeat<Block>(3));
  rbtest::require_gradients(outer, rbtest::random_batch<Batch<double, 3>>(3, 2, 83));
}

TEST_CASE("Repeat: zero blocks is the identity", "[repeat]") {
  Repeat<Block> none(0);
  const auto x = rbtest::random_batch<Batch<double, 3>>(3, 2, 84);
  REQUIRE(none.forward(x) == x);
  REQUIRE(none.backward(x) == x);
  Residual<Repeat<Block>> twice(Repeat<Block>(0));  // y = x + x
  REQUIRE(twice.forward(x) == 2 * x);
  rbtest::require_gradients(twice, x);
}

TEST_CASE("Repeat: blocks are initialised independently, names by position", "[repeat][names]") {
  Repeat<Block> stack(3);
  REQUIRE(stack[0].body().get<0>().weight() != stack[1].body().get<0>().weight());
  std::vector<std::string> names;
  stack.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names.size() == 12);
  REQUIRE(names.front() == "0.body.0.weight");
  REQUIRE(names.back() == "2.body.2.bias");
}

TEST_CASE("Repeat: blocks that change the size, or disagree, are rejected", "[repeat][errors]") {
  using Dyn = Sequential<Linear<double>, Tanh<double>>;
  REQUIRE_THROWS_AS(Repeat<Dyn>(2, [](Index) { return Dyn(Linear<double>(3, 4), Tanh<double>()); }),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(Repeat<DynBlock>(2, [](Index i) { return dyn_block(3 + i, 4); }), std::invalid_argument);
  REQUIRE_THROWS_AS(Repeat<Block>(-1), std::invalid_argument);
}

TEST_CASE("Repeat: infer equals forward bit for bit", "[repeat][infer]") {
  using FBlock = Residual<Sequential<Linear<float, 32, 64>, ReLU<float, 64>, Linear<float, 64, 32>>>;
  Repeat<FBlock> stack(6);
  const auto x = rbtest::random_batch<Batch<float, 32>>(32, 17, 85);
  decltype(stack)::Workspace ws;
  const Batch<float, 32> y = stack.forward(x);
  REQUIRE(stack.infer(x, ws) == y);
}

namespace {
// Blocks ending in an activation (as a ResNet v1 block ends in its ReLU): Repeat runs each block's
// last activation inside the next block's backward pass (detail::SplitsLastLayer).
template <class S, class Act>
using EndsInActivation = Sequential<Residual<Sequential<Linear<S>, Tanh<S>, Linear<S>>>, Act>;

template <class S, class Act>
EndsInActivation<S, Act> ends_in_activation(Index d, Index h) {
  return EndsInActivation<S, Act>(
      Residual<Sequential<Linear<S>, Tanh<S>, Linear<S>>>(
          Sequential<Linear<S>, Tanh<S>, Linear<S>>(Linear<S>(d, h), Tanh<S>(), Linear<S>(h, d))),
      Act());
}

// Repeat `fused`'s backward of dy against `plain`'s blocks' own backward passes one after the other
// (a copy of it, after the same forward): dL/dx and every parameter gradient bit for bit. Returns the
// number of parameter gradients.
template <class Stack, class M>
std::size_t require_backward_block_by_block(Stack& fused, Stack& plain, const M& dy) {
  const M dx = fused.backward(dy);
  const M* g = &dy;
  for (std::size_t i = plain.size(); i-- > 0;) g = &plain[i].backward(*g);
  REQUIRE(dx == *g);
  std::vector<M> fused_grads, plain_grads;
  fused.for_each_parameter([&](auto, auto&, auto& grad) { fused_grads.emplace_back(grad); });
  plain.for_each_parameter([&](auto, auto&, auto& grad) { plain_grads.emplace_back(grad); });
  REQUIRE(fused_grads.size() == plain_grads.size());
  for (std::size_t i = 0; i < fused_grads.size(); ++i) REQUIRE(fused_grads[i] == plain_grads[i]);
  return fused_grads.size();
}

// Repeat's backward against the blocks' own backward passes one after the other: dL/dx and every
// parameter gradient bit for bit, on 1 and 2 threads.
template <class S, class Act>
void require_same_as_block_by_block() {
  static_assert(detail::SplitsLastLayer<EndsInActivation<S, Act>>);
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const int saved = num_threads();
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    Repeat<EndsInActivation<S, Act>> fused(4, [](Index) { return ends_in_activation<S, Act>(24, 40); });
    auto plain = fused;
    const M x = rbtest::random_batch<M>(24, 300, 86);
    const M dy = rbtest::random_batch<M>(24, 300, 87);
    REQUIRE(fused.forward(x) == plain.forward(x));
    INFO("threads " << threads);
    REQUIRE(require_backward_block_by_block(fused, plain, dy) == 16);
  }
  set_num_threads(saved);
}
}  // namespace

TEST_CASE("Repeat: a block's last activation runs inside the next block's backward, bit for bit", "[repeat][fusion]") {
  require_same_as_block_by_block<double, ReLU<double>>();  // in place, over the next block's dL/dx
  require_same_as_block_by_block<double, Tanh<double>>();  // out of place
}

namespace {
// ResNet v1 blocks in a Repeat against the same blocks' own backward passes: each block's pass also
// sums the BatchNorm2d that ends the block before it (before its ReLU) on each sample; dL/dx and every
// parameter gradient bit for bit, on 1 and 2 threads; strided first block as in a CifarResNet stage.
template <class S>
void require_basic_blocks_same_as_block_by_block() {
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Stack = Repeat<BasicBlock<S>>;
  static_assert(detail::SampleGradientSumsPair<BasicBlock<S>, Residual<BasicBranch<S>, Shortcut<S>>>);
  const int saved = num_threads();
  for (const int threads : {1, 2}) {
    set_num_threads(threads);
    manual_seed(5);
    Stack fused(3, [](Index i) {
      return BasicBlock<S>(16, 16, 1, {.downsample = i == 0 ? ShortcutKind::projection : ShortcutKind::identity});
    });
    fused.set_image_size({6, 16});
    auto plain = fused;
    const M x = rbtest::random_batch<M>(16, 5 * 96, 94);
    const M dy = rbtest::random_batch<M>(16, 5 * 96, 95);
    REQUIRE(fused.forward(x) == plain.forward(x));
    // The blocks' first convolutions hand over whole samples (the direct kernels: float with any SIMD,
    // double with AVX; else a GEMM path) and then the BatchNorm2d takes them.
    const detail::SampleBlocks blocks = fused[1].backward_sample_blocks();
    if constexpr (std::is_same_v<S, float>) REQUIRE(blocks);
    REQUIRE(fused[0].before_last_layer().takes_sample_gradient_sums(blocks) == bool(blocks));
    INFO("threads " << threads);
    require_backward_block_by_block(fused, plain, dy);
  }
  set_num_threads(saved);
}
}  // namespace

TEST_CASE("Repeat: a ResNet block's pass sums the BatchNorm2d that ends the block before it, bit for bit",
          "[repeat][fusion][resnet]") {
  require_basic_blocks_same_as_block_by_block<float>();
  require_basic_blocks_same_as_block_by_block<double>();
}

TEST_CASE("Repeat: gradients through blocks that end in an activation", "[repeat][gradient][fusion]") {
  Repeat<EndsInActivation<double, Tanh<double>>> stack(
      3, [](Index) { return ends_in_activation<double, Tanh<double>>(4, 6); });
  rbtest::require_gradients(stack, rbtest::random_batch<Eigen::MatrixXd>(4, 3, 88));
}

TEST_CASE("Repeat: blocks that end in an activation, float", "[repeat][float][fusion]") {
  require_same_as_block_by_block<float, ReLU<float>>();
}

TEST_CASE("Repeat: the activation before it runs inside its first block's backward, bit for bit", "[repeat][fusion]") {
  using M = Eigen::MatrixXd;
  using Stack = Repeat<EndsInActivation<double, ReLU<double>>>;
  static_assert(detail::FusedBackwardPair<ReLU<double>, Stack>);
  Sequential<ReLU<double>, Stack> net{ReLU<double>(),
                                      Stack(3, [](Index) { return ends_in_activation<double, ReLU<double>>(24, 40); })};
  auto act = net.get<0>();
  auto stack = net.get<1>();
  const M x = rbtest::random_batch<M>(24, 300, 89);
  const M dy = rbtest::random_batch<M>(24, 300, 90);
  REQUIRE(net.forward(x) == stack.forward(act.forward(x)));
  const M dx = net.backward(dy);
  REQUIRE(dx == act.backward(stack.backward(dy)));
  rbtest::require_gradients(net, rbtest::random_batch<M>(24, 3, 91));
}

TEST_CASE("Repeat and Sequential: hooks never write into the caller's gradient when the layers pass it through",
          "[repeat][fusion]") {
  // The ReLU before them runs in place on the dL/dx of the layer after it; here that dL/dx would be the
  // caller's dL/dy itself (no blocks; an Identity), so it must run on a copy.
  using M = Eigen::MatrixXd;
  const M x = rbtest::random_batch<M>(3, 8, 92);
  const M dy = rbtest::random_batch<M>(3, 8, 93);
  const M expected = (x.array() > 0).select(dy, 0.0);
  Sequential<ReLU<double>, Repeat<DynBlock>> empty{ReLU<double>(),
                                                   Repeat<DynBlock>(0, [](Index) { return dyn_block(3, 4); })};
  empty.forward(x);
  REQUIRE(empty.backward(dy) == expected);
  REQUIRE(dy == rbtest::random_batch<M>(3, 8, 93));
  Sequential<ReLU<double>, Sequential<Identity<double>>> identity;
  identity.forward(x);
  REQUIRE(identity.backward(dy) == expected);
  REQUIRE(dy == rbtest::random_batch<M>(3, 8, 93));
}

TEST_CASE("Sequential: a Repeat's last activation runs inside the next layer's backward, bit for bit",
          "[repeat][sequential][fusion]") {
  // As in CifarResNet: one stage's final ReLU in the next stage's first block, the last stage's in
  // GlobalAvgPool's backward, the stem's ReLU in the first stage's.
  using M = Eigen::MatrixXd;
  using Stack = Repeat<EndsInActivation<double, ReLU<double>>>;
  static_assert(detail::SplitsLastLayer<Stack>);
  using Net = Sequential<ReLU<double>, Stack, Stack, GlobalAvgPool<double>>;
  const auto stack = [](Index n) {
    return Stack(n, [](Index) { return ends_in_activation<double, ReLU<double>>(8, 12); });
  };
  for (const Index middle : {3, 0}) {  // a Repeat without blocks has no last layer to split
    INFO("blocks in the middle stage: " << middle);
    Net net{ReLU<double>(), stack(2), stack(middle), GlobalAvgPool<double>(8)};
    net.set_image_size({2, 5});
    REQUIRE(net.get<2>().splits_last_layer() == (middle > 0));
    auto act = net.get<0>();
    auto first = net.get<1>();
    auto second = net.get<2>();
    auto pool = net.get<3>();
    const M x = rbtest::random_batch<M>(8, 4 * 10, 94);
    const M dy = rbtest::random_batch<M>(8, 4, 95);
    REQUIRE(net.forward(x) == pool.forward(second.forward(first.forward(act.forward(x)))));
    REQUIRE(net.backward(dy) == act.backward(first.backward(second.backward(pool.backward(dy)))));
    std::vector<M> fused_grads, plain_grads;
    net.for_each_parameter([&](auto, auto&, auto& grad) { fused_grads.emplace_back(grad); });
    for (const auto* s : {&first, &second})
      s->for_each_parameter([&](auto, auto&, auto& grad) { plain_grads.emplace_back(grad); });
    REQUIRE(fused_grads.size() == std::size_t(4 * (2 + middle)));
    REQUIRE(fused_grads == plain_grads);
  }
  Net small{ReLU<double>(), stack(1), stack(2), GlobalAvgPool<double>(8)};
  small.set_image_size({1, 3});
  rbtest::require_gradients(small, rbtest::random_batch<M>(8, 2 * 3, 96));

  // Blocks side by side in a Sequential split the same way (Sequential<BasicBlock, BasicBlock>).
  using Pair = Sequential<EndsInActivation<double, ReLU<double>>, EndsInActivation<double, ReLU<double>>>;
  Pair pair{ends_in_activation<double, ReLU<double>>(8, 12), ends_in_activation<double, ReLU<double>>(8, 12)};
  auto b0 = pair.get<0>();
  auto b1 = pair.get<1>();
  const M x = rbtest::random_batch<M>(8, 30, 97);
  const M dy = rbtest::random_batch<M>(8, 30, 98);
  REQUIRE(pair.forward(x) == b1.forward(b0.forward(x)));
  REQUIRE(pair.backward(dy) == b0.backward(b1.backward(dy)));
  REQUIRE(pair.get<0>().get<0>().body().get<0>().weight_grad() == b0.get<0>().body().get<0>().weight_grad());
}
