#pragma once
/// \file
/// \brief ParameterName: a PyTorch `state_dict`-style dotted name built without heap allocation.

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace resblocks {

/// \brief A dotted parameter name (`body.0.weight`) held in a fixed buffer, so that visiting
/// parameters in a training loop never allocates.
class ParameterName {
 public:
  static constexpr std::size_t capacity = 256;

  ParameterName() = default;
  explicit ParameterName(std::string_view s) { append(s); }

  /// \brief This name followed by `.part` (just `part` when this name is empty; this name when `part` is).
  /// \param part the child's name
  /// \returns the child's full name
  /// \throws std::length_error when the result is longer than `capacity`
  [[nodiscard]] ParameterName child(std::string_view part) const {
    ParameterName n = *this;
    if (part.empty()) return n;
    if (n.m_size != 0) n.append(".");
    n.append(part);
    return n;
  }
  /// \brief This name followed by `.index`.
  /// \param index the child's position, written in decimal
  /// \returns the child's full name
  /// \throws std::length_error when the result is longer than `capacity`
  [[nodiscard]] ParameterName child(std::size_t index) const {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, index);
    return child(std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)));
  }

  [[nodiscard]] std::string_view view() const noexcept { return {m_text.data(), m_size}; }
  [[nodiscard]] std::string str() const { return std::string(view()); }
  operator std::string_view() const noexcept { return view(); }  // NOLINT: meant to convert implicitly
  [[nodiscard]] bool empty() const noexcept { return m_size == 0; }

  friend std::ostream& operator<<(std::ostream& os, const ParameterName& n) { return os << n.view(); }
  friend bool operator==(const ParameterName& a, std::string_view b) noexcept { return a.view() == b; }

 private:
  void append(std::string_view s) {
    if (m_size + s.size() > capacity)
      throw std::length_error("resblocks::ParameterName: name longer than 256 characters");
    std::copy(s.begin(), s.end(), m_text.begin() + static_cast<std::ptrdiff_t>(m_size));
    m_size += s.size();
  }

  std::array<char, capacity> m_text{};
  std::size_t m_size = 0;
};

}  // namespace resblocks
