// The optimizers update a large parameter in ranges on the threads (OptimizerState::update): the same
// bits as in one range, on any thread count, and the right values.
#include "support/helpers.hpp"
#include "train/optim_test_model.hpp"

#include <resblocks/core/threading.hpp>
#include <resblocks/train/adam.hpp>
#include <resblocks/train/adam_w.hpp>
#include <resblocks/train/sgd.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <cstring>

using namespace resblocks;

namespace {

template <class S>
using Model = optim_test::DynamicTinyModel<S>;

/// The optimizer tests' model at 300 × 251: its 75300-value weight runs in ranges on the threads (the
/// last one shorter than 64), its bias (300) and gain (251) in one range.
template <class S>
Model<S> large_model() {
  Model<S> model(300, 251);
  Generator g(31);
  fill_uniform(model.weight, 1.0, g);
  fill_uniform(model.bias, 1.0, g);
  fill_uniform(model.gain, 1.0, g);
  return model;
}

/// Gradients that change from step to step.
template <class S>
void set_gradients(Model<S>& model, int step) {
  Generator g(static_cast<std::uint64_t>(100 + step));
  fill_uniform(model.dL_dweight, 1.0, g);
  fill_uniform(model.dL_dbias, 1.0, g);
  fill_uniform(model.dL_dgain, 1.0, g);
}

/// The model after `steps` steps of the optimizer make_optimizer(model) builds, on `threads` threads.
template <class S, class MakeOptimizer>
Model<S> train(int threads, int steps, MakeOptimizer make_optimizer) {
  const int saved = num_threads();
  set_num_threads(threads);
  Model<S> model = large_model<S>();
  auto optimizer = make_optimizer(model);
  for (int step = 0; step < steps; ++step) {
    set_gradients(model, step);
    optimizer.step(model);
  }
  set_num_threads(saved);
  return model;
}

template <class S>
bool same_bits(const Model<S>& a, const Model<S>& b) {
  const auto same = [](const auto& x, const auto& y) {
    return std::memcmp(x.data(), y.data(), sizeof(S) * std::size_t(x.size())) == 0;
  };
  return same(a.weight, b.weight) && same(a.bias, b.bias) && same(a.gain, b.gain);
}

template <class S, class MakeOptimizer>
void require_same_bits_on_threads(MakeOptimizer make_optimizer) {
  const Model<S> one = train<S>(1, 4, make_optimizer);
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
    require_same_bits_on_threads<S>(
        [](Model<S>& m) { return Sgd<S>(m, {.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4}); });
  }
  SECTION("Adam, amsgrad and L2 decay") {
    require_same_bits_on_threads<S>(
        [](Model<S>& m) { return Adam<S>(m, {.lr = 1e-2, .weight_decay = 1e-2, .amsgrad = true}); });
  }
  SECTION("AdamW") {
    require_same_bits_on_threads<S>([](Model<S>& m) { return AdamW<S>(m, {.lr = 1e-2}); });
  }
}

TEST_CASE("Sgd: every element of a large parameter is updated once, with its own momentum", "[sgd][threads]") {
  // Two steps of plain momentum SGD on 2 threads against the update written out in double.
  const int saved = num_threads();
  set_num_threads(2);
  Model<double> model = large_model<double>();
  const Eigen::MatrixXd w0 = model.weight;
  Sgd<double> optimizer(model, {.lr = 0.1, .momentum = 0.5});
  set_gradients(model, 0);
  const Eigen::MatrixXd g0 = model.dL_dweight;
  optimizer.step(model);
  set_gradients(model, 1);
  const Eigen::MatrixXd g1 = model.dL_dweight;
  optimizer.step(model);
  set_num_threads(saved);
  // buf1 = g0; buf2 = 0.5 buf1 + g1; w = w0 - 0.1 buf1 - 0.1 buf2
  const Eigen::MatrixXd expected = w0 - 0.1 * g0 - 0.1 * (0.5 * g0 + g1);
  REQUIRE((model.weight - expected).cwiseAbs().maxCoeff() < 1e-14);
}
