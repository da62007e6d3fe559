#pragma once
/// \file
/// \brief BufferCheckpoint: a copy of a model's buffers (BatchNorm running statistics) to restore
/// after a training forward pass that threw.
///
/// What a throwing forward pass changes: forward() gives the basic guarantee. Parameters and
/// gradients never change in forward, but the BatchNorm2d layers that ran before the layer that
/// threw (a std::bad_alloc sizing the buffers of a larger batch, a shape error) have already
/// updated running_mean, running_var and num_batches_tracked, as PyTorch's do. The strong guarantee
/// for buffers is one checkpoint away:
///
///     BufferCheckpoint checkpoint(net);        // allocates once
///     checkpoint.save(net);                    // each step: copies, allocates nothing
///     try { net.forward(x); } catch (...) { checkpoint.restore(net); throw; }

#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace resblocks {

/// \brief Every buffer of a model (`for_each_buffer`: matrices of the model's scalar S and integer
/// counters), copied by save() and written back by restore(); sized at construction, so neither
/// allocates while the model's buffers keep their sizes.
template <class S>
class BufferCheckpoint {
 public:
  /// \brief Sizes the copies after `model`'s buffers (and saves them).
  /// \param model the layer or network whose buffers are checkpointed
  template <class Model>
  explicit BufferCheckpoint(Model& model) {
    auto size = [&](std::string_view, const auto& value) {
      using V = std::remove_cvref_t<decltype(value)>;
      if constexpr (std::is_integral_v<V>)
        m_counters.push_back(static_cast<std::int64_t>(value));
      else
        m_values.emplace_back(value.template cast<S>());
    };
    detail::visit_buffers(model, size, ParameterName{});
  }

  /// Copies the model's buffers into the checkpoint. Throws std::invalid_argument when the model's
  /// buffers are not those the checkpoint was built for (count or sizes).
  /// \param model the model given to the constructor
  /// \throws std::invalid_argument when the model's buffers differ in count or sizes from the checkpoint's
  template <class Model>
  void save(Model& model) {
    visit(model, [](auto& buffer, auto& copy) { copy = buffer; });
  }

  /// \brief Writes the checkpoint back into the model's buffers (same checks as save()).
  /// \param model the model given to the constructor
  /// \throws std::invalid_argument when the model's buffers differ in count or sizes from the checkpoint's
  template <class Model>
  void restore(Model& model) {
    visit(model, [](auto& buffer, const auto& copy) { buffer = copy; });
  }

 private:
  template <class Model, class F>
  void visit(Model& model, F&& f) {
    std::size_t values = 0, counters = 0;
    auto one = [&](std::string_view name, auto& value) {
      using V = std::remove_cvref_t<decltype(value)>;
      if constexpr (std::is_integral_v<V>) {
        if (counters == m_counters.size()) throw changed(name);
        std::int64_t& copy = m_counters[counters++];
        if constexpr (std::is_same_v<V, std::int64_t>) {
          f(value, copy);
        } else {
          std::int64_t wide = value;
          f(wide, copy);
          value = static_cast<V>(wide);
        }
      } else {
        static_assert(std::is_same_v<typename V::Scalar, S>, "BufferCheckpoint<S>: the buffers must be of scalar S");
        if (values == m_values.size() || m_values[values].rows() != value.rows() ||
            m_values[values].cols() != value.cols())
          throw changed(name);
        auto& copy = m_values[values++];
        if constexpr (V::ColsAtCompileTime == 1) {
          auto column = copy.col(0);
          f(value, column);
        } else {
          f(value, copy);
        }
      }
    };
    detail::visit_buffers(model, one, ParameterName{});
    if (values != m_values.size() || counters != m_counters.size()) throw changed("(fewer buffers)");
  }

  static std::invalid_argument changed(std::string_view name) {
    return std::invalid_argument(
        "resblocks::BufferCheckpoint: the model's buffers changed since the checkpoint was built, at '" +
        std::string(name) + "'");
  }

  std::vector<Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>> m_values;
  std::vector<std::int64_t> m_counters;
};

template <class Model>
BufferCheckpoint(Model&) -> BufferCheckpoint<typename Model::Scalar>;

}  // namespace resblocks
