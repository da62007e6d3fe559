#include "support/fixture.hpp"
#include "support/helpers.hpp"
#include "train/optim_test_model.hpp"

#include <resblocks/train/cosine_annealing_lr.hpp>
#include <resblocks/train/linear_warmup.hpp>
#include <resblocks/train/sgd.hpp>
#include <resblocks/train/step_lr.hpp>

#include <cmath>
#include <iomanip>
#include <limits>
#include <stdexcept>
#include <string>

using namespace resblocks;
using optim_test::scalar;

namespace {

const resblocks_tests::Fixture& schedules() {
  static const auto f = resblocks_tests::load_fixture("optim_lr_schedules.txt");
  return f;
}

Index integer(const std::string& name) { return static_cast<Index>(scalar(schedules(), name)); }

/// schedule(t) against torch's lr for t in [0, last] (all recorded steps when last < 0).
template <class Schedule>
void check_lrs(const Schedule& schedule, const std::string& name, Index last = -1) {
  const Eigen::MatrixXd& torch_lr = schedules().matrix(name + ".lr");
  REQUIRE(torch_lr.rows() == 16);
  if (last < 0) last = torch_lr.rows() - 1;
  for (Index t = 0; t <= last; ++t) {
    INFO(name << " at t = " << t << std::setprecision(17) << ": resblocks " << schedule(t) << ", torch "
              << torch_lr(t, 0));
    CHECK(std::abs(schedule(t) - torch_lr(t, 0)) <= 1e-15);
  }
}

StepLr step_lr(const std::string& p) {
  return StepLr(scalar(schedules(), p + ".base_lr"), integer(p + ".step_size"), scalar(schedules(), p + ".gamma"));
}
CosineAnnealingLr cosine(const std::string& p) {
  return CosineAnnealingLr(scalar(schedules(), p + ".base_lr"), integer(p + ".t_max"),
                           scalar(schedules(), p + ".eta_min"));
}

}  // namespace

TEST_CASE("StepLr: matches torch's StepLR", "[lr_schedule][pytorch]") {
  const StepLr s = step_lr("step_lr");
  REQUIRE(s.step_size() == 4);
  REQUIRE(s.gamma() == 0.5);
  check_lrs(s, "step_lr");
  CHECK(StepLr(1.0, 3)(3) == 0.1);  // default gamma 0.1
  CHECK(StepLr(1.0, 3)(2) == 1.0);
}

TEST_CASE("CosineAnnealingLr: matches torch's CosineAnnealingLR up to t_max, then holds eta_min",
          "[lr_schedule][pytorch]") {
  const CosineAnnealingLr s = cosine("cosine");
  REQUIRE(s.t_max() == 6);
  check_lrs(s, "cosine", s.t_max());
  // torch's cosine goes on past t_max (back up to base_lr at 2 t_max); this schedule stays at eta_min.
  const Eigen::MatrixXd& torch_lr = schedules().matrix("cosine.lr");
  for (Index t = s.t_max() + 1; t < torch_lr.rows(); ++t) {
    INFO("t = " << t);
    CHECK(s(t) == s.eta_min());
    CHECK(torch_lr(t, 0) > s.eta_min() + 1e-3);
  }
  CHECK(std::abs(torch_lr(2 * s.t_max(), 0) - s.base_lr()) < 1e-15);
  CHECK(s(1000000) == s.eta_min());
  CHECK(CosineAnnealingLr(0.5, 4)(4) == 0.0);  // default eta_min 0
}

