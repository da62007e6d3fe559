#include "support/helpers.hpp"

#include <resblocks/blocks/highway.hpp>
#include <resblocks/blocks/residual.hpp>
#include <resblocks/blocks/sequential.hpp>
#include <resblocks/core/threading.hpp>
#include <resblocks/layers/batch_norm2d.hpp>
#include <resblocks/layers/conv2d.hpp>
#include <resblocks/layers/linear.hpp>
#include <resblocks/layers/relu.hpp>
#include <resblocks/layers/tanh.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;

namespace {

template <class S, int D>
using Mlp = Sequential<Linear<S, D, D>, ReLU<S, D>>;

template <class S>
Mlp<S, Dynamic> mlp(Index d) {
  return Mlp<S, Dynamic>(Linear<S>(d, d), ReLU<S>());
}

std::vector<std::string> parameter_names(const auto& layer) {
  std::vector<std::string> names;
  layer.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  return names;
}

/// The checked message of an invalid_argument thrown by f.
template <class F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL("no std::invalid_argument");
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("Highway: gradients (double, static sizes)", "[highway][gradient]") {
  Highway<Mlp<double, 5>> hw(HighwayOptions{.gate_bias = 0.25});
  rbtest::require_gradients(hw, rbtest::random_batch<Batch<double, 5>>(5, 4, 1));
  Highway<Mlp<double, 5>> default_gate;  // b_T = -2
  rbtest::require_gradients(default_gate, rbtest::random_batch<Batch<double, 5>>(5, 3, 2));
}

TEST_CASE("Highway: gradients (double, Dynamic, other bodies, batch of one)", "[highway][gradient]") {
  Highway<Mlp<double, Dynamic>> hw(mlp<double>(6), {.gate_bias = 0.5});
  rbtest::require_gradients(hw, rbtest::random_batch<Eigen::MatrixXd>(6, 5, 3));
  rbtest::require_gradients(hw, rbtest::random_batch<Eigen::MatrixXd>(6, 1, 4));

  using Deep = Sequential<Linear<double>, Tanh<double>, Linear<double>>;
  Highway<Deep> deep(Deep(Linear<double>(4, 9), Tanh<double>(), Linear<double>(9, 4)), {.gate_bias = -0.5});
  rbtest::require_gradients(deep, rbtest::random_batch<Eigen::MatrixXd>(4, 3, 5));

  // H takes any size: the feature count comes from the constructor.
  Highway<Tanh<double>> bare(Tanh<double>(), 3, {.gate_bias = 0.0});
  REQUIRE(bare.in_features() == 3);
  rbtest::require_gradients(bare, rbtest::random_batch<Eigen::MatrixXd>(3, 4, 6) * 2.0);
}

TEST_CASE("Highway: composes in Residual and Sequential (forward_add, backward_add)", "[highway][gradient]") {
  using Hw = Highway<Mlp<double, 4>>;
  Residual<Hw> res(Hw({.gate_bias = 0.3}));
  const auto x = rbtest::random_batch<Batch<double, 4>>(4, 5, 7);
  Hw alone = res.body();
  const Batch<double, 4> expected = x + alone.forward(x);
  REQUIRE(rbtest::rel_diff(res.forward(x), expected) < 1e-15);
  rbtest::require_gradients(res, x);
  Residual<Hw>::Workspace rws;
  REQUIRE(res.infer(x, rws) == res.forward(x));

  Sequential<Hw, Hw> stack(Hw({.gate_bias = 0.2}), Hw({.gate_bias = -1.0}));
  rbtest::require_gradients(stack, x);
  REQUIRE(parameter_names(stack) == std::vector<std::string>{"0.h.0.weight", "0.h.0.bias", "0.t.weight", "0.t.bias",
                                                             "1.h.0.weight", "1.h.0.bias", "1.t.weight", "1.t.bias"});
}

TEST_CASE("Highway: forward and backward match plain Eigen on a threaded size", "[highway]") {
  // d = 96, n = 200: the GEMMs (96·200·96 multiply-adds) are split between threads.
  const Index d = 96, n = 200;
  Highway<Mlp<double, Dynamic>> hw(mlp<double>(d), {.gate_bias = -1.0});
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(d, n, 8);
  const Eigen::MatrixXd g = rbtest::random_batch<Eigen::MatrixXd>(d, n, 9);
  const Eigen::MatrixXd y = hw.forward(x);
  const Eigen::MatrixXd dx = hw.backward(g);

  const auto& wh = hw.h().get<0>().weight();
  const auto& bh = hw.h().get<0>().bias();
  const auto& wt = hw.gate().weight();
  const auto& bt = hw.gate().bias();
  const Eigen::MatrixXd pre = (wh * x).colwise() + bh;
  const Eigen::ArrayXXd h = pre.array().max(0.0);
  const Eigen::ArrayXXd t = 1.0 / (1.0 + (-((wt * x).colwise() + bt).array()).exp());
  const Eigen::MatrixXd y_ref = (t * h + (1.0 - t) * x.array()).matrix();
  REQUIRE(rbtest::rel_diff(y, y_ref) < 1e-13);
  REQUIRE(rbtest::rel_diff(hw.gate_values(), t.matrix()) < 1e-14);

  const Eigen::MatrixXd d_pre = (t * g.array() * (pre.array() > 0).cast<double>()).matrix();
  const Eigen::MatrixXd d_gate = (g.array() * (h - x.array()) * t * (1.0 - t)).matrix();
  const Eigen::MatrixXd dx_ref = wh.transpose() * d_pre + ((1.0 - t) * g.array()).matrix() + wt.transpose() * d_gate;
  REQUIRE(rbtest::rel_diff(dx, dx_ref) < 1e-13);
  REQUIRE(rbtest::rel_diff(hw.gate().weight_grad(), d_gate * x.transpose()) < 1e-13);
  REQUIRE(rbtest::rel_diff(hw.gate().bias_grad(), d_gate.rowwise().sum()) < 1e-13);
  REQUIRE(rbtest::rel_diff(hw.h().get<0>().weight_grad(), d_pre * x.transpose()) < 1e-13);
  REQUIRE(rbtest::rel_diff(hw.h().get<0>().bias_grad(), d_pre.rowwise().sum()) < 1e-13);
}

TEST_CASE("Highway: float smoke test agrees with double", "[highway][float]") {
  Highway<Mlp<double, Dynamic>> d(mlp<double>(40));
  Highway<Mlp<float, Dynamic>> f(mlp<float>(40));
  rbtest::copy_parameters(d, f);
  rbtest::require_float_agrees(f, d, rbtest::random_batch<Eigen::MatrixXd>(40, 30, 10),
                               rbtest::random_batch<Eigen::MatrixXd>(40, 30, 11));
  REQUIRE(rbtest::rel_diff(f.gate().weight_grad(), d.gate().weight_grad()) < 1e-5);
  REQUIRE(rbtest::rel_diff(f.h().get<0>().weight_grad(), d.h().get<0>().weight_grad()) < 1e-5);
}

TEST_CASE("Highway: infer equals forward bit for bit", "[highway][infer]") {
  Highway<Mlp<float, Dynamic>> hw(mlp<float>(256));
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(256, 300, 12);
  decltype(hw)::Workspace ws;
  const Eigen::MatrixXf y = hw.forward(x);
  REQUIRE(hw.infer(x, ws) == y);
  REQUIRE(hw.infer(x, ws) == y);  // a reused workspace

  Highway<Mlp<double, 3>> small;
  const auto xs = rbtest::random_batch<Batch<double, 3>>(3, 2, 13);
  decltype(small)::Workspace wss;
  const Batch<double, 3> ys = small.forward(xs);
  REQUIRE(small.infer(xs, wss) == ys);
}

TEST_CASE("Highway: results do not depend on the thread count", "[highway][threads]") {
  const int saved = num_threads();
  Highway<Mlp<float, Dynamic>> hw(mlp<float>(256));
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(256, 256, 14);
  const auto g = rbtest::random_batch<Eigen::MatrixXf>(256, 256, 15);
  Eigen::MatrixXf y[2], dx[2], dwt[2], dwh[2];
  for (int t = 1; t <= 2; ++t) {
    set_num_threads(t);
    hw.zero_grad();
    y[t - 1] = hw.forward(x);
    dx[t - 1] = hw.backward(g);
    dwt[t - 1] = hw.gate().weight_grad();
    dwh[t - 1] = hw.h().get<0>().weight_grad();
  }
  set_num_threads(saved);
  REQUIRE(y[0] == y[1]);
  REQUIRE(dx[0] == dx[1]);
  REQUIRE(dwt[0] == dwt[1]);
  REQUIRE(dwh[0] == dwh[1]);
}

TEST_CASE("Highway: parameter names h.* and t.*, and set_child_names", "[highway][names]") {
  Highway<Mlp<float, Dynamic>> hw(mlp<float>(4));
  REQUIRE(parameter_names(hw) == std::vector<std::string>{"h.0.weight", "h.0.bias", "t.weight", "t.bias"});
  // The PyTorch module's names (H = nn.Linear, the ReLU applied in forward): the Sequential's child unnamed.
  hw.h().set_child_names({"", ""});
  REQUIRE(parameter_names(hw) == std::vector<std::string>{"h.weight", "h.bias", "t.weight", "t.bias"});
  hw.set_child_names("transform", "gate");
  REQUIRE(parameter_names(hw) ==
          std::vector<std::string>{"transform.weight", "transform.bias", "gate.weight", "gate.bias"});
  REQUIRE(parameter_count(hw) == 2 * (16 + 4));
  int layers = 0;
  hw.for_each_layer([&](auto&) { ++layers; });
  REQUIRE(layers == 2);
}

TEST_CASE("Highway: the gate starts as a PyTorch Linear with a constant bias", "[highway][init]") {
  const Index d = 50;
  Highway<Mlp<float, Dynamic>> hw(mlp<float>(d));
  REQUIRE(hw.options().gate_bias == -2.0);
  REQUIRE(hw.gate().bias().isConstant(-2.0f, 0));
  const float bound = 1.0f / std::sqrt(float(d));
  REQUIRE(hw.gate().weight().cwiseAbs().maxCoeff() <= bound);
  REQUIRE(hw.gate().weight().cwiseAbs().maxCoeff() > 0.9f * bound);
  REQUIRE(hw.gate().weight().mean() < 0.05f * bound);

  Highway<Mlp<float, 8>> custom(HighwayOptions{.gate_bias = 1.5});
  REQUIRE(custom.gate().bias().isConstant(1.5f, 0));

  // Drawn in PyTorch's order: H's parameters, then W_T (the gate's Linear draw, its bias replaced).
  manual_seed(77);
  Linear<float> h_ref(d, d), t_ref(d, d);
  manual_seed(77);
  Highway<Mlp<float, Dynamic>> seeded(mlp<float>(d));
  REQUIRE(seeded.h().get<0>().weight() == h_ref.weight());
  REQUIRE(seeded.gate().weight() == t_ref.weight());

  // A freshly built block carries mostly x: T = σ(W_T x − 2) is small.
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(d, 10, 16);
  hw.forward(x);
  REQUIRE(hw.gate_values().mean() < 0.2f);
}

TEST_CASE("Highway: training state, buffers and image size reach H", "[highway][images]") {
  using Body = Sequential<Conv2d<double>, BatchNorm2d<double>, ReLU<double>>;
  Highway<Body> hw(Body(Conv2d<double>(3, 3, 3, {.padding = 1}), BatchNorm2d<double>(3), ReLU<double>()),
                   {.gate_bias = 0.1});
  REQUIRE(hw.set_image_size({4, 5}) == ImageSize{4, 5});
  std::vector<std::string> buffers;
  hw.for_each_buffer([&](std::string_view n, const auto&) { buffers.emplace_back(n); });
  REQUIRE(buffers == std::vector<std::string>{"h.1.running_mean", "h.1.running_var", "h.1.num_batches_tracked"});
  REQUIRE(hw.h().get<1>().training());
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 4 * 5, 17);
  rbtest::require_gradients(hw, x);
  hw.set_training(false);
  REQUIRE_FALSE(hw.h().get<1>().training());
  rbtest::require_gradients(hw, x);
  decltype(hw)::Workspace ws;
  REQUIRE(hw.infer(x, ws) == hw.forward(x));

