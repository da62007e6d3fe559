// PyTorch parity: resblocks networks against fixtures computed by PyTorch (float64 autograd).
//
// Each fixture (tests/reference/fixtures/*.txt, written by tests/reference/make_fixtures.py) holds an
// input x, the parameters under their resblocks names (`param.<name>`), an upstream gradient dL_dy,
// and PyTorch's y, dL/dx and parameter gradients (`grad.<name>`) from `y.backward(dL_dy)`.
// Every network is built with double (tolerance 1e-12) and float (1e-5), with static and Dynamic
// sizes; a comparison passes when max |resblocks - PyTorch| <= tol * max(1, max |PyTorch|).

#include "support/catch.hpp"
#include "support/fixture.hpp"
#include "support/parity.hpp"

#include <resblocks/resblocks.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <exception>
#include <iomanip>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

namespace {

using resblocks::Index;
using resblocks_tests::check_close;
using resblocks_tests::check_parity;
using resblocks_tests::Fixture;
using resblocks_tests::fixture_batch;
using resblocks_tests::load_fixture;
using resblocks_tests::load_parameters;
using resblocks_tests::tolerance;

// --- a. residual MLP: y = x + Linear(8,16) -> ReLU -> Linear(16,8) ---------------------------------

template <class S>
using MlpStatic = resblocks::Residual<
    resblocks::Sequential<resblocks::Linear<S, 8, 16>, resblocks::ReLU<S, 16>, resblocks::Linear<S, 16, 8>>>;

template <class S>
using MlpBody = resblocks::Sequential<resblocks::Linear<S>, resblocks::ReLU<S>, resblocks::Linear<S>>;

template <class S>
resblocks::Residual<MlpBody<S>> make_mlp_dynamic() {
  return resblocks::Residual<MlpBody<S>>(
      MlpBody<S>(resblocks::Linear<S>(8, 16), resblocks::ReLU<S>(), resblocks::Linear<S>(16, 8)));
}

// --- b. projection skip: y = P x + Linear(6,10) -> GELU -> Linear(10,4) ----------------------------

template <class S>
using ProjectionStatic = resblocks::Residual<
    resblocks::Sequential<resblocks::Linear<S, 6, 10>, resblocks::GELU<S, 10>, resblocks::Linear<S, 10, 4>>,
    resblocks::Projection<S, 6, 4>>;

template <class S>
using ProjectionBody = resblocks::Sequential<resblocks::Linear<S>, resblocks::GELU<S>, resblocks::Linear<S>>;

template <class S>
resblocks::Residual<ProjectionBody<S>, resblocks::Projection<S>> make_projection_dynamic() {
  return resblocks::Residual<ProjectionBody<S>, resblocks::Projection<S>>(
      ProjectionBody<S>(resblocks::Linear<S>(6, 10), resblocks::GELU<S>(), resblocks::Linear<S>(10, 4)),
      resblocks::Projection<S>(6, 4));
}

// --- c. Repeat of 3 blocks x + Linear(5,7) -> Tanh -> Linear(7,5) ----------------------------------

template <class S>
using StackBlockStatic = resblocks::Residual<
    resblocks::Sequential<resblocks::Linear<S, 5, 7>, resblocks::Tanh<S, 7>, resblocks::Linear<S, 7, 5>>>;

template <class S>
using StackBody = resblocks::Sequential<resblocks::Linear<S>, resblocks::Tanh<S>, resblocks::Linear<S>>;

template <class S>
resblocks::Repeat<StackBlockStatic<S>> make_stack_static() {
  return resblocks::Repeat<StackBlockStatic<S>>(3, [](Index) { return StackBlockStatic<S>(); });
}

template <class S>
resblocks::Repeat<resblocks::Residual<StackBody<S>>> make_stack_dynamic() {
  return resblocks::Repeat<resblocks::Residual<StackBody<S>>>(3, [](Index) {
    return resblocks::Residual<StackBody<S>>(
        StackBody<S>(resblocks::Linear<S>(5, 7), resblocks::Tanh<S>(), resblocks::Linear<S>(7, 5)));
  });
}

// --- d. activations on 6 features x 7 samples ------------------------------------------------------

template <class S, int N>
void check_activations() {
  using resblocks::GELUOp;
  SECTION("ReLU") {
    resblocks::ReLU<S, N> a;
    check_parity(a, "activation_relu.txt");
  }
  SECTION("LeakyReLU(0.2)") {
    resblocks::LeakyReLU<S, N> a(resblocks::LeakyReLUOp{0.2});
    check_parity(a, "activation_leaky_relu.txt");
  }
  SECTION("GELU (erf)") {
    resblocks::GELU<S, N> a;
    check_parity(a, "activation_gelu.txt");
  }
  SECTION("GELU (tanh approximation)") {
    resblocks::GELU<S, N> a(GELUOp{GELUOp::Approximate::tanh});
    check_parity(a, "activation_gelu_tanh.txt");
  }
  SECTION("Tanh") {
    resblocks::Tanh<S, N> a;
    check_parity(a, "activation_tanh.txt");
  }
  SECTION("Sigmoid") {
    resblocks::Sigmoid<S, N> a;
    check_parity(a, "activation_sigmoid.txt");
  }
}

/// Checks that `f` throws a std::exception whose message contains `part`.
template <class F>
void check_error(F&& f, std::string_view part) {
  std::string message = "<no exception>";
  try {
    f();
  } catch (const std::exception& e) {
    message = e.what();
  }
  INFO("exception message: " << message);
  CHECK(message.find(part) != std::string::npos);
}

}  // namespace

