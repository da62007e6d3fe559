#pragma once
// The "model" of the optimizer tests: three parameters with for_each_parameter and nothing else
// (fc.weight 3x4, fc.bias 3, norm.weight 4, as in tests/reference/make_optimizer_fixtures.py), and
// helpers that load values and gradients from the optim_*.txt fixtures and replay a recorded run.

#include "support/catch.hpp"
#include "support/fixture.hpp"
#include "support/parity.hpp"

#include <resblocks/core/types.hpp>

#include <Eigen/Core>

#include <functional>
#include <set>
#include <string>
#include <string_view>

namespace optim_test {

using resblocks::Index;
using resblocks_tests::Fixture;

/// Static sizes by default; TinyModel<S, Eigen::Dynamic, Eigen::Dynamic> takes them at run time.
template <class S, int Rows = 3, int Cols = 4>
struct TinyModel {
  using Scalar = S;
  Eigen::Matrix<S, Rows, Cols> weight, dL_dweight;
  Eigen::Matrix<S, Rows, 1> bias, dL_dbias;
  Eigen::Matrix<S, Cols, 1> gain, dL_dgain;

  explicit TinyModel(Index rows = 3, Index cols = 4) {
    weight.setZero(rows, cols);
    dL_dweight.setZero(rows, cols);
    bias.setZero(rows);
    dL_dbias.setZero(rows);
    gain.setZero(cols);
    dL_dgain.setZero(cols);
  }

  template <class F>
  void for_each_parameter(F&& f) {
    f(std::string_view("fc.weight"), weight, dL_dweight);
    f(std::string_view("fc.bias"), bias, dL_dbias);
    f(std::string_view("norm.weight"), gain, dL_dgain);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    f(std::string_view("fc.weight"), weight, dL_dweight);
    f(std::string_view("fc.bias"), bias, dL_dbias);
    f(std::string_view("norm.weight"), gain, dL_dgain);
  }
};

template <class S>
using DynamicTinyModel = TinyModel<S, Eigen::Dynamic, Eigen::Dynamic>;

/// Sets every parameter value (or gradient, `grads`) to the fixture's `<prefix><name>`.
template <class Model>
void load(Model& model, const Fixture& f, const std::string& prefix, bool grads = false) {
  using S = typename Model::Scalar;
  model.for_each_parameter([&](std::string_view name, auto& value, auto& grad) {
    const Eigen::MatrixXd& m = f.matrix(prefix + std::string(name));
    auto& target = grads ? grad : value;
    REQUIRE(target.rows() == m.rows());
    REQUIRE(target.cols() == m.cols());
    target = m.template cast<S>();
  });
}

/// Every parameter value against the fixture's `<prefix><name>`, tolerance `tol` (parity.hpp's rule).
template <class Model>
void check(const Model& model, const Fixture& f, const std::string& prefix, double tol) {
  model.for_each_parameter([&](std::string_view name, const auto& value, const auto&) {
    resblocks_tests::check_close(f, prefix + std::string(name), value, tol, prefix);
  });
}

inline double scalar(const Fixture& f, const std::string& name) { return f.matrix(name)(0, 0); }
inline double option(const Fixture& f, const std::string& name) { return scalar(f, "option." + name); }

/// The fixture's `decay.<name>` flags as a predicate; empty (all decay) when every flag is set.
inline std::function<bool(std::string_view)> decay_predicate(const Fixture& f) {
  std::set<std::string, std::less<>> decayed;
  const auto names = f.names_with_prefix("decay.");
  for (const auto& n : names)
    if (scalar(f, "decay." + n) != 0) decayed.insert(n);
  if (decayed.size() == names.size()) return {};
  return [decayed](std::string_view name) { return decayed.count(name) != 0; };
}

/// Replays the fixture's run: initial values, then per step set_lr(lr[k]), the gradients, step(),
/// and a comparison of every parameter with PyTorch's.
template <class Optimizer, class Model>
void replay(const Fixture& f, Model& model, Optimizer& opt) {
  using S = typename Model::Scalar;
  load(model, f, "param.");
  const Eigen::MatrixXd& lr = f.matrix("lr");
  REQUIRE(lr.rows() == 5);
  REQUIRE(opt.steps() == 0);
  for (Index k = 1; k <= lr.rows(); ++k) {
    const std::string step = "step" + std::to_string(k) + ".";
    opt.set_lr(lr(k - 1, 0));
    REQUIRE(opt.lr() == lr(k - 1, 0));
    load(model, f, step + "grad.", true);
    opt.step(model);
    REQUIRE(opt.steps() == k);
    check(model, f, step + "param.", resblocks_tests::tolerance<S>);
    model.for_each_parameter([&](std::string_view name, const auto&, const auto& grad) {
      INFO("gradient of " << name << " after " << step);  // the step leaves the gradients alone
      REQUIRE(grad.template cast<double>() == f.matrix(step + "grad." + std::string(name)));
    });
  }
}

}  // namespace optim_test
