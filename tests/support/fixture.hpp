#pragma once
// A tiny reader for the text fixtures written by tests/reference/make_fixtures.py.
//
// Format: '#' comment lines and blank lines are ignored; each tensor is a header line
// `name rows cols` followed by `cols` lines of `rows` numbers (column-major order).
// Every problem (missing file, malformed line, missing tensor) throws std::runtime_error
// naming the file, and the line or the tensor.

#include <Eigen/Core>

#include <charconv>
#include <cstddef>
#include <fstream>
#include <istream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace resblocks_tests {

class Fixture {
 public:
  Fixture() = default;
  explicit Fixture(std::string source) : m_source(std::move(source)) {}

  /// Where the fixture came from (for messages).
  [[nodiscard]] const std::string& source() const noexcept { return m_source; }

  [[nodiscard]] bool contains(const std::string& name) const { return m_tensors.count(name) != 0; }

  /// The tensor `name`; throws std::runtime_error when the fixture has no such tensor.
  [[nodiscard]] const Eigen::MatrixXd& matrix(const std::string& name) const {
    const auto it = m_tensors.find(name);
    if (it == m_tensors.end()) {
      std::string known;
      for (const auto& [n, m] : m_tensors) known += (known.empty() ? "" : ", ") + n;
      throw std::runtime_error("fixture " + m_source + ": no tensor named '" + name + "' (it has: " + known + ")");
    }
    return it->second;
  }

  /// All tensor names, sorted.
  [[nodiscard]] std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto& [n, m] : m_tensors) out.insert(n);
    return out;
  }

  /// The names that start with `prefix`, with the prefix removed (`names_with_prefix("grad.")`).
  [[nodiscard]] std::set<std::string> names_with_prefix(std::string_view prefix) const {
    std::set<std::string> out;
    for (const auto& [n, m] : m_tensors)
      if (std::string_view(n).substr(0, prefix.size()) == prefix) out.insert(n.substr(prefix.size()));
    return out;
  }

  /// Adds a tensor; throws if the name is already taken.
  void add(const std::string& name, Eigen::MatrixXd value) {
    if (!m_tensors.emplace(name, std::move(value)).second)
      throw std::runtime_error("fixture " + m_source + ": tensor '" + name + "' appears twice");
  }

 private:
  std::string m_source;
  std::map<std::string, Eigen::MatrixXd> m_tensors;
};

namespace detail {

inline std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

template <class T>
bool parse_number(std::string_view word, T& value) {
  const char* end = word.data() + word.size();
  const auto r = std::from_chars(word.data(), end, value);
  return r.ec == std::errc() && r.ptr == end;
}

}  // namespace detail

/// Parses fixture text; `source` names it in error messages.
inline Fixture parse_fixture(std::istream& in, const std::string& source) {
  Fixture fixture(source);
  std::string line;
  std::size_t line_no = 0;
  auto fail = [&](const std::string& what) -> void {
    throw std::runtime_error("fixture " + source + ", line " + std::to_string(line_no) + ": " + what);
  };
  // The next line that is neither blank nor a comment; false at end of input.
  auto next_line = [&](std::vector<std::string_view>& words) {
    while (std::getline(in, line)) {
      ++line_no;
      words = detail::split_words(line);
      if (!words.empty() && words.front().front() != '#') return true;
    }
    return false;
  };

  std::vector<std::string_view> words;
  while (next_line(words)) {
    long rows = 0, cols = 0;
    if (words.size() != 3 || !detail::parse_number(words[1], rows) || !detail::parse_number(words[2], cols) ||
        rows < 0 || cols < 0)
      fail("expected a tensor header `name rows cols`, got '" + line + "'");
    const std::string name(words[0]);
    Eigen::MatrixXd value(rows, cols);
    for (long c = 0; c < cols; ++c) {
      if (!next_line(words))
        fail("tensor '" + name + "' ends after " + std::to_string(c) + " of its " + std::to_string(cols) + " columns");
      if (static_cast<long>(words.size()) != rows)
        fail("column " + std::to_string(c) + " of tensor '" + name + "' has " + std::to_string(words.size()) +
             " values, expected " + std::to_string(rows));
      for (long r = 0; r < rows; ++r)
        if (!detail::parse_number(words[static_cast<std::size_t>(r)], value(r, c)))
          fail("tensor '" + name + "': '" + std::string(words[static_cast<std::size_t>(r)]) + "' is not a number");
    }
    fixture.add(name, std::move(value));
  }
  if (in.bad()) throw std::runtime_error("fixture " + source + ": read error");
  return fixture;
}

/// Loads `file` from RESBLOCKS_FIXTURE_DIR (when defined; else `file` is used as given).
inline Fixture load_fixture(const std::string& file) {
#ifdef RESBLOCKS_FIXTURE_DIR
  const std::string path = std::string(RESBLOCKS_FIXTURE_DIR) + "/" + file;
#else
  const std::string path = file;
#endif
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("fixture " + path +
                             ": cannot open the file (regenerate with tests/reference/make_fixtures.py)");
  return parse_fixture(in, path);
}

}  // namespace resblocks_tests
