#pragma once
/// \file
/// \brief CachedInput: the reference to its input a layer keeps from forward to backward.

#include "resblocks/core/shape_error.hpp"

#include <string_view>

namespace resblocks::detail {

/// \brief A pointer to the last forward input. Copies and moves of a layer do not carry it over
/// (it would point into the source's neighbours), so backward on a fresh copy throws instead of
/// reading freed memory.
template <class T>
class CachedInput {
 public:
  CachedInput() = default;
  CachedInput(const CachedInput&) noexcept {}
  CachedInput& operator=(const CachedInput&) noexcept {
    m_ptr = nullptr;
    return *this;
  }
  CachedInput& operator=(const T* p) noexcept {
    m_ptr = p;
    return *this;
  }
  /// The cached input; throws std::logic_error naming `layer` when no forward ran.
  const T& get(std::string_view layer) const {
    check_forward_done(layer, m_ptr != nullptr);
    return *m_ptr;
  }

 private:
  const T* m_ptr = nullptr;
};

}  // namespace resblocks::detail
