#pragma once
// SvgChart: line charts written as a standalone SVG file (no plotting library needed).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace examples {

/// \brief One line of a chart: a name for the legend and (x, y) points.
struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  bool dashed = false;
  int colour = -1;  ///< palette index; -1: the series' position in its panel
};

/// \brief A row of panels, each an x-y line chart with axes, ticks, grid and legend; save() writes
/// the SVG atomically (a temporary file renamed over the target).
class SvgChart {
 public:
  struct Panel {
    std::string title, x_label, y_label;
    std::vector<Series> series;
    bool log_y = false;
  };

  explicit SvgChart(std::string title) : m_title(std::move(title)) {}
  Panel& add_panel(std::string title, std::string x_label, std::string y_label, bool log_y = false) {
    m_panels.push_back(Panel{std::move(title), std::move(x_label), std::move(y_label), {}, log_y});
    return m_panels.back();
  }

  void save(const std::string& path) const {
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw std::runtime_error("cannot write plot " + tmp);
      out << render();
      out.close();
      if (!out) throw std::runtime_error("writing plot " + tmp + " failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
      std::filesystem::remove(tmp, ec);
      throw std::runtime_error("cannot write plot " + path);
    }
  }

  [[nodiscard]] std::string render() const {
    constexpr double panel_w = 460, panel_h = 330, left = 62, right = 16, top = 58, bottom = 50;
    const double width = panel_w * static_cast<double>(std::max<std::size_t>(1, m_panels.size()));
    const double legend_h = 18.0 * static_cast<double>(legend_entries());
    const double height = panel_h + legend_h + 12;
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    s << "<text x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << escape(m_title)
      << "</text>\n";
    for (std::size_t p = 0; p < m_panels.size(); ++p) {
      const Panel& panel = m_panels[p];
      const double x0 = panel_w * static_cast<double>(p) + left, x1 = panel_w * static_cast<double>(p + 1) - right;
      const double y0 = panel_h - bottom, y1 = top;
      // Plain copies, not structured bindings: lambdas capture those only from C++20 on Clang 16.
      const Bounds b = bounds(panel);
      const double xmin = b.xmin, xmax = b.xmax, ymin = b.ymin, ymax = b.ymax;
      const auto ty = [&](double y) { return panel.log_y ? std::log10(y) : y; };
      const auto px = [&](double x) { return x0 + (x - xmin) / (xmax - xmin) * (x1 - x0); };
      const auto py = [&](double y) { return y0 - (ty(y) - ty(ymin)) / (ty(ymax) - ty(ymin)) * (y0 - y1); };
      s << "<text x=\"" << (x0 + x1) / 2 << "\" y=\"" << top - 12 << "\" text-anchor=\"middle\" font-size=\"13\">"
        << escape(panel.title) << "</text>\n";
      // Grid and ticks.
      for (double t : ticks(xmin, xmax, false)) {
        s << "<line x1=\"" << px(t) << "\" y1=\"" << y0 << "\" x2=\"" << px(t) << "\" y2=\"" << y1
          << "\" stroke=\"#e4e4e4\"/>\n<text x=\"" << px(t) << "\" y=\"" << y0 + 16 << "\" text-anchor=\"middle\">"
          << label(t) << "</text>\n";
      }
      for (double t : ticks(ymin, ymax, panel.log_y)) {
        s << "<line x1=\"" << x0 << "\" y1=\"" << py(t) << "\" x2=\"" << x1 << "\" y2=\"" << py(t)
          << "\" stroke=\"#e4e4e4\"/>\n<text x=\"" << x0 - 5 << "\" y=\"" << py(t) + 4 << "\" text-anchor=\"end\">"
          << label(t) << "</text>\n";
      }
      s << "<rect x=\"" << x0 << "\" y=\"" << y1 << "\" width=\"" << x1 - x0 << "\" height=\"" << y0 - y1
        << "\" fill=\"none\" stroke=\"#444\"/>\n";
      s << "<text x=\"" << (x0 + x1) / 2 << "\" y=\"" << y0 + 36 << "\" text-anchor=\"middle\">"
        << escape(panel.x_label) << "</text>\n";
      s << "<text transform=\"translate(" << x0 - 46 << "," << (y0 + y1) / 2
        << ") rotate(-90)\" text-anchor=\"middle\">" << escape(panel.y_label) << "</text>\n";
      for (std::size_t i = 0; i < panel.series.size(); ++i) {
        const Series& series = panel.series[i];
        const char* colour = palette(series.colour >= 0 ? std::size_t(series.colour) : i);
        s << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\""
          << (series.dashed ? " stroke-dasharray=\"6,4\"" : "") << " points=\"";
        for (const auto& [x, y] : series.points)
          if (std::isfinite(y) && (!panel.log_y || y > 0)) s << px(x) << "," << py(std::clamp(y, ymin, ymax)) << " ";
        s << "\"/>\n";
        for (const auto& [x, y] : series.points)
          if (std::isfinite(y) && (!panel.log_y || y > 0))
            s << "<circle cx=\"" << px(x) << "\" cy=\"" << py(std::clamp(y, ymin, ymax)) << "\" r=\"2.5\" fill=\""
              << colour << "\"/>\n";
      }
    }
    // One legend below the panels (the series of the first panel name them all).
    if (!m_panels.empty()) {
      const auto& series = m_panels.front().series;
      for (std::size_t i = 0; i < series.size(); ++i) {
        const double y = panel_h + 8 + 18.0 * static_cast<double>(i);
        s << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + 28 << "\" y2=\"" << y << "\" stroke=\""
          << palette(series[i].colour >= 0 ? std::size_t(series[i].colour) : i) << "\" stroke-width=\"2\""
          << (series[i].dashed ? " stroke-dasharray=\"6,4\"" : "") << "/>\n<text x=\"" << left + 36 << "\" y=\""
          << y + 4 << "\">" << escape(series[i].name) << "</text>\n";
      }
    }
    s << "</svg>\n";
    return s.str();
  }

