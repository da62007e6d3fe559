#pragma once
/// \file
/// \brief The per-parameter state every optimizer keeps, and the checked visit of a model's parameters.
///
/// An optimizer works on any object with `for_each_parameter(f)` calling `f(name, value, grad)` on
/// Eigen matrices or vectors (fixed or dynamic sizes). It visits the model once at construction and
/// allocates its state there: a few flat arrays per parameter (momentum, moments), the size of the
/// parameter. A step visits the model twice in the same order: first to check that the parameters
/// are still the ones the state was built for (count, names, sizes), then to update them in place,
/// so a changed model is rejected before any parameter moves. A step allocates nothing. The updates
/// are element-wise and memory-bound: a large parameter is updated in ranges on the threads
/// (update), with the same bits as in one range.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/train/option_check.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace resblocks {

/// An object whose trainable tensors an optimizer can visit: `m.for_each_parameter(f)`.
template <class M>
concept ParameterVisitable = requires(M& m, detail::ParameterVisitorArchetype f) {
  m.for_each_parameter(f);
};

namespace detail {

/// Which parameters get weight decay, by name; an empty function selects all of them.
using DecayPredicate = std::function<bool(std::string_view)>;

/// A flat, element-wise array view of an Eigen matrix or vector (writable unless `X` is const).
template <class X>
auto flat_array(X& x) {
  using T = std::remove_const_t<X>;
  if constexpr (std::is_base_of_v<Eigen::PlainObjectBase<T>, T>) {
    using A = Eigen::Array<typename T::Scalar, T::SizeAtCompileTime, 1>;
    if constexpr (std::is_const_v<X>)
      return Eigen::Map<const A>(x.data(), x.size());
    else
      return Eigen::Map<A>(x.data(), x.size());
  } else {
    return x.reshaped().array();
  }
}

/// \brief The state of an optimizer: for each parameter of the model (in visiting order) its name,
/// size, whether it decays, and `slots` flat arrays of scalars, zero-initialised.
template <class S>
class OptimizerState {
 public:
  using Buffer = Eigen::Array<S, Eigen::Dynamic, 1>;

  /// \brief One parameter's entry.
  struct Entry {
    std::string name;
    Index size = 0;
    bool decay = true;            ///< the decay predicate's verdict, taken at construction
    std::vector<Buffer> buffers;  ///< `slots` arrays of `size` elements
  };

  /// Visits `model` once; `optimizer` names the owner in error messages (a string literal).
  template <ParameterVisitable Model>
  OptimizerState(std::string_view optimizer, Model& model, int slots, const DecayPredicate& decay)
      : m_optimizer(optimizer) {
    model.for_each_parameter([&](std::string_view name, const auto& value, const auto& grad) {
      check_scalar(value, grad);
      Entry e;
      e.name = std::string(name);
      e.size = value.size();
      e.decay = !decay || decay(name);
      if (grad.size() != e.size) throw gradient_size_error(e.name, grad.size(), e.size);
      e.buffers.assign(static_cast<std::size_t>(slots), Buffer::Zero(e.size));
      m_entries.push_back(std::move(e));
    });
  }

  [[nodiscard]] const std::vector<Entry>& entries() const noexcept { return m_entries; }

  /// \brief The optimizer's arrays of one parameter over one range of its elements: slots[k] is
  /// array k's segment (a writable Eigen block).
  struct Slots {
    Buffer* buffers;
    Index begin, size;
    auto operator[](std::size_t k) const { return buffers[k].segment(begin, size); }
  };

  /// Checks `model` against the state (std::invalid_argument naming the parameter when it changed),
  /// then calls `f(entry, slots, p, g)` for every parameter, over ranges of its elements: `p` a
  /// writable flat array view of the value's range, `g` a read-only one of the gradient's and `slots`
  /// the optimizer's arrays over it (f must be element-wise). A parameter of at least 2^15 elements,
  /// whose value, gradient and arrays are aligned for Eigen's packets (Eigen's dynamic allocations are),
  /// runs in ranges of whole 64-element chunks on the threads; the others in one range. Every range then
  /// starts aligned, so each element takes the same path (packet or scalar) as in one range: the same
  /// bits on any thread count. (Memory-bound, one thread left the second core idle: bench/optimizer_bench.cpp
  /// on 2 threads, BM_SgdStep/1024 1.86-1.94 -> 1.06-1.12 ms, BM_AdamWStep/1024 2.61-2.75 -> 1.35-1.79.)
  template <ParameterVisitable Model, class F>
  void update(Model& model, F&& f) {
    check(model);
    std::size_t i = 0;
    model.for_each_parameter([&](std::string_view, auto& value, const auto& grad) {
      Entry& e = m_entries[i++];
      auto p = flat_array(value);
      const auto g = flat_array(grad);
      const auto run = [&](Index begin, Index size) {
        f(std::as_const(e), Slots{e.buffers.data(), begin, size}, p.segment(begin, size), g.segment(begin, size));
      };
      constexpr Index chunk = 64;
      if (e.size < (Index{1} << 15) || !on_lines(value, grad, e)) {
        run(0, e.size);
        return;
      }
      parallel_for((e.size + chunk - 1) / chunk, 4.0 * chunk,
                   [&](Index u0, Index u1) { run(u0 * chunk, std::min(e.size, u1 * chunk) - u0 * chunk); });
    });
  }