  using Strided = Sequential<Conv2d<double>>;
  Highway<Strided> shrinking(Strided(Conv2d<double>(3, 3, 3, {.stride = 2, .padding = 1})));
  const std::string what = invalid_argument_message([&] { shrinking.set_image_size({4, 4}); });
  REQUIRE(contains(what, "Highway"));
  REQUIRE(contains(what, "4x4"));
  REQUIRE(contains(what, "2x2"));
}

TEST_CASE("Highway: shape errors name the block and the shapes", "[highway][errors]") {
  Highway<Mlp<float, Dynamic>> hw(mlp<float>(4));
  Eigen::MatrixXf bad = Eigen::MatrixXf::Ones(5, 2);
  std::string what = invalid_argument_message([&] { hw.forward(bad); });
  REQUIRE(contains(what, "Highway"));
  REQUIRE(contains(what, "5x2"));
  REQUIRE(contains(what, "expected 4"));
  decltype(hw)::Workspace ws;
  REQUIRE_THROWS_AS(hw.infer(bad, ws), std::invalid_argument);

  Eigen::MatrixXf g = Eigen::MatrixXf::Ones(4, 3);
  REQUIRE_THROWS_AS(hw.backward(g), std::logic_error);  // before any forward
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(4, 2);
  hw.forward(x);
  what = invalid_argument_message([&] { hw.backward(g); });
  REQUIRE(contains(what, "Highway"));
  REQUIRE(contains(what, "4x3"));
  REQUIRE(contains(what, "4x2"));
  auto copy = hw;  // a copy holds no forward state
  REQUIRE_THROWS_AS(copy.backward(Eigen::MatrixXf::Ones(4, 2)), std::logic_error);

  using Wide = Sequential<Linear<float>>;
  what = invalid_argument_message([] { Highway<Wide> h(Wide(Linear<float>(6, 4))); });
  REQUIRE(contains(what, "Highway"));
  REQUIRE(contains(what, "6 features to 4"));
  what = invalid_argument_message([] { Highway<ReLU<float>> h{ReLU<float>()}; });
  REQUIRE(contains(what, "features"));
  what = invalid_argument_message([] { Highway<Mlp<float, Dynamic>> h(mlp<float>(6), 5); });
  REQUIRE(contains(what, "5"));
  REQUIRE(contains(what, "6"));
  REQUIRE_THROWS_AS(Highway<ReLU<float>>(ReLU<float>(), -1), std::invalid_argument);
  REQUIRE_THROWS_AS((Highway<Mlp<float, 4>>(Mlp<float, 4>(), 5)), std::invalid_argument);
  REQUIRE_THROWS_AS((Highway<Mlp<float, 4>>({.gate_bias = std::numeric_limits<double>::quiet_NaN()})),
                    std::invalid_argument);
}
