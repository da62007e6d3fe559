// The optimizers update a large parameter in ranges on the threads (OptimizerState::update): the same
// bits as in one range, on any thread count, and the right values.
#include "support/helpers.hpp"

#include <resblocks/core/threading.hpp>
#include <resblocks/train/adam.hpp>
#include <resblocks/train/adam_w.hpp>
#include <resblocks/train/sgd.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstring>
#include <string_view>

using namespace resblocks;

namespace {

/// A 300 × 251 weight (75300 values: ranges on the threads, and a last range shorter than 64) and a
/// 7-value bias (one range), with gradients that change from step to step.
template <class S>
struct LargeModel {
  using Scalar = S;
  Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic> weight, dL_dweight;
  Eigen::Matrix<S, Eigen::Dynamic, 1> bias, dL_dbias;

  LargeModel() {
    weight.resize(300, 251);
    dL_dweight.resize(300, 251);
    bias.resize(7);
    dL_dbias.resize(7);
    Generator g(31);
    fill_uniform(weight, 1.0, g);
    fill_uniform(bias, 1.0, g);
  }
  void set_gradients(int step) {
    Generator g(static_cast<std::uint64_t>(100 + step));
    fill_uniform(dL_dweight, 1.0, g);
    fill_uniform(dL_dbias, 1.0, g);
  }
  template <class F>
  void for_each_parameter(F&& f) {
    f(std::string_view("weight"), weight, dL_dweight);
    f(std::string_view("bias"), bias, dL_dbias);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    f(std::string_view("weight"), weight, dL_dweight);
    f(std::string_view("bias"), bias, dL_dbias);
  }
};

/// The model after `steps` steps of the optimizer make_optimizer(model) builds, on `threads` threads.
template <class S, class MakeOptimizer>
LargeModel<S> train(int threads, int steps, MakeOptimizer make_optimizer) {
  const int saved = num_threads();
  set_num_threads(threads);
  LargeModel<S> model;
  auto optimizer = make_optimizer(model);
  for (int step = 0; step < steps; ++step) {
    model.set_gradients(step);
    optimizer.step(model);
  }
  set_num_threads(saved);
  return model;
}

template <class S>
bool same_bits(const LargeModel<S>& a, const LargeModel<S>& b) {
  return std::memcmp(a.weight.data(), b.weight.data(), sizeof(S) * std::size_t(a.weight.size())) == 0 &&
         std::memcmp(a.bias.data(), b.bias.data(), sizeof(S) * std::size_t(a.bias.size())) == 0;
}

template <class S, class MakeOptimizer>
void require_same_bits_on_threads(MakeOptimizer make_optimizer) {
  const LargeModel<S> one = train<S>(1, 4, make_optimizer);
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    REQUIRE(same_bits(one, train<S>(threads, 4, make_optimizer)));
  }
  // The comparison can fail: one step more moves the weights.
  REQUIRE_FALSE(same_bits(one, train<S>(2, 5, make_optimizer)));
}

}  // namespace

TEMPLATE_TEST_CASE("Sgd, Adam, AdamW: a large parameter updated in ranges on the threads has the bits of one range",
                   "[sgd][adam][threads]", float, double) {
  using S = TestType;
  SECTION("Sgd, Nesterov momentum and weight decay") {
    require_same_bits_on_threads<S>([](LargeModel<S>& m) {
      return Sgd<S>(m, {.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
    });
  }
  SECTION("Adam, amsgrad and L2 decay") {
    require_same_bits_on_threads<S>(
        [](LargeModel<S>& m) { return Adam<S>(m, {.lr = 1e-2, .weight_decay = 1e-2, .amsgrad = true}); });
  }
  SECTION("AdamW") {
    require_same_bits_on_threads<S>([](LargeModel<S>& m) { return AdamW<S>(m, {.lr = 1e-2}); });
  }
}

TEST_CASE("Sgd: every element of a large parameter is updated once, with its own momentum", "[sgd][threads]") {
  // Two steps of plain momentum SGD on 2 threads against the update written out in double.
  const int saved = num_threads();
  set_num_threads(2);
  LargeModel<double> model;
  const Eigen::MatrixXd w0 = model.weight;
  Sgd<double> optimizer(model, {.lr = 0.1, .momentum = 0.5});
  model.set_gradients(0);
  const Eigen::MatrixXd g0 = model.dL_dweight;
  optimizer.step(model);
  model.set_gradients(1);
  const Eigen::MatrixXd g1 = model.dL_dweight;
  optimizer.step(model);
  set_num_threads(saved);
  // buf1 = g0; buf2 = 0.5 buf1 + g1; w = w0 - 0.1 buf1 - 0.1 buf2
  const Eigen::MatrixXd expected = w0 - 0.1 * g0 - 0.1 * (0.5 * g0 + g1);
  REQUIRE((model.weight - expected).cwiseAbs().maxCoeff() < 1e-14);
}