  /// The non-finite guard (the optimizers' `check_finite` option): throws std::runtime_error naming
  /// the optimizer, `step` (1-based) and the first parameter whose gradient holds a NaN or an
  /// infinity, before any parameter or state changes. One read of every gradient; allocates nothing.
  template <ParameterVisitable Model>
  void check_finite_gradients(Model& model, Index step) const {
    model.for_each_parameter([&](std::string_view name, const auto&, const auto& grad) {
      const auto g = flat_array(grad);
      if (g.isFinite().all()) return;
      const bool nan = g.isNaN().any();
      throw std::runtime_error("resblocks::" + std::string(m_optimizer) + ": step " + std::to_string(step) +
                               ": the gradient of '" + std::string(name) + "' holds " + (nan ? "NaN" : "an infinity") +
                               ", so no parameter was changed (a non-finite loss or input? a too large learning "
                               "rate? turn the check off with check_finite = false)");
    });
  }

  /// Throws std::invalid_argument unless `model` visits the same parameters (count, names, sizes).
  template <ParameterVisitable Model>
  void check(Model& model) const {
    std::size_t i = 0;
    model.for_each_parameter([&](std::string_view name, const auto& value, const auto& grad) {
      check_scalar(value, grad);
      if (i == m_entries.size())
        throw changed("extra parameter '" + std::string(name) + "' (it had " + std::to_string(m_entries.size()) +
                      " parameters)");
      const Entry& e = m_entries[i++];
      if (name != e.name)
        throw changed("parameter " + std::to_string(i - 1) + " is '" + std::string(name) + "', was '" + e.name + "'");
      if (value.size() != e.size)
        throw changed("parameter '" + e.name + "' has " + std::to_string(value.size()) + " elements, had " +
                      std::to_string(e.size));
      if (grad.size() != e.size) throw gradient_size_error(e.name, grad.size(), e.size);
    });
    if (i != m_entries.size())
      throw changed(std::to_string(i) + " parameters, had " + std::to_string(m_entries.size()) +
                    " (the first one missing is '" + m_entries[i].name + "')");
  }

 private:
  /// Whether the value, the gradient and every array of entry e are plain storage aligned for Eigen's
  /// packets (EIGEN_MAX_ALIGN_BYTES, as Eigen's dynamic allocations are): their assignments then take no
  /// scalar steps before the first packet, in one range or in several of 64 elements.
  template <class V, class G>
  static bool on_lines(const V& value, const G& grad, const Entry& e) noexcept {
    if constexpr (std::is_base_of_v<Eigen::PlainObjectBase<V>, V> && std::is_base_of_v<Eigen::PlainObjectBase<G>, G>) {
      constexpr std::uintptr_t line = EIGEN_MAX_ALIGN_BYTES > 0 ? EIGEN_MAX_ALIGN_BYTES : 1;
      static_assert(64 * sizeof(S) % line == 0, "ranges of 64 elements keep the alignment");
      const auto on_line = [](const void* data) { return reinterpret_cast<std::uintptr_t>(data) % line == 0; };
      return on_line(value.data()) && on_line(grad.data()) &&
             std::all_of(e.buffers.begin(), e.buffers.end(), [&](const Buffer& b) { return on_line(b.data()); });
    } else {
      return false;
    }
  }

  template <class V, class G>
  static void check_scalar(const V&, const G&) {
    static_assert(std::is_same_v<typename V::Scalar, S> && std::is_same_v<typename G::Scalar, S>,
                  "the optimizer's scalar type must be the model's parameter scalar type");
  }

  std::invalid_argument changed(const std::string& what) const {
    return std::invalid_argument("resblocks::" + std::string(m_optimizer) +
                                 ": the model changed since the optimizer was built: " + what);
  }

  std::invalid_argument gradient_size_error(const std::string& name, Index grad, Index value) const {
    return std::invalid_argument("resblocks::" + std::string(m_optimizer) + ": the gradient of parameter '" + name +
                                 "' has " + std::to_string(grad) + " elements, the parameter " + std::to_string(value));
  }

  std::string_view m_optimizer;
  std::vector<Entry> m_entries;
};

}  // namespace detail
}  // namespace resblocks
