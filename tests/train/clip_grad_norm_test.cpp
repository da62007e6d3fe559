#include "support/fixture.hpp"
#include "support/helpers.hpp"
#include "train/optim_test_model.hpp"

#include <resblocks/layers/linear.hpp>
#include <resblocks/train/clip_grad_norm.hpp>

#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <stdexcept>
#include <string>

using namespace resblocks;
using optim_test::DynamicTinyModel;
using optim_test::TinyModel;

namespace {

const resblocks_tests::Fixture& clips() {
  static const auto f = resblocks_tests::load_fixture("optim_clip_grad_norm.txt");
  return f;
}

/// |a - b| <= tol * max(1, |b|), with NaN matching only NaN and infinities only themselves.
bool same(double a, double b, double tol) {
  if (std::isnan(b)) return std::isnan(a);
  if (std::isinf(b)) return a == b;
  return std::abs(a - b) <= tol * std::max(1.0, std::abs(b));
}

/// Replays one fixture case: the gradients before, clip_grad_norm, the total and the gradients after.
template <class Model>
void check_case(const std::string& name) {
  using S = typename Model::Scalar;
  const auto& f = clips();
  const double tol = resblocks_tests::tolerance<S>;
  Model model;
  optim_test::load(model, f, name + ".grad.", true);
  const double max_norm = optim_test::scalar(f, name + ".max_norm");
  const double norm_type = optim_test::scalar(f, name + ".norm_type");
  const double torch_total = optim_test::scalar(f, name + ".total");
  const double total = clip_grad_norm(model, max_norm, norm_type);
  INFO(name << std::setprecision(17) << ": total norm resblocks " << total << ", torch " << torch_total);
  CHECK(same(total, torch_total, tol));
  model.for_each_parameter([&](std::string_view param, const auto&, const auto& grad) {
    const Eigen::MatrixXd& expected = f.matrix(name + ".clipped." + std::string(param));
    REQUIRE(grad.rows() == expected.rows());
    REQUIRE(grad.cols() == expected.cols());
    for (Index j = 0; j < grad.cols(); ++j)
      for (Index i = 0; i < grad.rows(); ++i) {
        INFO(param << "(" << i << ", " << j << "): resblocks " << grad(i, j) << ", torch " << expected(i, j));
        CHECK(same(static_cast<double>(grad(i, j)), expected(i, j), tol));
      }
  });
}

template <class Model>
void check_all_cases() {
  for (const char* name : {"norm2", "norm_inf", "norm3", "noclip", "nonfinite_inf", "nonfinite_nan"}) {
    INFO(name);
    check_case<Model>(name);
  }
}

}  // namespace

TEST_CASE("clip_grad_norm: matches torch.nn.utils.clip_grad_norm_ (double)", "[clip_grad_norm][pytorch]") {
  check_all_cases<TinyModel<double>>();
  check_all_cases<DynamicTinyModel<double>>();
}

TEST_CASE("clip_grad_norm: matches torch.nn.utils.clip_grad_norm_ (float)", "[clip_grad_norm][pytorch]") {
  check_all_cases<TinyModel<float>>();
  check_all_cases<DynamicTinyModel<float>>();
}

TEST_CASE("clip_grad_norm: the fixture covers clipping, no clipping and non-finite norms", "[clip_grad_norm]") {
  // Guards the fixture itself: each case must exercise what its name says.
  const auto& f = clips();
  auto total = [&](const std::string& c) { return optim_test::scalar(f, c + ".total"); };
  auto max_norm = [&](const std::string& c) { return optim_test::scalar(f, c + ".max_norm"); };
  for (const char* c : {"norm2", "norm_inf", "norm3"}) CHECK(total(c) > 1.5 * max_norm(c));
  CHECK(total("noclip") < max_norm("noclip"));
  CHECK(std::isinf(total("nonfinite_inf")));
  CHECK(std::isnan(total("nonfinite_nan")));
  CHECK(std::isinf(optim_test::scalar(f, "norm_inf.norm_type")));
}

TEST_CASE("clip_grad_norm: by hand, norm 2 and inf", "[clip_grad_norm]") {
  TinyModel<double> model;
  model.dL_dweight(1, 2) = 3.0;
  model.dL_dgain(3) = -4.0;  // norm 2: 5, norm inf: 4
  CHECK(clip_grad_norm(model, 10.0) == 5.0);
  CHECK(model.dL_dweight(1, 2) == 3.0);  // no clipping: untouched
  CHECK(clip_grad_norm(model, 1.0) == 5.0);
  CHECK(std::abs(model.dL_dweight(1, 2) - 0.6) < 1e-6);
  CHECK(std::abs(model.dL_dgain(3) + 0.8) < 1e-6);
  CHECK(model.dL_dbias.isZero());
  TinyModel<double> m2;
  m2.dL_dbias(0) = -4.0;
  m2.dL_dweight(0, 0) = 1.0;
  CHECK(clip_grad_norm(m2, 2.0, std::numeric_limits<double>::infinity()) == 4.0);
  CHECK(std::abs(m2.dL_dbias(0) + 2.0) < 1e-6);
  CHECK(std::abs(m2.dL_dweight(0, 0) - 0.5) < 1e-6);
  TinyModel<double> zero;
  CHECK(clip_grad_norm(zero, 1.0) == 0.0);
  CHECK(clip_grad_norm(zero, 0.0) == 0.0);  // coefficient 0: gradients stay 0
}

