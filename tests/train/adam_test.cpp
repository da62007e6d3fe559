#include "support/helpers.hpp"
#include "train/optim_test_model.hpp"

#include <resblocks/train/adam.hpp>
#include <resblocks/train/adam_w.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

using namespace resblocks;
using optim_test::DynamicTinyModel;
using optim_test::TinyModel;

namespace {

template <class Options>
Options adam_options(const resblocks_tests::Fixture& f) {
  Options o;
  o.lr = optim_test::option(f, "lr");
  o.beta1 = optim_test::option(f, "beta1");
  o.beta2 = optim_test::option(f, "beta2");
  o.eps = optim_test::option(f, "eps");
  o.weight_decay = optim_test::option(f, "weight_decay");
  o.amsgrad = optim_test::option(f, "amsgrad") != 0;
  o.decay = optim_test::decay_predicate(f);
  return o;
}

template <class Model>
void replay_adam(const std::string& file) {
  const auto f = resblocks_tests::load_fixture(file);
  Model model;
  Adam opt(model, adam_options<AdamOptions>(f));
  static_assert(std::is_same_v<decltype(opt), Adam<typename Model::Scalar>>);
  optim_test::replay(f, model, opt);
}

template <class Model>
void replay_adam_w(const std::string& file) {
  const auto f = resblocks_tests::load_fixture(file);
  Model model;
  AdamW opt(model, adam_options<AdamWOptions>(f));
  static_assert(std::is_same_v<decltype(opt), AdamW<typename Model::Scalar>>);
  optim_test::replay(f, model, opt);
}

template <class Model>
void replay_all() {
  for (const char* file : {"optim_adam.txt", "optim_adam_amsgrad.txt"}) {
    INFO(file);
    replay_adam<Model>(file);
  }
  for (const char* file : {"optim_adamw.txt", "optim_adamw_decay_groups.txt"}) {
    INFO(file);
    replay_adam_w<Model>(file);
  }
}

}  // namespace

TEST_CASE("Adam, AdamW: match torch.optim step by step (double, static sizes)", "[adam][pytorch]") {
  replay_all<TinyModel<double>>();
}

TEST_CASE("Adam, AdamW: match torch.optim step by step (double, dynamic sizes)", "[adam][pytorch]") {
  replay_all<DynamicTinyModel<double>>();
}

TEST_CASE("Adam, AdamW: match torch.optim step by step (float)", "[adam][pytorch]") {
  replay_all<TinyModel<float>>();
  replay_all<DynamicTinyModel<float>>();
}

TEST_CASE("Adam, AdamW: defaults are torch's", "[adam]") {
  const AdamOptions a;
  CHECK(a.lr == 1e-3);
  CHECK(a.beta1 == 0.9);
  CHECK(a.beta2 == 0.999);
  CHECK(a.eps == 1e-8);
  CHECK(a.weight_decay == 0);
  CHECK_FALSE(a.amsgrad);
  CHECK_FALSE(a.decay);
  // optim_adamw.txt ran torch.optim.AdamW() with its defaults.
  const auto f = resblocks_tests::load_fixture("optim_adamw.txt");
  const AdamWOptions w;
  CHECK(w.lr == optim_test::option(f, "lr"));
  CHECK(w.beta1 == optim_test::option(f, "beta1"));
  CHECK(w.beta2 == optim_test::option(f, "beta2"));
  CHECK(w.eps == optim_test::option(f, "eps"));
  CHECK(w.weight_decay == optim_test::option(f, "weight_decay"));
  CHECK(w.weight_decay == 1e-2);
  CHECK_FALSE(w.amsgrad);
}

TEST_CASE("Adam: the first step moves every entry by lr against the sign of its gradient", "[adam]") {
  // Bias correction: after one step m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps).
  TinyModel<double> model;
  model.weight.setConstant(1.0);
  model.dL_dweight = rbtest::random_batch<Eigen::Matrix<double, 3, 4>>(3, 4, 31);
  model.dL_dbias << 1e-3, -2.0, 50.0;
  model.dL_dgain << -1e3, 1e-2, 0.5, -0.25;
  Adam opt(model, {.lr = 0.01, .beta1 = 0.5, .beta2 = 0.75, .eps = 0});
  opt.step(model);
  REQUIRE(opt.steps() == 1);
  const Eigen::Array<double, 3, 4> expected = 1.0 - 0.01 * model.dL_dweight.array().sign();
  CHECK((model.weight.array() - expected).abs().maxCoeff() < 1e-15);
  CHECK((model.bias.array() + 0.01 * model.dL_dbias.array().sign()).abs().maxCoeff() < 1e-15);
  CHECK((model.gain.array() + 0.01 * model.dL_dgain.array().sign()).abs().maxCoeff() < 1e-15);
}