 private:
  std::size_t legend_entries() const { return m_panels.empty() ? 0 : m_panels.front().series.size(); }

  static const char* palette(std::size_t i) {
    static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    return colours[i % 8];
  }

  static std::string escape(const std::string& text) {
    std::string out;
    for (char c : text) {
      if (c == '<')
        out += "&lt;";
      else if (c == '>')
        out += "&gt;";
      else if (c == '&')
        out += "&amp;";
      else
        out += c;
    }
    return out;
  }

  static std::string label(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", std::fabs(v) < 1e-12 ? 0.0 : v);
    return text;
  }

  struct Bounds {
    double xmin, xmax, ymin, ymax;
  };
  static Bounds bounds(const Panel& panel) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    Bounds b{inf, -inf, inf, -inf};
    for (const auto& series : panel.series)
      for (const auto& [x, y] : series.points) {
        if (!std::isfinite(y) || (panel.log_y && y <= 0)) continue;
        b.xmin = std::min(b.xmin, x), b.xmax = std::max(b.xmax, x);
        b.ymin = std::min(b.ymin, y), b.ymax = std::max(b.ymax, y);
      }
    if (!(b.xmin < b.xmax)) b.xmin = std::isfinite(b.xmin) ? b.xmin - 1 : 0, b.xmax = b.xmin + 2;
    if (!(b.ymin < b.ymax))
      b.ymin = std::isfinite(b.ymin) ? b.ymin * 0.9 - (panel.log_y ? 0 : 1) : 0.1, b.ymax = b.ymin * 1.2 + 2;
    if (panel.log_y) {
      b.ymin = std::pow(10.0, std::floor(std::log10(b.ymin)));
      b.ymax = std::pow(10.0, std::ceil(std::log10(b.ymax)));
    } else {
      const double pad = 0.05 * (b.ymax - b.ymin);
      b.ymin -= pad, b.ymax += pad;
    }
    return b;
  }

  /// About five round tick values in [lo, hi] (powers of ten on a log axis).
  static std::vector<double> ticks(double lo, double hi, bool log) {
    std::vector<double> out;
    if (log) {
      for (double t = lo; t <= hi * 1.0001; t *= 10) out.push_back(t);
      return out;
    }
    const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
    for (double t = std::ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step) out.push_back(t);
    return out;
  }

  std::string m_title;
  std::deque<Panel> m_panels;  // add_panel()'s references stay valid
};

}  // namespace examples
