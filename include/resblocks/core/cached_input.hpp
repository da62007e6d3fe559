#pragma once
/// \file
/// \brief CachedInput: the reference to its input a layer keeps from forward to backward.

#include "resblocks/core/shape_error.hpp"

#include <string_view>

namespace resblocks {

/// \brief The reference to its last forward input that a layer keeps for backward (the Layer
/// contract lets forward keep one). Copies and moves of a layer do not carry it over (it would point
/// into the source's neighbours), so backward on a fresh copy throws std::logic_error naming the
/// layer instead of reading freed memory. For user layers too: `m_x = std::addressof(x);` in forward,
/// `m_x.get(name)` in backward.
template <class T>
class CachedInput {
 public:
  CachedInput() = default;
  CachedInput(const CachedInput&) noexcept {}
  CachedInput& operator=(const CachedInput& other) noexcept {
    if (this != &other) m_ptr = nullptr;  // a copy caches nothing; assigning to itself changes nothing
    return *this;
  }
  CachedInput& operator=(const T* p) noexcept {
    m_ptr = p;
    return *this;
  }
  /// \brief The cached input; throws std::logic_error naming `layer` when no forward ran.
  /// \param layer the layer's name, for the error message
  /// \returns the last forward's input
  /// \throws std::logic_error when no forward ran (or the layer was copied since)
  const T& get(std::string_view layer) const {
    detail::check_forward_done(layer, m_ptr != nullptr);
    return *m_ptr;
  }
  /// \brief The cached input, or null when no forward ran.
  /// \returns the last forward's input, or null
  [[nodiscard]] const T* get_if() const noexcept { return m_ptr; }

 private:
  const T* m_ptr = nullptr;
};

}  // namespace resblocks