TEST_CASE("LinearWarmup: equals torch's SequentialLR of LinearLR and the schedule after it", "[lr_schedule][pytorch]") {
  const LinearWarmup warm_step(step_lr("warmup_step"), integer("warmup_step.warmup_steps"),
                               scalar(schedules(), "warmup_step.start_factor"));
  REQUIRE(warm_step.warmup_steps() == 3);
  check_lrs(warm_step, "warmup_step");
  const LinearWarmup warm_cos(cosine("warmup_cosine"), integer("warmup_cosine.warmup_steps"),
                              scalar(schedules(), "warmup_cosine.start_factor"));
  REQUIRE(warm_cos.warmup_steps() == 4);
  check_lrs(warm_cos, "warmup_cosine");
  // The ramp never reaches after(0) before the milestone; after(0) itself comes at t = warmup_steps.
  CHECK(warm_cos(3) < warm_cos.after()(0));
  CHECK(warm_cos(4) == warm_cos.after()(0));
  CHECK(warm_cos(0) == warm_cos.after()(0) * 0.1);
}

TEST_CASE("LinearWarmup: any callable schedule, default start factor 0.1", "[lr_schedule]") {
  const LinearWarmup w([](Index t) { return 1.0 / static_cast<double>(t + 1); }, 5);
  CHECK(w.start_factor() == 0.1);
  CHECK(w(0) == 0.1);
  CHECK(std::abs(w(1) - 0.28) < 1e-15);
  CHECK(w(5) == 1.0);
  CHECK(w(6) == 0.5);
}

TEST_CASE("Schedules: invalid arguments throw std::invalid_argument", "[lr_schedule]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(StepLr(0.1, 0), rbtest::contains("resblocks::StepLr: invalid step_size 0"));
  CHECK_THROWS_AS(StepLr(-0.1, 2), std::invalid_argument);
  CHECK_THROWS_AS(StepLr(nan, 2), std::invalid_argument);
  CHECK_THROWS_AS(StepLr(0.1, 2, -0.5), std::invalid_argument);
  CHECK_THROWS_WITH(StepLr(0.1, 2)(-1), rbtest::contains("invalid step -1"));
  CHECK_THROWS_WITH(CosineAnnealingLr(0.1, 0), rbtest::contains("resblocks::CosineAnnealingLr: invalid t_max 0"));
  CHECK_THROWS_AS(CosineAnnealingLr(0.1, 5, -1e-3), std::invalid_argument);
  CHECK_THROWS_AS(CosineAnnealingLr(-1, 5), std::invalid_argument);
  CHECK_THROWS_AS(CosineAnnealingLr(0.1, 5)(-2), std::invalid_argument);
  CHECK_THROWS_WITH(LinearWarmup(StepLr(0.1, 2), 0), rbtest::contains("invalid warmup_steps 0"));
  CHECK_THROWS_WITH(LinearWarmup(StepLr(0.1, 2), 3, 0.0), rbtest::contains("invalid start_factor 0"));
  CHECK_THROWS_AS(LinearWarmup(StepLr(0.1, 2), 3, 1.5), std::invalid_argument);
  CHECK_THROWS_AS(LinearWarmup(StepLr(0.1, 2), 3, nan), std::invalid_argument);
  CHECK_THROWS_AS(LinearWarmup(StepLr(0.1, 2), 3)(-1), std::invalid_argument);
  CHECK_NOTHROW(LinearWarmup(StepLr(0.1, 2), 3, 1.0));
}

TEST_CASE("Schedules: drive an optimizer through set_lr", "[lr_schedule][sgd]") {
  // Plain SGD with a unit gradient moves each parameter by exactly the lr of each step.
  optim_test::TinyModel<double> model;
  model.dL_dweight.setConstant(1.0);
  Sgd opt(model, {.lr = 1.0});
  const LinearWarmup schedule(StepLr(0.5, 2), 2, 0.5);
  double moved = 0;
  for (Index t = 0; t < 6; ++t) {
    opt.set_lr(schedule(t));
    opt.step(model);
    moved += schedule(t);
  }
  // 0.25, 0.375, then StepLr: 0.5, 0.5, 0.05, 0.05
  CHECK(std::abs(moved - 1.725) < 1e-15);
  CHECK(std::abs(model.weight(0, 0) + 1.725) < 1e-15);
}
