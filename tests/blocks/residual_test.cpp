#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

namespace {
template <class S, int D, int H>
using Mlp = Sequential<Linear<S, D, H>, ReLU<S, H>, Linear<S, H, D>>;
using DynBody = Sequential<Linear<double>, GELU<double>, Linear<double>>;
DynBody dyn_body(Index in, Index hidden, Index out) {
  return DynBody(Linear<double>(in, hidden), GELU<double>(), Linear<double>(hidden, out));
}
}  // namespace

TEST_CASE("Residual: identity skip, gradients (static sizes)", "[residual][gradient]") {
  Residual<Mlp<double, 4, 7>> block;
  auto x = rbtest::random_batch<Batch<double, 4>>(4, 5, 61);
  rbtest::require_gradients(block, x);
}

TEST_CASE("Residual: identity skip, gradients (dynamic sizes)", "[residual][gradient]") {
  Residual<DynBody> block(dyn_body(5, 3, 5));
  rbtest::require_gradients(block, rbtest::random_batch<Eigen::MatrixXd>(5, 4, 62));
}

TEST_CASE("Residual: projection skip, gradients (static and dynamic)", "[residual][gradient]") {
  Residual<Sequential<Linear<double, 4, 6>, Tanh<double, 6>, Linear<double, 6, 3>>, Projection<double, 4, 3>> s;
  rbtest::require_gradients(s, rbtest::random_batch<Batch<double, 4>>(4, 3, 63));
  Residual<DynBody, Projection<double>> d(dyn_body(5, 7, 2), Projection<double>(5, 2));
  rbtest::require_gradients(d, rbtest::random_batch<Eigen::MatrixXd>(5, 3, 64));
}

TEST_CASE("Residual: a single layer as the body, and nested residuals", "[residual][gradient]") {
  Residual<Linear<double, 3, 3>> single;
  rbtest::require_gradients(single, rbtest::random_batch<Batch<double, 3>>(3, 4, 65));
  Residual<Tanh<double>> act;  // body without a fused path: the generic add
  rbtest::require_gradients(act, rbtest::random_batch<Eigen::MatrixXd>(3, 2, 66));
  Residual<Sequential<Residual<Mlp<double, 3, 5>>, Tanh<double, 3>, Residual<Mlp<double, 3, 4>>>> nested;
  rbtest::require_gradients(nested, rbtest::random_batch<Batch<double, 3>>(3, 3, 67));
  Residual<Residual<Linear<double, 2, 2>>> twice;  // forward_add through a Residual body
  rbtest::require_gradients(twice, rbtest::random_batch<Batch<double, 2>>(2, 3, 68));
}

TEST_CASE("Residual: y = x + F(x) and y = P x + F(x), exactly", "[residual]") {
  Residual<DynBody> block(dyn_body(3, 4, 3));
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 5, 69);
  Eigen::MatrixXd fx = block.body().forward(x);
  REQUIRE(rbtest::rel_diff(block.forward(x), (x + fx).eval()) < 1e-15);

  Residual<DynBody, Projection<double>> proj(dyn_body(3, 4, 2), Projection<double>(3, 2));
  fx = proj.body().forward(x);
  const Eigen::MatrixXd px = proj.skip().weight() * x;
  REQUIRE(rbtest::rel_diff(proj.forward(x), (px + fx).eval()) < 1e-15);
}

TEST_CASE("Residual: parameter names are body.* and skip.*", "[residual][names]") {
  Residual<DynBody, Projection<double>> proj(dyn_body(3, 4, 2), Projection<double>(3, 2));
  std::vector<std::string> names;
  proj.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names ==
          std::vector<std::string>{"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias", "skip.weight"});
}

TEST_CASE("Residual: an identity skip with a size-changing dynamic body is rejected", "[residual][errors]") {
  REQUIRE_THROWS_AS(Residual<DynBody>(dyn_body(3, 4, 2)), std::invalid_argument);
  REQUIRE_THROWS_AS((Residual<DynBody, Projection<double>>(dyn_body(3, 4, 2), Projection<double>(3, 5))),
                    std::invalid_argument);
  Residual<DynBody> ok(dyn_body(3, 4, 3));
  Eigen::MatrixXd bad(4, 2);
  REQUIRE_THROWS_AS(ok.forward(bad), std::invalid_argument);
}

TEST_CASE("Residual: float smoke test agrees with double (static sizes)", "[residual][float]") {
  Residual<Mlp<double, 64, 64>> d;
  Residual<Mlp<float, 64, 64>> f;
  rbtest::copy_parameters(d, f);
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(64, 32, 70),
                               rbtest::random_batch<Eigen::MatrixXd>(64, 32, 71));
}

