#pragma once
// CommandLine: the examples' `--name value` / `--flag` parser, with --help and clear errors.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace examples {

/// \brief Parses `--name value`, `--name=value` and bare `--flag`; each get_*() documents its flag
/// for --help. Call finish() after the last get_*(): it prints the usage on --help and rejects
/// unknown flags and malformed values (std::invalid_argument naming the flag).
class CommandLine {
 public:
  CommandLine(int argc, char** argv, std::string summary) : m_program(argv[0]), m_summary(std::move(summary)) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        m_help = true;
        continue;
      }
      if (arg.rfind("--", 0) != 0)
        throw std::invalid_argument("unexpected argument '" + arg + "' (flags start with --)");
      const auto eq = arg.find('=');
      if (eq != std::string::npos) {
        m_values[arg.substr(0, eq)] = arg.substr(eq + 1);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        m_values[arg] = argv[++i];
      } else {
        m_values[arg] = "";  // a bare flag
      }
    }
  }

  std::string get_string(const std::string& name, const std::string& fallback, const std::string& help) {
    document(name, "TEXT", fallback, help);
    const auto it = m_values.find(name);
    if (it == m_values.end()) return fallback;
    m_used.push_back(name);
    if (it->second.empty()) throw std::invalid_argument(name + " needs a value");
    return it->second;
  }

  /// An integer flag in [lo, hi]: anything else (not a number, or out of range, overflow included) is
  /// an error naming the flag, the value and the range.
  long get_int(const std::string& name, long fallback, const std::string& help,
               long lo = std::numeric_limits<long>::min(), long hi = std::numeric_limits<long>::max()) {
    document(name, "N", std::to_string(fallback), help);
    const auto it = m_values.find(name);
    if (it == m_values.end()) return fallback;
    m_used.push_back(name);
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0')
      throw std::invalid_argument(name + " needs an integer, got '" + it->second + "'");
    if (errno == ERANGE || v < lo || v > hi)
      throw std::invalid_argument(name + " " + it->second + " is out of range: it must be between " +
                                  std::to_string(lo) + " and " + std::to_string(hi));
    return v;
  }

  /// A finite number flag in [lo, hi]; anything else is an error naming the flag, the value and the range.
  double get_double(const std::string& name, double fallback, const std::string& help,
                    double lo = -std::numeric_limits<double>::max(), double hi = std::numeric_limits<double>::max()) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", fallback);
    document(name, "X", text, help);
    const auto it = m_values.find(name);
    if (it == m_values.end()) return fallback;
    m_used.push_back(name);
    char* end = nullptr;
    const double v = std::strtod(it->second.c_str(), &end);
    if (it->second.empty() || *end != '\0')
      throw std::invalid_argument(name + " needs a number, got '" + it->second + "'");
    if (!std::isfinite(v) || v < lo || v > hi) {
      char range[96];
      std::snprintf(range, sizeof range, "between %g and %g", lo, hi);
      throw std::invalid_argument(name + " " + it->second + " is out of range: it must be a finite number " + range);
    }
    return v;
  }

  bool get_flag(const std::string& name, const std::string& help) {
    document(name, "", "", help);
    const auto it = m_values.find(name);
    if (it == m_values.end()) return false;
    m_used.push_back(name);
    if (!it->second.empty() && it->second != "1" && it->second != "true")
      throw std::invalid_argument(name + " takes no value, got '" + it->second + "'");
    return true;
  }

  /// Prints the usage and returns false on --help; throws on unknown flags.
  bool finish() const {
    if (m_help) {
      std::printf("%s\n\nusage: %s [flags]\n%s", m_summary.c_str(), m_program.c_str(), m_usage.c_str());
      return false;
    }
    for (const auto& [name, value] : m_values) {
      bool known = false;
      for (const auto& u : m_used) known = known || u == name;
      if (!known) throw std::invalid_argument("unknown flag " + name + " (see --help)");
    }
    return true;
  }

 private:
  void document(const std::string& name, const std::string& meta, const std::string& fallback,
                const std::string& help) {
    std::string left = "  " + name + (meta.empty() ? "" : " " + meta);
    if (left.size() < 22) left.resize(22, ' ');
    m_usage += left + " " + help + (fallback.empty() ? "" : " (default " + fallback + ")") + "\n";
  }

  std::string m_program, m_summary, m_usage;
  std::map<std::string, std::string> m_values;
  std::vector<std::string> m_used;
  bool m_help = false;
};

}  // namespace examples