TEST_CASE("PyTorch parity: residual MLP (double, static sizes)") {
  MlpStatic<double> net;
  check_parity(net, "residual_mlp.txt");
}

TEST_CASE("PyTorch parity: residual MLP (double, dynamic sizes)") {
  auto net = make_mlp_dynamic<double>();
  check_parity(net, "residual_mlp.txt");
}

TEST_CASE("PyTorch parity: residual MLP (float, static sizes)") {
  MlpStatic<float> net;
  check_parity(net, "residual_mlp.txt");
}

TEST_CASE("PyTorch parity: residual MLP (float, dynamic sizes)") {
  auto net = make_mlp_dynamic<float>();
  check_parity(net, "residual_mlp.txt");
}

TEST_CASE("PyTorch parity: residual block with projection skip (double, dynamic sizes)") {
  auto net = make_projection_dynamic<double>();
  check_parity(net, "residual_projection.txt");
}

TEST_CASE("PyTorch parity: residual block with projection skip (float, static sizes)") {
  ProjectionStatic<float> net;
  check_parity(net, "residual_projection.txt");
}

TEST_CASE("PyTorch parity: Repeat of 3 residual blocks (double, static sizes)") {
  auto net = make_stack_static<double>();
  check_parity(net, "repeat_stack.txt");
}

TEST_CASE("PyTorch parity: Repeat of 3 residual blocks (float, dynamic sizes)") {
  auto net = make_stack_dynamic<float>();
  check_parity(net, "repeat_stack.txt");
}

TEST_CASE("PyTorch parity: activations (double, static sizes)") { check_activations<double, 6>(); }

TEST_CASE("PyTorch parity: activations (double, dynamic sizes)") { check_activations<double, resblocks::Dynamic>(); }

TEST_CASE("PyTorch parity: activations (float, static sizes)") { check_activations<float, 6>(); }

TEST_CASE("PyTorch parity: activations (float, dynamic sizes)") { check_activations<float, resblocks::Dynamic>(); }

TEST_CASE("PyTorch parity: the fixture reader rejects malformed fixtures") {
  auto parse = [](const std::string& text) {
    std::istringstream in(text);
    return resblocks_tests::parse_fixture(in, "inline");
  };

  const Fixture ok = parse("# comment\n\nw 2 3\n1 2\n3 4\n5 -6.5e-1\nb 2 1\n0.25 -0\n");
  REQUIRE(ok.names() == std::set<std::string>{"b", "w"});
  REQUIRE(ok.matrix("w").rows() == 2);
  REQUIRE(ok.matrix("w").cols() == 3);
  CHECK(ok.matrix("w")(1, 0) == 2.0);  // column-major
  CHECK(ok.matrix("w")(0, 1) == 3.0);
  CHECK(ok.matrix("w")(1, 2) == -0.65);
  CHECK(ok.matrix("b")(0, 0) == 0.25);

  check_error([&] { (void)ok.matrix("missing"); }, "no tensor named 'missing'");
  check_error([&] { parse("w 2 2\n1 2\n"); }, "ends after 1 of its 2 columns");
  check_error([&] { parse("w 2 2\n1 2\n3\n"); }, "line 3: column 1 of tensor 'w' has 1 values, expected 2");
  check_error([&] { parse("w 1 1\nx1\n"); }, "'x1' is not a number");
  check_error([&] { parse("w two 1\n1\n"); }, "expected a tensor header");
  check_error([&] { parse("w 1 1\n1\nw 1 1\n2\n"); }, "appears twice");
  check_error([] { (void)load_fixture("no_such_fixture.txt"); }, "cannot open");
}
