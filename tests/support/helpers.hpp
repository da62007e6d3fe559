#pragma once
// Shared test helpers: tight gradient-check settings and matrix comparisons.
#include "support/catch.hpp"

#include <resblocks/core/thread_pool.hpp>
#include <resblocks/resblocks.hpp>

#include <Eigen/Core>

#include <chrono>
#include <string>

namespace rbtest {

/// Tighter than torch.autograd.gradcheck: our layers are exact in double.
inline resblocks::testing::GradientCheckOptions tight() {
  resblocks::testing::GradientCheckOptions o;
  o.step = 1e-6;
  o.atol = 1e-7;
  o.rtol = 1e-5;
  return o;
}

/// Runs check_gradients and fails with the per-tensor report when any gradient is off.
template <class L>
void require_gradients(L& layer, const typename L::Input& x,
                       const resblocks::testing::GradientCheckOptions& o = tight()) {
  const auto result = resblocks::testing::check_gradients(layer, x, o);
  INFO(result.report());
  REQUIRE(result.tensors.size() >= 1);
  REQUIRE(result.passed());
}

/// max |a - b| / max(1, max |b|)
template <class A, class B>
double rel_diff(const A& a, const B& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  const double scale = std::max(1.0, static_cast<double>(b.cwiseAbs().maxCoeff()));
  return static_cast<double>((a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff()) / scale;
}

/// Copies every parameter of `from` into `to` (same names in the same order), converting the scalar.
template <class From, class To>
void copy_parameters(const From& from, To& to) {
  std::vector<Eigen::MatrixXd> values;
  from.for_each_parameter(
      [&](std::string_view, const auto& v, const auto&) { values.emplace_back(v.template cast<double>()); });
  std::size_t i = 0;
  to.for_each_parameter([&](std::string_view, auto& v, const auto&) {
    using T = typename std::remove_reference_t<decltype(v)>::Scalar;
    v = values.at(i++).template cast<T>();
  });
  REQUIRE(i == values.size());
}

/// Deterministic random batch in [-1, 1].
template <class M>
M random_batch(resblocks::Index rows, resblocks::Index cols, std::uint64_t seed) {
  resblocks::Generator g(seed);
  M m(rows, cols);
  resblocks::fill_uniform(m, 1.0, g);
  return m;
}

/// The float smoke test of a layer against its double twin: `f` (float) and `d` (double) run forward
/// on x and backward on g (given in double, cast to each layer's types), and each output and input
/// gradient agrees within `tol` (rel_diff). Parameter gradients are left to the caller.
template <class F, class D>
void require_float_agrees(F& f, D& d, const Eigen::MatrixXd& x, const Eigen::MatrixXd& g, double tol = 1e-5) {
  const typename F::Input xf = x.cast<typename F::Scalar>();
  const typename D::Input xd = x;
  REQUIRE(rel_diff(f.forward(xf), d.forward(xd)) < tol);
  const typename F::Output gf = g.cast<typename F::Scalar>();
  const typename D::Output gd = g;
  REQUIRE(rel_diff(f.backward(gf), d.backward(gd)) < tol);
}

/// For its scope, the process's thread pool runs every region on the calling thread alone, every
/// thread's part in turn (as it does beside a co-tenant); afterwards it is back to its default.
class PoolAlone {
 public:
  PoolAlone() { resblocks::detail::ThreadPool::instance().run_alone_for(std::chrono::hours(1)); }
  PoolAlone(const PoolAlone&) = delete;
  PoolAlone& operator=(const PoolAlone&) = delete;
  ~PoolAlone() {
    resblocks::detail::ThreadPool& pool = resblocks::detail::ThreadPool::instance();
    pool.set_alone_when_preempted(false);  // ends the period
    pool.set_alone_when_preempted(RESBLOCKS_POOL_ALONE != 0);
  }
};

}  // namespace rbtest
