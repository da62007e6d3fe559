#pragma once
/// \file
/// \brief The const and non-const for_each_parameter / for_each_buffer of a layer, from one template.

#include "resblocks/core/parameter_name.hpp"

namespace resblocks::detail {

/// \brief Gives `L` both `for_each_parameter(f, prefix)` overloads (const and non-const) from one
/// static member template, `template <class Self, class F> static void visit_parameters(Self& self,
/// F& f, const ParameterName& prefix)`, where Self is L or const L (so the visitor sees const
/// references through a const layer). `L` befriends this base when the template is private.
template <class L>
class VisitsParameters {
 public:
  /// Calls `f(name, value, grad)` for every trainable tensor (see the Layer concept).
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    L::visit_parameters(static_cast<L&>(*this), f, prefix);
  }
  /// The same through a const layer: const references.
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    L::visit_parameters(static_cast<const L&>(*this), f, prefix);
  }
};

/// \brief VisitsParameters for buffers: both `for_each_buffer(f, prefix)` overloads from
/// `template <class Self, class F> static void visit_buffers(Self& self, F& f, const ParameterName& prefix)`.
template <class L>
class VisitsBuffers {
 public:
  /// Calls `f(name, value)` for every non-trainable state tensor (see HasBuffers).
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) {
    L::visit_buffers(static_cast<L&>(*this), f, prefix);
  }
  /// The same through a const layer: const references.
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) const {
    L::visit_buffers(static_cast<const L&>(*this), f, prefix);
  }
};

}  // namespace resblocks::detail
