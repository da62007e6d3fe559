#include "support/helpers.hpp"
#include "train/optim_test_model.hpp"

#include <resblocks/layers/linear.hpp>
#include <resblocks/train/sgd.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

using namespace resblocks;
using optim_test::DynamicTinyModel;
using optim_test::TinyModel;

namespace {

SgdOptions sgd_options(const resblocks_tests::Fixture& f) {
  SgdOptions o;
  o.lr = optim_test::option(f, "lr");
  o.momentum = optim_test::option(f, "momentum");
  o.dampening = optim_test::option(f, "dampening");
  o.nesterov = optim_test::option(f, "nesterov") != 0;
  o.weight_decay = optim_test::option(f, "weight_decay");
  o.decoupled_weight_decay = optim_test::option(f, "decoupled_weight_decay") != 0;
  o.decay = optim_test::decay_predicate(f);
  return o;
}

template <class Model>
void replay_sgd(const std::string& file) {
  const auto f = resblocks_tests::load_fixture(file);
  Model model;
  Sgd opt(model, sgd_options(f));
  static_assert(std::is_same_v<decltype(opt), Sgd<typename Model::Scalar>>);
  optim_test::replay(f, model, opt);
}

/// Models that visit fewer, more, or renamed parameters than TinyModel.
struct Fewer {
  using Scalar = double;
  DynamicTinyModel<double> m{3, 4};
  template <class F>
  void for_each_parameter(F&& f) {
    f(std::string_view("fc.weight"), m.weight, m.dL_dweight);
    f(std::string_view("fc.bias"), m.bias, m.dL_dbias);
  }
};
struct More : DynamicTinyModel<double> {
  More() : DynamicTinyModel<double>(3, 4) {}
  template <class F>
  void for_each_parameter(F&& f) {
    DynamicTinyModel<double>::for_each_parameter(f);
    f(std::string_view("extra"), bias, dL_dbias);
  }
};
struct Renamed : DynamicTinyModel<double> {
  Renamed() : DynamicTinyModel<double>(3, 4) {}
  template <class F>
  void for_each_parameter(F&& f) {
    f(std::string_view("fc.weight"), weight, dL_dweight);
    f(std::string_view("fc.bias"), bias, dL_dbias);
    f(std::string_view("ln.weight"), gain, dL_dgain);
  }
};

const char* const sgd_fixtures[] = {"optim_sgd.txt", "optim_sgd_momentum.txt", "optim_sgd_nesterov.txt",
                                    "optim_sgd_decay_groups.txt", "optim_sgdw.txt"};

}  // namespace

TEST_CASE("Sgd: matches torch.optim.SGD step by step (double, static sizes)", "[sgd][pytorch]") {
  for (const char* file : sgd_fixtures) {
    INFO(file);
    replay_sgd<TinyModel<double>>(file);
  }
}

TEST_CASE("Sgd: matches torch.optim.SGD step by step (double, dynamic sizes)", "[sgd][pytorch]") {
  for (const char* file : sgd_fixtures) {
    INFO(file);
    replay_sgd<DynamicTinyModel<double>>(file);
  }
}

TEST_CASE("Sgd: matches torch.optim.SGD step by step (float)", "[sgd][pytorch]") {
  for (const char* file : sgd_fixtures) {
    INFO(file);
    replay_sgd<TinyModel<float>>(file);
    replay_sgd<DynamicTinyModel<float>>(file);
  }
}