TEST_CASE("AdamW: the decay predicate exempts the parameters it rejects", "[adam]") {
  // With a zero gradient Adam's update is 0, so only the decoupled decay moves parameters.
  TinyModel<double> model;
  model.weight.setConstant(2.0);
  model.bias.setConstant(2.0);
  model.gain.setConstant(2.0);
  AdamW opt(model, {.lr = 0.5, .weight_decay = 0.25, .decay = [](std::string_view n) { return n == "fc.weight"; }});
  opt.step(model);
  opt.step(model);
  CHECK((model.weight.array() == 2.0 * 0.875 * 0.875).all());
  CHECK((model.bias.array() == 2.0).all());
  CHECK((model.gain.array() == 2.0).all());
  // Adam's L2 decay with the same predicate: the decayed gradient moves fc.weight by lr (first step,
  // up to eps), the others get a zero gradient and stay.
  TinyModel<double> l2;
  l2.weight.setConstant(2.0);
  l2.bias.setConstant(2.0);
  Adam adam(l2, {.lr = 0.5, .weight_decay = 0.25, .decay = [](std::string_view n) { return n == "fc.weight"; }});
  adam.step(l2);
  CHECK((l2.weight.array() - 1.5).abs().maxCoeff() < 1e-7);
  CHECK((l2.bias.array() == 2.0).all());
}

TEST_CASE("Adam, AdamW: invalid options throw std::invalid_argument", "[adam]") {
  TinyModel<float> model;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  REQUIRE_THROWS_WITH(Adam(model, {.lr = -1e-3}), rbtest::contains("resblocks::Adam: invalid learning rate"));
  REQUIRE_THROWS_AS(Adam(model, {.lr = nan}), std::invalid_argument);
  REQUIRE_THROWS_WITH(Adam(model, {.beta1 = 1.0}), rbtest::contains("invalid beta1 1"));
  REQUIRE_THROWS_WITH(Adam(model, {.beta2 = -0.1}), rbtest::contains("invalid beta2"));
  REQUIRE_THROWS_WITH(Adam(model, {.eps = -1e-8}), rbtest::contains("invalid eps"));
  REQUIRE_THROWS_WITH(Adam(model, {.weight_decay = -1}), rbtest::contains("invalid weight_decay"));
  REQUIRE_THROWS_WITH(AdamW(model, {.beta1 = 1.5}), rbtest::contains("resblocks::AdamW: invalid beta1"));
  REQUIRE_THROWS_WITH(AdamW(model, {.weight_decay = -0.01}), rbtest::contains("invalid weight_decay"));
  REQUIRE_NOTHROW(Adam(model, {.lr = 0, .beta1 = 0, .beta2 = 0, .eps = 0}));
  AdamW opt(model);
  REQUIRE_THROWS_AS(opt.set_lr(-0.5), std::invalid_argument);
  REQUIRE(opt.lr() == 1e-3);
}

TEST_CASE("Adam, AdamW: a changed model is rejected before any parameter moves", "[adam]") {
  DynamicTinyModel<double> model(2, 3);
  Adam adam(model);
  AdamW adam_w(model, {.amsgrad = true});
  DynamicTinyModel<double> other(2, 4);
  other.weight.setConstant(1.0);
  other.dL_dweight.setConstant(1.0);
  REQUIRE_THROWS_WITH(adam.step(other), rbtest::contains("resblocks::Adam: the model changed"));
  REQUIRE_THROWS_WITH(adam_w.step(other), rbtest::contains("'fc.weight' has 8 elements, had 6"));
  REQUIRE((other.weight.array() == 1.0).all());
  REQUIRE(adam.steps() == 0);
  REQUIRE(adam_w.steps() == 0);
  adam.step(model);
  adam_w.step(model);
  REQUIRE(adam.steps() == 1);
  REQUIRE(adam_w.steps() == 1);
}

TEST_CASE("Adam: set_lr takes effect from the next step", "[adam]") {
  // Same gradients, the second run halves lr after the first step: the first steps agree, the
  // second step moves half as far (Adam's update is proportional to lr).
  TinyModel<double> a, b;
  a.dL_dweight.setConstant(0.5);
  b.dL_dweight.setConstant(0.5);
  Adam opt_a(a, {.lr = 0.1});
  Adam opt_b(b, {.lr = 0.1});
  opt_a.step(a);
  opt_b.step(b);
  REQUIRE(a.weight == b.weight);
  const Eigen::Matrix<double, 3, 4> after_one = a.weight;
  opt_b.set_lr(0.05);
  REQUIRE(opt_b.options().lr == 0.05);
  opt_a.step(a);
  opt_b.step(b);
  REQUIRE((b.weight - after_one).isApprox(0.5 * (a.weight - after_one), 1e-14));
  REQUIRE(opt_a.steps() == 2);
}

TEST_CASE("Adam, AdamW: check_finite refuses a non-finite gradient before anything moves", "[adam]") {
  TinyModel<double> model;
  model.weight.setConstant(1.0);
  model.dL_dweight.setConstant(std::numeric_limits<double>::quiet_NaN());
  const auto weight = model.weight;
  Adam adam(model, {.check_finite = true});
  REQUIRE_THROWS_WITH(adam.step(model),
                      rbtest::contains("resblocks::Adam: step 1:") && rbtest::contains("'fc.weight' holds NaN"));
  AdamW adam_w(model, {.check_finite = true});
  REQUIRE_THROWS_WITH(adam_w.step(model), rbtest::contains("resblocks::AdamW: step 1:"));
  REQUIRE(model.weight == weight);
  REQUIRE(adam.steps() == 0);
}
