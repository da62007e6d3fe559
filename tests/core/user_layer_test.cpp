// A layer written outside the library with only what the Layer concept asks composes in every
// container (Sequential, Residual, Repeat, Highway) and trains there: the contract is the whole story.
#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <string>
#include <vector>

using namespace resblocks;

namespace {

/// y = a ⊙ x + x³/10 per feature (nonlinear, so the gradient check sees second-order mistakes);
/// only the members of resblocks::Layer, public names only.
template <class S, int N>
class Cubic {
 public:
  using Scalar = S;
  static constexpr int InFeatures = N;
  static constexpr int OutFeatures = N;
  using Input = Batch<S, N>;
  using Output = Batch<S, N>;
  static constexpr std::string_view name = "Cubic";
  struct Workspace {
    Output y;
  };

  Cubic() { m_a.setConstant(N, S(0.5)), m_dL_da.setZero(N); }

  [[nodiscard]] Index in_features() const { return N; }
  [[nodiscard]] Index out_features() const { return N; }

  const Output& forward(const Input& x) {
    m_x = &x;
    m_y = compute(x);
    return m_y;
  }
  const Output& forward(Input&&) = delete;
  const Input& backward(const Output& dL_dy) {
    const Input& x = m_x.get(name);
    m_dL_da += (dL_dy.array() * x.array()).rowwise().sum().matrix();
    m_dL_dx = (dL_dy.array() * ((x.array().square() * S(0.3)).colwise() + m_a.array())).matrix();
    return m_dL_dx;
  }
  const Output& infer(const Input& x, Workspace& ws) const {
    ws.y = compute(x);
    return ws.y;
  }
  void zero_grad() { m_dL_da.setZero(); }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    f(prefix.child("a").view(), m_a, m_dL_da);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    f(prefix.child("a").view(), m_a, m_dL_da);
  }

 private:
  Output compute(const Input& x) const {
    return ((x.array().colwise() * m_a.array()) + x.array().cube() * S(0.1)).matrix();
  }
  Eigen::Matrix<S, N, 1> m_a, m_dL_da;
  CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
};

constexpr int D = 4;
using User = Cubic<double, D>;

template <class Net>
std::vector<std::string> names(const Net& net) {
  std::vector<std::string> out;
  net.for_each_parameter([&](std::string_view n, const auto&, const auto&) { out.emplace_back(n); });
  return out;
}

}  // namespace

TEST_CASE("a user layer meeting Layer composes in Sequential, Residual, Repeat and Highway", "[concept][user]") {
  STATIC_REQUIRE(Layer<User>);
  STATIC_REQUIRE_FALSE(FusesSkipAdd<User>);  // none of the optional protocols ...
  STATIC_REQUIRE_FALSE(HasEpilogueHooks<User>);
  STATIC_REQUIRE_FALSE(ElementWise<User>);
  STATIC_REQUIRE_FALSE(ImageLayer<User>);
  STATIC_REQUIRE_FALSE(HasBuffers<User>);
  STATIC_REQUIRE_FALSE(HasTrainingMode<User>);
  STATIC_REQUIRE_FALSE(SequenceLayer<User>);
  STATIC_REQUIRE(FusesSkipAdd<Linear<double, D, D>>);  // ... which the library's layers offer
  STATIC_REQUIRE(HasEpilogueHooks<Conv2d<float>>);
  STATIC_REQUIRE(ElementWise<ReLU<float>>);
  STATIC_REQUIRE(ImageLayer<Conv2d<float>>);
  STATIC_REQUIRE(HasBuffers<BatchNorm2d<float>>);
  STATIC_REQUIRE(HasTrainingMode<BatchNorm2d<float>>);

  using Net = Sequential<Linear<double, D, D>, Residual<Sequential<User, Linear<double, D, D>>>, Repeat<Residual<User>>,
                         Highway<Sequential<User, Linear<double, D, D>>>, User>;
  STATIC_REQUIRE(Layer<Net>);
  manual_seed(3);
  Net net(Linear<double, D, D>(), Residual<Sequential<User, Linear<double, D, D>>>(), Repeat<Residual<User>>(2),
          Highway<Sequential<User, Linear<double, D, D>>>(), User());
  const Batch<double, D> x = Batch<double, D>::Random(D, 6);
  rbtest::require_gradients(net, x);

  Net::Workspace ws;
  const Batch<double, D> y = net.forward(x);
  REQUIRE(net.infer(x, ws) == y);
  const std::vector<std::string> expected{"0.weight",   "0.bias",     "1.body.0.a", "1.body.1.weight", "1.body.1.bias",
                                          "2.0.body.a", "2.1.body.a", "3.h.0.a",    "3.h.1.weight",    "3.h.1.bias",
                                          "3.t.weight", "3.t.bias",   "4.a"};
  REQUIRE(names(net) == expected);
  // The containers' protocols pass over it: no image size, training mode or buffers of its own.
  set_training(net, false);
  int buffers = 0;
  net.for_each_buffer([&](std::string_view, auto&) { ++buffers; });
  REQUIRE(buffers == 0);
}

TEST_CASE("a user layer's backward without a forward names the layer", "[concept][user]") {
  User layer;
  const User::Output g = User::Output::Ones(D, 2);
  REQUIRE_THROWS_WITH(layer.backward(g), rbtest::contains("Cubic"));
}