TEST_CASE("Sgd: the decay predicate exempts the parameters it rejects", "[sgd]") {
  // Plain SGD with L2: p -= lr * (g + wd * p) for decayed parameters, p -= lr * g for the others.
  for (const bool decoupled : {false, true}) {
    INFO("decoupled " << decoupled);
    TinyModel<double> model;
    model.weight.setConstant(2.0);
    model.bias.setConstant(-4.0);
    model.gain.setConstant(8.0);
    model.dL_dweight.setConstant(0.5);
    model.dL_dbias.setConstant(0.25);
    model.dL_dgain.setConstant(-1.0);
    int asked = 0;
    Sgd opt(
        model,
        {.lr = 0.5, .weight_decay = 0.125, .decoupled_weight_decay = decoupled, .decay = [&](std::string_view name) {
           ++asked;
           return name != "fc.bias";
         }});
    REQUIRE(asked == 3);
    opt.step(model);
    opt.step(model);
    REQUIRE(asked == 3);  // asked once per parameter, at construction
    // Two steps with constant gradients, by hand. L2: p1 = p - lr (g + wd p); SGDW: p1 = p (1 - lr wd) - lr g.
    auto decayed = [&](double p, double g) {
      for (int k = 0; k < 2; ++k) p = decoupled ? p * (1 - 0.5 * 0.125) - 0.5 * g : p - 0.5 * (g + 0.125 * p);
      return p;
    };
    REQUIRE((model.weight.array() == decayed(2.0, 0.5)).all());
    REQUIRE((model.bias.array() == -4.0 - 2 * 0.5 * 0.25).all());
    REQUIRE((model.gain.array() == decayed(8.0, -1.0)).all());
  }
}

