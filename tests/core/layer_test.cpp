#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

namespace {
template <class L, class X>
concept CanForward = requires(L& l, X&& x) {
  l.forward(std::forward<X>(x));
};
using StaticMlp = Residual<Sequential<Linear<float, 8, 16>, ReLU<float, 16>, Linear<float, 16, 8>>>;
using DynamicMlp = Residual<Sequential<Linear<double>, GELU<double>, Linear<double>>, Projection<double>>;
}  // namespace

TEST_CASE("every layer and block satisfies the Layer concept", "[concept]") {
  STATIC_REQUIRE(Layer<Linear<float, 3, 4>>);
  STATIC_REQUIRE(Layer<Linear<double>>);
  STATIC_REQUIRE(Layer<ReLU<float, 4>>);
  STATIC_REQUIRE(Layer<GELU<double>>);
  STATIC_REQUIRE(Layer<LeakyReLU<float>>);
  STATIC_REQUIRE(Layer<Tanh<float, 2>>);
  STATIC_REQUIRE(Layer<Sigmoid<double>>);
  STATIC_REQUIRE(Layer<Identity<float, 5>>);
  STATIC_REQUIRE(Layer<Projection<float, 3, 5>>);
  STATIC_REQUIRE(Layer<StaticMlp>);
  STATIC_REQUIRE(Layer<DynamicMlp>);
  STATIC_REQUIRE(Layer<Repeat<StaticMlp>>);
  STATIC_REQUIRE(Layer<Sequential<Linear<float, 2, 8>, Repeat<StaticMlp>, Linear<float, 8, 1>>>);
  STATIC_REQUIRE_FALSE(Layer<int>);
  STATIC_REQUIRE_FALSE(Layer<Eigen::MatrixXf>);
}

TEST_CASE("ChainsInto accepts equal static sizes only", "[concept]") {
  STATIC_REQUIRE(ChainsInto<Linear<float, 3, 4>, ReLU<float, 4>>);
  STATIC_REQUIRE_FALSE(ChainsInto<Linear<float, 3, 4>, ReLU<float, 5>>);
  STATIC_REQUIRE_FALSE(ChainsInto<Linear<float, 3, 4>, ReLU<double, 4>>);
  STATIC_REQUIRE_FALSE(ChainsInto<Linear<float, 3, 4>, ReLU<float>>);  // static rows never chain into Dynamic
  STATIC_REQUIRE(ChainsInto<Linear<float>, ReLU<float>>);
}

TEST_CASE("forward rejects temporaries and inputs of another type at compile time", "[concept]") {
  using L = Linear<float, 3, 4>;
  STATIC_REQUIRE(CanForward<L, const L::Input&>);
  STATIC_REQUIRE(CanForward<L, L::Input&>);
  STATIC_REQUIRE_FALSE(CanForward<L, L::Input>);                // a temporary would dangle
  STATIC_REQUIRE_FALSE(CanForward<L, const Eigen::MatrixXf&>);  // would convert into a temporary
  STATIC_REQUIRE_FALSE(CanForward<StaticMlp, StaticMlp::Input>);
  STATIC_REQUIRE_FALSE(CanForward<Repeat<StaticMlp>, StaticMlp::Input>);
  STATIC_REQUIRE_FALSE(CanForward<ReLU<float, 3>, Batch<float, 3>>);
}

TEST_CASE("parameter_count counts every scalar parameter", "[concept]") {
  StaticMlp block;
  REQUIRE(parameter_count(block) == 8 * 16 + 16 + 16 * 8 + 8);
  DynamicMlp dyn(Sequential<Linear<double>, GELU<double>, Linear<double>>(Linear<double>(5, 7), GELU<double>(),
                                                                          Linear<double>(7, 3, false)),
                 Projection<double>(5, 3));
  REQUIRE(parameter_count(dyn) == 5 * 7 + 7 + 7 * 3 + 5 * 3);
}

TEST_CASE("manual_seed makes initialisation reproducible, different seeds differ", "[init]") {
  manual_seed(7);
  Linear<float, 4, 3> a;
  manual_seed(7);
  Linear<float, 4, 3> b;
  Linear<float, 4, 3> c;  // continues the stream
  REQUIRE(a.weight() == b.weight());
  REQUIRE(a.bias() == b.bias());
  REQUIRE(a.weight() != c.weight());
  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)).
  REQUIRE(a.weight().cwiseAbs().maxCoeff() <= 0.5f);
  REQUIRE(a.weight().cwiseAbs().maxCoeff() > 0.1f);
}