TEST_CASE("Residual: infer equals forward bit for bit, with both skips", "[residual][infer]") {
  Residual<Mlp<float, 48, 96>> block;
  const auto x = rbtest::random_batch<Batch<float, 48>>(48, 20, 72);
  decltype(block)::Workspace ws;
  const Batch<float, 48> y = block.forward(x);
  REQUIRE(block.infer(x, ws) == y);
  Residual<Sequential<Linear<float>, ReLU<float>, Linear<float>>, Projection<float>> proj(
      Sequential<Linear<float>, ReLU<float>, Linear<float>>(Linear<float>(48, 30), ReLU<float>(),
                                                            Linear<float>(30, 10)),
      Projection<float>(48, 10));
  decltype(proj)::Workspace pws;
  const Eigen::MatrixXf xd = x;  // Batch<float, 48> -> dynamic rows: an explicit copy, never an implicit temporary
  const Eigen::MatrixXf py = proj.forward(xd);
  REQUIRE(proj.infer(xd, pws) == py);
}

namespace {
// Residual + ReLU pairs: the ReLUs run inside the residuals' passes (forward_then after R1 and R2,
// backward_then before R2 and R3), through a FusedLayer (BatchNorm2d, Linear) and through the fallback
// for a last layer without hooks (Tanh).
template <class S>
using FusedChain = Sequential<Residual<Sequential<Linear<S>, BatchNorm2d<S>>>, ReLU<S>,
                              Residual<Sequential<Linear<S>, Tanh<S>>>, ReLU<S>, Residual<Linear<S>>>;
template <class S>
FusedChain<S> fused_chain() {
  return FusedChain<S>(
      Residual<Sequential<Linear<S>, BatchNorm2d<S>>>(
          Sequential<Linear<S>, BatchNorm2d<S>>(Linear<S>(6, 6), BatchNorm2d<S>(6))),
      ReLU<S>(), Residual<Sequential<Linear<S>, Tanh<S>>>(Sequential<Linear<S>, Tanh<S>>(Linear<S>(6, 6), Tanh<S>())),
      ReLU<S>(), Residual<Linear<S>>(Linear<S>(6, 6)));
}
}  // namespace

TEST_CASE("Residual: a neighbouring ReLU run inside its passes gives the separate passes' results",
          "[residual][fused]") {
  static_assert(HasEpilogueHooks<Residual<Sequential<Linear<double>, BatchNorm2d<double>>>>);
  static_assert(HasEpilogueHooks<Residual<Linear<float>>>);
  auto net = fused_chain<double>();
  auto pieces = net;  // the same weights, run layer by layer (no layer sees a neighbour)
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(6, 9, 73);
  const auto g = rbtest::random_batch<Eigen::MatrixXd>(6, 9, 74);

  const Eigen::MatrixXd y = net.forward(x);
  const auto& h0 = pieces.get<0>().forward(x);
  const auto& h1 = pieces.get<1>().forward(h0);
  const auto& h2 = pieces.get<2>().forward(h1);
  const auto& h3 = pieces.get<3>().forward(h2);
  REQUIRE(y == pieces.get<4>().forward(h3));
  REQUIRE((h1.array() >= 0).all());
  REQUIRE((h1.array() == 0).any());  // the ReLUs cut something: a skipped epilogue would show

  const Eigen::MatrixXd dx = net.backward(g);
  const auto& d4 = pieces.get<4>().backward(g);
  const auto& d3 = pieces.get<3>().backward(d4);
  const auto& d2 = pieces.get<2>().backward(d3);
  const auto& d1 = pieces.get<1>().backward(d2);
  REQUIRE(dx == pieces.get<0>().backward(d1));
  std::vector<Eigen::MatrixXd> grads;
  net.for_each_parameter([&](std::string_view, const auto&, const auto& grad) { grads.emplace_back(grad); });
  std::size_t i = 0;
  pieces.for_each_parameter([&](std::string_view name, const auto&, const auto& grad) {
    INFO(name);
    REQUIRE(Eigen::MatrixXd(grad) == grads.at(i++));
  });

  decltype(net)::Workspace ws;
  REQUIRE(net.infer(x, ws) == y);
}

TEST_CASE("Residual: fused neighbouring ReLUs, gradients (double) and float smoke test",
          "[residual][fused][gradient]") {
  auto net = fused_chain<double>();
  rbtest::require_gradients(net, rbtest::random_batch<Eigen::MatrixXd>(6, 5, 75));
  auto f = fused_chain<float>();
  auto d = fused_chain<double>();
  rbtest::copy_parameters(d, f);
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(6, 7, 76),
                               rbtest::random_batch<Eigen::MatrixXd>(6, 7, 77));
}