TEST_CASE("Sgd: invalid options throw std::invalid_argument", "[sgd]") {
  TinyModel<double> model;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  REQUIRE_THROWS_AS(Sgd(model, {.lr = -0.1}), std::invalid_argument);
  REQUIRE_THROWS_AS(Sgd(model, {.lr = nan}), std::invalid_argument);
  REQUIRE_THROWS_AS(Sgd(model, {.momentum = -0.5}), std::invalid_argument);
  REQUIRE_THROWS_AS(Sgd(model, {.weight_decay = -1e-4}), std::invalid_argument);
  REQUIRE_THROWS_WITH(Sgd(model, {.nesterov = true}), rbtest::contains("Nesterov momentum requires a momentum"));
  REQUIRE_THROWS_WITH(Sgd(model, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                      rbtest::contains("zero dampening"));
  REQUIRE_THROWS_WITH(Sgd(model, {.lr = -1}), rbtest::contains("resblocks::Sgd: invalid learning rate -1"));
  REQUIRE_NOTHROW(Sgd(model, {.lr = 0, .momentum = 0.9, .nesterov = true}));
  Sgd opt(model);
  REQUIRE_THROWS_AS(opt.set_lr(-1), std::invalid_argument);
  REQUIRE_THROWS_AS(opt.set_lr(nan), std::invalid_argument);
  REQUIRE(opt.lr() == 0.01);  // unchanged: the default
}

TEST_CASE("Sgd: a changed model is rejected before any parameter moves", "[sgd]") {
  DynamicTinyModel<double> model(3, 4);
  model.weight.setConstant(1.0);
  model.dL_dweight.setConstant(1.0);
  Sgd opt(model, {.lr = 0.1, .momentum = 0.9});
  opt.step(model);
  REQUIRE(opt.steps() == 1);

  DynamicTinyModel<double> wider(3, 5);  // fc.weight 3x5 and norm.weight 5: the first mismatch is fc.weight
  wider.weight.setConstant(1.0);
  REQUIRE_THROWS_WITH(opt.step(wider), rbtest::contains("'fc.weight' has 15 elements, had 12"));
  REQUIRE((wider.weight.array() == 1.0).all());

  DynamicTinyModel<double> bad_grad(3, 4);
  bad_grad.dL_dgain.resize(3);
  REQUIRE_THROWS_WITH(opt.step(bad_grad), rbtest::contains("gradient of parameter 'norm.weight' has 3 elements"));

  // Fewer, more, or renamed parameters.
  Fewer fewer;
  fewer.m.weight.setConstant(3.0);
  REQUIRE_THROWS_WITH(opt.step(fewer), rbtest::contains("the first one missing is 'norm.weight'"));
  REQUIRE((fewer.m.weight.array() == 3.0).all());  // checked before updating
  More more;
  REQUIRE_THROWS_WITH(opt.step(more), rbtest::contains("extra parameter 'extra'"));
  Renamed renamed;
  REQUIRE_THROWS_WITH(opt.step(renamed), rbtest::contains("parameter 2 is 'ln.weight', was 'norm.weight'"));
  REQUIRE_THROWS_WITH(opt.step(renamed), rbtest::contains("resblocks::Sgd: the model changed"));
  REQUIRE(opt.steps() == 1);  // failed steps do not count
  opt.step(model);
  REQUIRE(opt.steps() == 2);
}

TEST_CASE("Sgd: steps counts, set_lr takes effect, options are kept", "[sgd]") {
  TinyModel<double> model;
  model.weight.setConstant(1.0);
  model.dL_dweight.setConstant(2.0);
  Sgd opt(model, {.lr = 0.25, .momentum = 0.5});
  REQUIRE(opt.steps() == 0);
  REQUIRE(opt.options().momentum == 0.5);
  opt.step(model);  // buf = 2, p = 1 - 0.25 * 2
  REQUIRE((model.weight.array() == 0.5).all());
  opt.set_lr(0.125);
  REQUIRE(opt.lr() == 0.125);
  REQUIRE(opt.options().lr == 0.125);
  opt.step(model);  // buf = 0.5 * 2 + 2 = 3, p = 0.5 - 0.125 * 3
  REQUIRE((model.weight.array() == 0.125).all());
  opt.set_lr(0);
  opt.step(model);
  REQUIRE((model.weight.array() == 0.125).all());
  REQUIRE(opt.steps() == 3);
}

TEST_CASE("Sgd: trains a Linear layer through its for_each_parameter", "[sgd]") {
  Linear<double> fc(4, 3);
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(4, 5, 21);
  const Eigen::MatrixXd dy = rbtest::random_batch<Eigen::MatrixXd>(3, 5, 22);
  const Eigen::MatrixXd w0 = fc.weight();
  const Eigen::VectorXd b0 = fc.bias();
  Sgd opt(fc, {.lr = 0.1, .weight_decay = 0.01, .decay = [](std::string_view n) { return n == "weight"; }});
  static_assert(std::is_same_v<decltype(opt), Sgd<double>>);
  fc.zero_grad();
  fc.forward(x);
  fc.backward(dy);
  opt.step(fc);
  const Eigen::MatrixXd dW = dy * x.transpose();
  const Eigen::VectorXd db = dy.rowwise().sum();
  REQUIRE(fc.weight().isApprox(w0 - 0.1 * (dW + 0.01 * w0), 1e-14));
  REQUIRE(fc.bias().isApprox(b0 - 0.1 * db, 1e-14));
}

TEST_CASE("Sgd: check_finite refuses a non-finite gradient before anything moves, naming the step", "[sgd]") {
  TinyModel<double> model;
  model.weight.setConstant(1.0);
  model.dL_dweight.setConstant(0.5);
  Sgd opt(model, {.lr = 0.1, .momentum = 0.9, .check_finite = true});
  opt.step(model);
  const auto weight = model.weight;
  model.dL_dgain(1) = std::numeric_limits<double>::quiet_NaN();
  REQUIRE_THROWS_WITH(opt.step(model), rbtest::contains("resblocks::Sgd: step 2:") &&
                                           rbtest::contains("'norm.weight' holds NaN") &&
                                           rbtest::contains("no parameter was changed"));
  REQUIRE(model.weight == weight);
  REQUIRE(opt.steps() == 1);
  model.dL_dgain(1) = std::numeric_limits<double>::infinity();
  REQUIRE_THROWS_WITH(opt.step(model), rbtest::contains("holds an infinity"));

  Sgd unguarded(model, {.lr = 0.1});  // off by default, as torch: the NaN spreads
  model.dL_dgain(1) = std::numeric_limits<double>::quiet_NaN();
  unguarded.step(model);
  REQUIRE(std::isnan(model.gain(1)));
}
