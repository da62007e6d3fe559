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
