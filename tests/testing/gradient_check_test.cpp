#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

namespace {
/// A layer with a deliberately wrong backward (drops a factor of 2): the check must catch it.
class BrokenScale {
 public:
  using Scalar = double;
  static constexpr int InFeatures = Dynamic;
  static constexpr int OutFeatures = Dynamic;
  using Input = Batch<double, Dynamic>;
  using Output = Batch<double, Dynamic>;
  static constexpr std::string_view name = "BrokenScale";
  struct Workspace {
    Output y;
  };
  explicit BrokenScale(bool broken_input, bool broken_param)
      : m_broken_input(broken_input), m_broken_param(broken_param) {}
  Index in_features() const { return -1; }
  Index out_features() const { return -1; }
  const Output& forward(const Input& x) {
    m_x = &x;
    m_y = 2.0 * m_a(0, 0) * x;
    return m_y;
  }
  const Input& backward(const Output& g) {
    m_dx = (m_broken_input ? 1.0 : 2.0) * m_a(0, 0) * g;
    m_da(0, 0) += (m_broken_param ? 1.0 : 2.0) * (g.array() * m_x->array()).sum();
    return m_dx;
  }
  const Output& infer(const Input& x, Workspace& ws) const {
    ws.y = 2.0 * m_a(0, 0) * x;
    return ws.y;
  }
  void zero_grad() { m_da.setZero(); }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& p = {}) {
    f(p.child("a").view(), m_a, m_da);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& p = {}) const {
    f(p.child("a").view(), m_a, m_da);
  }

 private:
  bool m_broken_input, m_broken_param;
  Eigen::Matrix<double, 1, 1> m_a{Eigen::Matrix<double, 1, 1>::Constant(0.7)},
      m_da{Eigen::Matrix<double, 1, 1>::Zero()};
  const Input* m_x = nullptr;
  Output m_y, m_dx;
};
static_assert(Layer<BrokenScale>);
}  // namespace

TEST_CASE("check_gradients passes a correct layer and fails wrong input or parameter gradients", "[gradient_check]") {
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 2, 91);
  BrokenScale good(false, false), bad_dx(true, false), bad_param(false, true);
  const auto r_good = testing::check_gradients(good, x);
  INFO(r_good.report());
  REQUIRE(r_good.passed());
  const auto r_dx = testing::check_gradients(bad_dx, x);
  REQUIRE_FALSE(r_dx.passed());
  REQUIRE(r_dx.tensors[0].worst_ratio > 1);
  REQUIRE(r_dx.tensors[1].worst_ratio <= 1);
  const auto r_p = testing::check_gradients(bad_param, x);
  REQUIRE_FALSE(r_p.passed());
  REQUIRE(r_p.tensors[1].name == "a");
  REQUIRE(r_p.report().find("FAIL a") != std::string::npos);
}

TEST_CASE("check_gradients restores parameters and leaves gradients of the check", "[gradient_check]") {
  Linear<double> fc(3, 2);
  const Eigen::MatrixXd w = fc.weight();
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 4, 92);
  REQUIRE(testing::check_gradients(fc, x).passed());
  REQUIRE(fc.weight() == w);
  REQUIRE_FALSE(fc.weight_grad().isZero());
}