TEST_CASE("clip_grad_norm: error_if_nonfinite throws and leaves the gradients alone", "[clip_grad_norm]") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const double bad : {inf, -inf, nan}) {
    for (const double norm_type : {2.0, 1.0, inf}) {
      INFO("gradient entry " << bad << ", norm " << norm_type);
      TinyModel<float> model;
      model.dL_dweight.setConstant(0.5f);
      model.dL_dbias(2) = static_cast<float>(bad);
      CHECK_THROWS_AS(clip_grad_norm(model, 1.0, norm_type, true), std::runtime_error);
      CHECK_THROWS_WITH(clip_grad_norm(model, 1.0, norm_type, true),
                        rbtest::contains("resblocks::clip_grad_norm: the total norm of order"));
      CHECK((model.dL_dweight.array() == 0.5f).all());
      // Without the error, like torch: an infinite norm scales by 0, a NaN one by NaN.
      const double total = clip_grad_norm(model, 1.0, norm_type);
      if (std::isnan(bad)) {
        CHECK(std::isnan(total));
        CHECK(model.dL_dweight.array().isNaN().all());
      } else {
        CHECK(total == inf);
        CHECK((model.dL_dweight.array() == 0.0f).all());
        CHECK(std::isnan(model.dL_dbias(2)));
      }
    }
  }
  TinyModel<double> finite;
  finite.dL_dweight.setConstant(1.0);
  CHECK_NOTHROW(clip_grad_norm(finite, 1.0, 2.0, true));
}

TEST_CASE("clip_grad_norm: invalid arguments throw std::invalid_argument", "[clip_grad_norm]") {
  TinyModel<double> model;
  model.dL_dweight.setConstant(1.0);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(clip_grad_norm(model, -1.0), rbtest::contains("invalid max_norm -1"));
  CHECK_THROWS_AS(clip_grad_norm(model, nan), std::invalid_argument);
  CHECK_THROWS_WITH(clip_grad_norm(model, 1.0, 0.0), rbtest::contains("invalid norm_type 0"));
  CHECK_THROWS_AS(clip_grad_norm(model, 1.0, -2.0), std::invalid_argument);
  CHECK_THROWS_AS(clip_grad_norm(model, 1.0, nan), std::invalid_argument);
  CHECK((model.dL_dweight.array() == 1.0).all());
}

TEST_CASE("clip_grad_norm: on a Linear layer's gradients", "[clip_grad_norm]") {
  Linear<float> fc(3, 2);
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(3, 4, 41);
  const Eigen::MatrixXf dy = rbtest::random_batch<Eigen::MatrixXf>(2, 4, 42);
  fc.zero_grad();
  fc.forward(x);
  fc.backward(dy);
  const double norm =
      std::sqrt(fc.weight_grad().cast<double>().squaredNorm() + fc.bias_grad().cast<double>().squaredNorm());
  const Eigen::MatrixXf w = fc.weight_grad();
  CHECK(std::abs(clip_grad_norm(fc, 0.25 * norm) - norm) < 1e-12 * norm);
  CHECK(fc.weight_grad().isApprox(0.25f * w, 1e-5f));
}

TEST_CASE("clip_grad_norm: a large gradient's sum and scaling on the threads have the bits of one thread",
          "[clip_grad_norm][threads]") {
  // A 640 × 480 weight gradient (307200 values: 10 chunks of 2^15 in 8 lanes, two of which take two)
  // beside small ones.
  const auto clipped = [](int threads, double norm_type, double* total) {
    const int saved = num_threads();
    set_num_threads(threads);
    DynamicTinyModel<float> model(640, 480);
    Generator g(43);
    fill_uniform(model.dL_dweight, 1.0, g);
    fill_uniform(model.dL_dbias, 1.0, g);
    fill_uniform(model.dL_dgain, 1.0, g);
    *total = clip_grad_norm(model, 1.0, norm_type);
    set_num_threads(saved);
    return model;
  };
  for (double norm_type : {2.0, 3.0}) {
    CAPTURE(norm_type);
    double one_total = 0;
    const DynamicTinyModel<float> one = clipped(1, norm_type, &one_total);
    // The total against a plain sum in long double.
    DynamicTinyModel<float> raw(640, 480);
    Generator g(43);
    fill_uniform(raw.dL_dweight, 1.0, g);
    fill_uniform(raw.dL_dbias, 1.0, g);
    fill_uniform(raw.dL_dgain, 1.0, g);
    long double sum = 0;
    raw.for_each_parameter([&](std::string_view, const auto&, const auto& grad) {
      for (Index i = 0; i < grad.size(); ++i)
        sum += std::pow(std::abs((long double)grad.data()[i]), (long double)norm_type);
    });
    const double expected = double(std::pow(sum, 1.0L / (long double)norm_type));
    REQUIRE(std::abs(one_total - expected) < 1e-12 * expected);
    // Every value scaled by the same coefficient.
    const float coef = static_cast<float>(1.0 / (one_total + 1e-6));
    REQUIRE((one.dL_dweight.array() == raw.dL_dweight.array() * coef).all());
    for (int threads : {2, 3}) {
      CAPTURE(threads);
      double total = 0;
      const DynamicTinyModel<float> other = clipped(threads, norm_type, &total);
      REQUIRE(std::memcmp(&total, &one_total, sizeof total) == 0);
      REQUIRE((other.dL_dweight.array() == one.dL_dweight.array()).all());
      REQUIRE((other.dL_dbias.array() == one.dL_dbias.array()).all());
    }
  }
}
