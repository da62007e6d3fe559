#pragma once
/// \file
/// \brief A strict JSON reader (objects, arrays, strings, integers) and a string quoter: the parts of
/// JSON the safetensors header needs. Internal to resblocks' io.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace resblocks::detail {

/// Malformed JSON; the message names the byte offset.
struct JsonError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// \brief One JSON value. Objects keep their keys in order, their values in `items`.
struct Json {
  enum class Kind { object, array, string, integer };
  Kind kind = Kind::integer;
  std::size_t offset = 0;  ///< byte offset in the file where the value starts
  std::int64_t integer = 0;
  std::string text;
  std::vector<std::string> keys;
  std::vector<Json> items;

  [[nodiscard]] const Json* find(std::string_view key) const {
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == key) return &items[i];
    return nullptr;
  }
};

/// \brief Recursive-descent parser of RFC 8259 JSON restricted to integer numbers (no fractions,
/// exponents, true/false/null). Errors throw JsonError with the file byte offset.
class JsonParser {
 public:
  /// `text` is the header; `base` the file offset of its first byte (for messages).
  JsonParser(std::string_view text, std::size_t base) : m_text(text), m_base(base) {}

  /// One value followed by nothing but whitespace.
  Json parse_document() {
    skip_whitespace();
    Json value = parse_value(0);
    skip_whitespace();
    if (m_pos != m_text.size()) fail("unexpected " + describe() + " after the end of the JSON value");
    return value;
  }

 private:
  static constexpr int k_max_depth = 64;

  [[noreturn]] void fail(const std::string& what) const {
    throw JsonError("malformed header JSON at byte " + std::to_string(m_base + m_pos) + ": " + what);
  }
  [[nodiscard]] std::string describe() const {
    if (m_pos >= m_text.size()) return "end of the header";
    const auto c = static_cast<unsigned char>(m_text[m_pos]);
    if (c >= 0x20 && c < 0x7f) return std::string("character '") + char(c) + "'";
    return "byte 0x" + hex(c, 2);
  }
  static std::string hex(unsigned value, int digits) {
    std::string s(static_cast<std::size_t>(digits), '0');
    for (int i = digits - 1; i >= 0; --i, value >>= 4) s[static_cast<std::size_t>(i)] = "0123456789abcdef"[value & 15];
    return s;
  }
  [[nodiscard]] bool at_end() const noexcept { return m_pos >= m_text.size(); }
  [[nodiscard]] char peek() const noexcept { return at_end() ? '\0' : m_text[m_pos]; }
  void skip_whitespace() noexcept {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++m_pos;
  }
  void expect(char c) {
    if (at_end() || peek() != c) fail(std::string("expected '") + c + "', got " + describe());
    ++m_pos;
  }

  Json parse_value(int depth) {
    if (depth > k_max_depth) fail("nested deeper than " + std::to_string(k_max_depth) + " levels");
    const char c = peek();
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') {
      Json v;
      v.kind = Json::Kind::string;
      v.offset = m_base + m_pos;
      v.text = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_integer();
    fail("expected a value (object, array, string or integer), got " + describe());
  }

  Json parse_object(int depth) {
    Json v;
    v.kind = Json::Kind::object;
    v.offset = m_base + m_pos;
    expect('{');
    std::set<std::string> seen;
    skip_whitespace();
    if (peek() == '}') {
      ++m_pos;
      return v;
    }
    while (true) {
      skip_whitespace();
      if (peek() != '"') fail("expected a string key, got " + describe());
      const std::size_t key_pos = m_pos;
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        m_pos = key_pos;
        fail("duplicate key \"" + key + "\"");
      }
      skip_whitespace();
      expect(':');
      skip_whitespace();
      v.items.push_back(parse_value(depth + 1));
      v.keys.push_back(std::move(key));
      skip_whitespace();
      if (peek() == ',') {
        ++m_pos;
        continue;
      }
      if (peek() == '}') {
        ++m_pos;
        return v;
      }
      fail("expected ',' or '}' in an object, got " + describe());
    }
  }

  Json parse_array(int depth) {
    Json v;
    v.kind = Json::Kind::array;
    v.offset = m_base + m_pos;
    expect('[');
    skip_whitespace();
    if (peek() == ']') {
      ++m_pos;
      return v;
    }
    while (true) {
      skip_whitespace();
      v.items.push_back(parse_value(depth + 1));
      skip_whitespace();
      if (peek() == ',') {
        ++m_pos;
        continue;
      }
      if (peek() == ']') {
        ++m_pos;
        return v;
      }
      fail("expected ',' or ']' in an array, got " + describe());
    }
  }

  unsigned parse_hex4() {
    unsigned value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      unsigned digit = 0;
      if (c >= '0' && c <= '9')
        digit = unsigned(c - '0');
      else if (c >= 'a' && c <= 'f')
        digit = unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        digit = unsigned(c - 'A' + 10);
      else
        fail("expected 4 hex digits after \\u, got " + describe());
      value = value * 16 + digit;
      ++m_pos;
    }
    return value;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += char(0xe0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xf0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3f));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      const char c = m_text[m_pos];
      if (c == '"') {
        ++m_pos;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("unescaped control character (" + describe() + ") in a string");
      if (c != '\\') {
        out += c;
        ++m_pos;
        continue;
      }
      ++m_pos;
      const char e = peek();
      ++m_pos;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = parse_hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) {
            m_pos -= 6;
            fail("\\u escape is a lone low surrogate");
          }
          if (cp >= 0xd800 && cp <= 0xdbff) {  // a high surrogate: its low half must follow
            if (peek() != '\\' || m_pos + 1 >= m_text.size() || m_text[m_pos + 1] != 'u')
              fail("\\u escape: a high surrogate must be followed by a low one");
            m_pos += 2;
            const unsigned low = parse_hex4();
            if (low < 0xdc00 || low > 0xdfff) {
              m_pos -= 6;
              fail("\\u escape: a high surrogate must be followed by a low one");
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          m_pos -= 1;
          if (at_end()) fail("unterminated string");
          fail("invalid escape '\\" + std::string(1, e) + "' in a string");
      }
    }
  }

  Json parse_integer() {
    Json v;
    v.kind = Json::Kind::integer;
    v.offset = m_base + m_pos;
    const bool negative = peek() == '-';
    if (negative) ++m_pos;
    if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit, got " + describe());
    if (peek() == '0' && m_pos + 1 < m_text.size() && m_text[m_pos + 1] >= '0' && m_text[m_pos + 1] <= '9')
      fail("leading zeros are not allowed in a number");
    // Accumulate as a negative number: its range holds every int64 magnitude.
    std::int64_t value = 0;
    constexpr std::int64_t lowest = std::numeric_limits<std::int64_t>::min();
    while (peek() >= '0' && peek() <= '9') {
      const int digit = peek() - '0';
      if (value < (lowest + digit) / 10) fail("integer out of the 64-bit range");
      value = value * 10 - digit;
      ++m_pos;
    }
    if (peek() == '.' || peek() == 'e' || peek() == 'E')
      fail("only integers are allowed in the header, got " + describe());
    if (!negative && value == lowest) fail("integer out of the 64-bit range");
    v.integer = negative ? value : -value;
    return v;
  }

  std::string_view m_text;
  std::size_t m_base;
  std::size_t m_pos = 0;
};

/// `s` as a JSON string literal (quotes, backslashes and control characters escaped).
inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\u00";
      out += digits[u >> 4];
      out += digits[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace resblocks::detail
