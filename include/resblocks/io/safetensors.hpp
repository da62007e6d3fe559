#pragma once
/// \file
/// \brief save_safetensors / load_safetensors: a model's parameters and buffers in PyTorch's
/// (Hugging Face's) safetensors format.
///
/// File layout: an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [R, C], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}`,
/// then the tensors' raw little-endian row-major bytes (offsets relative to the end of the header).
///
/// Names are the model's `for_each_parameter` / `for_each_buffer` names (PyTorch `state_dict` keys).
/// A float model writes F32, a double model F64, `num_batches_tracked` is I64 with shape []. Every
/// tensor is written in **PyTorch's own shape**, so `model.load_state_dict(safetensors.torch.load_file(path))`
/// works unmodified: a matrix R×C as [R, C] (a Linear weight), a column vector as [R], a Conv2d
/// weight (stored Out × (In/groups·k·k), torch's element order) as [Out, In/groups, k, k] (the layer
/// reports that shape: core/torch_shape.hpp). Loading requires exactly that shape — or, for a
/// tensor whose torch shape is not 2-D (a Conv2d weight), exactly the 2-D [R, C] the layer stores,
/// as resblocks' files before 0.2 had it. Anything else is an error naming the tensor, the file, the
/// expected and the found shape (a permuted [Out, k, k, In] weight never loads silently).

#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/torch_shape.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/io/detail/file_io.hpp"
#include "resblocks/io/detail/json.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace resblocks {

namespace detail::safetensors {

/// A problem with the file's contents; load_safetensors adds the path.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Largest header accepted (the safetensors reference implementation's limit).
inline constexpr std::uint64_t k_max_header_bytes = 100'000'000;

// --- the header's tensor entries ----------------------------------------------------------------

/// \brief One tensor of the file, validated against the data section.
struct Entry {
  std::string name;
  std::string dtype;
  std::size_t element_size = 0;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  ///< byte range in the data section
  std::uint64_t elements = 0;
  bool used = false;
};

/// Bytes per element of a safetensors dtype; 0 when unknown.
inline std::size_t dtype_size(std::string_view dtype) noexcept {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// Parses and checks the header against a data section of `data_bytes` bytes: every entry has a
/// known dtype, a shape of non-negative integers and data_offsets [begin, end] inside the data
/// whose length matches; no two entries overlap; `__metadata__`, if any, maps strings to strings.
inline std::vector<Entry> parse_header(std::string_view header, std::uint64_t data_bytes) {
  Json root;
  try {
    root = JsonParser(header, 8).parse_document();
  } catch (const JsonError& e) {
    throw FormatError(e.what());
  }
  if (root.kind != Json::Kind::object) throw FormatError("the header is not a JSON object");
  std::vector<Entry> entries;
  for (std::size_t i = 0; i < root.keys.size(); ++i) {
    const std::string& name = root.keys[i];
    const Json& v = root.items[i];
    const std::string where = " (at byte " + std::to_string(v.offset) + ")";
    if (name == "__metadata__") {
      if (v.kind != Json::Kind::object) throw FormatError("__metadata__ is not an object" + where);
      for (std::size_t k = 0; k < v.keys.size(); ++k)
        if (v.items[k].kind != Json::Kind::string)
          throw FormatError("__metadata__ entry \"" + v.keys[k] + "\" is not a string" + where);
      continue;
    }
    auto bad = [&](const std::string& what) { return FormatError("tensor '" + name + "': " + what + where); };
    if (v.kind != Json::Kind::object) throw bad("expected an object with dtype, shape and data_offsets");
    const Json* dtype = v.find("dtype");
    const Json* shape = v.find("shape");
    const Json* offsets = v.find("data_offsets");
    if (!dtype || dtype->kind != Json::Kind::string) throw bad("no \"dtype\" string");
    if (!shape || shape->kind != Json::Kind::array) throw bad("no \"shape\" array");
    if (!offsets || offsets->kind != Json::Kind::array) throw bad("no \"data_offsets\" array");
    Entry e;
    e.name = name;
    e.dtype = dtype->text;
    e.element_size = dtype_size(e.dtype);
    if (e.element_size == 0) throw bad("unknown dtype \"" + e.dtype + "\"");
    e.elements = 1;
    for (const Json& d : shape->items) {
      if (d.kind != Json::Kind::integer || d.integer < 0) throw bad("shape entries must be non-negative integers");
      e.shape.push_back(d.integer);
      const auto n = static_cast<std::uint64_t>(d.integer);
      if (n != 0 && e.elements > data_bytes / n) throw bad("shape " + shape_text(e.shape) + " is larger than the file");
      e.elements *= n;
    }
    if (offsets->items.size() != 2 || offsets->items[0].kind != Json::Kind::integer ||
        offsets->items[1].kind != Json::Kind::integer || offsets->items[0].integer < 0 || offsets->items[1].integer < 0)
      throw bad("data_offsets must be two non-negative integers [begin, end]");
    e.begin = static_cast<std::uint64_t>(offsets->items[0].integer);
    e.end = static_cast<std::uint64_t>(offsets->items[1].integer);
    const std::string range = "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.begin > e.end) throw bad(range + " end before they begin");
    if (e.end > data_bytes)
      throw bad(range + " run past the end of the data section (" + std::to_string(data_bytes) +
                " bytes; is the file truncated?)");
    const std::uint64_t need = e.elements * e.element_size;  // no overflow: elements ≤ data_bytes
    if (e.end - e.begin != need)
      throw bad(range + " hold " + std::to_string(e.end - e.begin) + " bytes, but dtype " + e.dtype + " and shape " +
                shape_text(e.shape) + " need " + std::to_string(need));
    entries.push_back(std::move(e));
  }
  std::vector<const Entry*> by_begin;
  for (const Entry& e : entries)
    if (e.end > e.begin) by_begin.push_back(&e);
  std::sort(by_begin.begin(), by_begin.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_begin.size(); ++i)
    if (by_begin[i]->begin < by_begin[i - 1]->end)
      throw FormatError("tensors '" + by_begin[i - 1]->name + "' (bytes " + std::to_string(by_begin[i - 1]->begin) +
                        " to " + std::to_string(by_begin[i - 1]->end) + ") and '" + by_begin[i]->name + "' (bytes " +
                        std::to_string(by_begin[i]->begin) + " to " + std::to_string(by_begin[i]->end) + ") overlap");
  return entries;
}

// --- element conversion ---------------------------------------------------------------------------

template <class T>
inline constexpr bool always_false = false;

/// The safetensors dtype a model tensor of element type T is written as.
template <class T>
constexpr std::string_view dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return "F32";
  else if constexpr (std::is_same_v<T, double>)
    return "F64";
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return "I64";
  else
    static_assert(always_false<T>, "save_safetensors: tensors must be float, double or std::int64_t");
}

/// Appends `v` to `out` as little-endian bytes (whatever the host's byte order).
template <class T>
void put(std::string& out, T v) {
  using U = std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>;
  U bits = std::bit_cast<U>(v);
  for (std::size_t i = 0; i < sizeof(U); ++i, bits >>= 8) out += static_cast<char>(bits & 0xff);
}

template <class U>
U get_bits(const unsigned char* p) noexcept {
  U bits = 0;
  for (std::size_t i = sizeof(U); i-- > 0;) bits = static_cast<U>((bits << 8) | p[i]);
  return bits;
}

/// Element i of a little-endian array of Src at p.
template <class Src>
Src read_element(const unsigned char* p, std::uint64_t i) noexcept {
  using U = std::conditional_t<sizeof(Src) == 8, std::uint64_t, std::uint32_t>;
  return std::bit_cast<Src>(get_bits<U>(p + sizeof(Src) * i));
}

/// value(r, c) = element r·cols + c of the row-major array of Src at p, converted.
template <class Src, class Dst>
void copy_row_major(Dst& value, const unsigned char* p) {
  using T = typename Dst::Scalar;
  const Index cols = value.cols();
  for (Index r = 0; r < value.rows(); ++r)
    for (Index c = 0; c < cols; ++c)
      value(r, c) = static_cast<T>(read_element<Src>(p, static_cast<std::uint64_t>(r * cols + c)));
}

// --- visiting a model -----------------------------------------------------------------------------

/// A model tensor's shapes: torch's (written by save, expected by load) and, when it differs, the
/// 2-D matrix the layer stores (also accepted by load).
struct TensorShape {
  Index rows = 1, cols = 1;
  std::vector<std::int64_t> torch;   ///< [] for an integer buffer, [R] for a vector, [R, C], or the layer's TorchShape
  std::vector<std::int64_t> stored;  ///< [R, C] when torch's shape is not 2-D, else empty
};
template <class V>
TensorShape shape_of(const V& value, const TorchShape* layer_shape) {
  TensorShape s;
  if constexpr (!std::is_integral_v<V>) {
    s.rows = value.rows();
    s.cols = value.cols();
    if (layer_shape) {
      for (std::size_t d = 0; d < layer_shape->rank; ++d) s.torch.push_back(layer_shape->dims[d]);
      if (layer_shape->rank != 2) s.stored = {s.rows, s.cols};
    } else if constexpr (V::ColsAtCompileTime == 1) {
      s.torch = {s.rows};
    } else {
      s.torch = {s.rows, s.cols};
    }
  }
  return s;
}

/// The visitor handed to for_each_parameter: takes the layer's TorchShape when it passes one.
template <class F>
struct ParameterVisitor {
  F& f;
  template <class V, class G>
  void operator()(std::string_view name, V& value, G&) const {
    f(name, value, shape_of(value, nullptr));
  }
  template <class V, class G>
  void operator()(std::string_view name, V& value, G&, const TorchShape& shape) const {
    f(name, value, shape_of(value, &shape));
  }
};

/// Calls f(name, value, TensorShape) on every parameter, then (with `buffers`) every buffer (value:
/// an Eigen matrix or an integer).
template <class Model, class F>
void visit_tensors(Model& model, F&& f, bool buffers = true) {
  model.for_each_parameter(ParameterVisitor<F>{f});
  if (!buffers) return;
  auto buffer = [&](std::string_view name, auto& value) { f(name, value, shape_of(value, nullptr)); };
  resblocks::detail::visit_buffers(model, buffer, ParameterName{});
}

}  // namespace detail::safetensors

/// Writes every parameter and buffer of `model` to `path` in the safetensors format (see the file
/// comment for names, dtypes and shapes; `__metadata__` is {"format": "pt"}). The file is written
/// to a temporary file beside the real target (a symlink is followed and keeps pointing at the new
/// file), with the old file's permissions (a new file: 0666 less the umask), synced to disk and
/// renamed over it, then the directory is synced: `path` never holds a partial file, and a power
/// loss after the call returns cannot lose it. Throws std::runtime_error naming the path on any
/// failure (the temporary file is removed, the old file kept), std::invalid_argument when two
/// tensors share a name.
/// \param model the layer or network to save
/// \param path the file to write or replace
/// \throws std::runtime_error naming the path on any failure to write
/// \throws std::invalid_argument when two tensors share a name
template <class Model>
void save_safetensors(Model& model, const std::string& path) {
  namespace st = detail::safetensors;
  struct Out {
    std::string name;
    std::string_view dtype;
    std::vector<std::int64_t> shape;
    std::string bytes;
  };
  std::vector<Out> tensors;
  st::visit_tensors(model, [&](std::string_view name, auto& value, const st::TensorShape& s) {
    using V = std::remove_cvref_t<decltype(value)>;
    Out t;
    t.name = std::string(name);
    t.shape = s.torch;
    if constexpr (std::is_integral_v<V>) {
      t.dtype = st::dtype_of<std::int64_t>();
      st::put(t.bytes, static_cast<std::int64_t>(value));
    } else {
      using T = typename V::Scalar;
      t.dtype = st::dtype_of<T>();
      t.bytes.reserve(static_cast<std::size_t>(value.size()) * sizeof(T));
      for (Index r = 0; r < value.rows(); ++r)  // row-major, as torch
        for (Index c = 0; c < value.cols(); ++c) st::put(t.bytes, static_cast<T>(value(r, c)));
    }
    tensors.push_back(std::move(t));
  });

  // Data: wider dtypes first, then by name (so every tensor is aligned to its element size, the
  // header being padded to a multiple of 8); the JSON lists the names in sorted order.
  std::vector<std::size_t> data_order(tensors.size());
  for (std::size_t i = 0; i < data_order.size(); ++i) data_order[i] = i;
  std::sort(data_order.begin(), data_order.end(), [&](std::size_t a, std::size_t b) {
    const std::size_t sa = st::dtype_size(tensors[a].dtype), sb = st::dtype_size(tensors[b].dtype);
    return sa != sb ? sa > sb : tensors[a].name < tensors[b].name;
  });
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> offsets;
  std::uint64_t data_bytes = 0;
  for (const std::size_t i : data_order) {
    const Out& t = tensors[i];
    if (t.name == "__metadata__" || !offsets.emplace(t.name, std::pair{data_bytes, data_bytes + t.bytes.size()}).second)
      throw std::invalid_argument("save_safetensors: '" + path + "': the model has two tensors named '" + t.name +
                                  "' (or one named __metadata__)");
    data_bytes += t.bytes.size();
  }
  std::vector<std::size_t> name_order = data_order;
  std::sort(name_order.begin(), name_order.end(),
            [&](std::size_t a, std::size_t b) { return tensors[a].name < tensors[b].name; });
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  for (const std::size_t i : name_order) {
    const Out& t = tensors[i];
    const auto [begin, end] = offsets.at(t.name);
    // One append per piece: GCC 12 warns falsely (-Wrestrict) on chained `"…" + std::string` at -O3.
    header += ',';
    header += resblocks::detail::json_quote(t.name);
    header += ":{\"dtype\":\"";
    header += t.dtype;
    header += "\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d) header += ',';
      header += std::to_string(t.shape[d]);
    }
    header += "],\"data_offsets\":[";
    header += std::to_string(begin);
    header += ',';
    header += std::to_string(end);
    header += "]}";
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string length;
  st::put(length, static_cast<std::uint64_t>(header.size()));

  // A temporary file beside the (symlink-resolved) target, synced and renamed over it once complete.
  detail::atomic_replace(path, "save_safetensors", [&](auto&& sink) {
    sink(length.data(), length.size());
    sink(header.data(), header.size());
    for (const std::size_t i : data_order) sink(tensors[i].bytes.data(), tensors[i].bytes.size());
  });
}

/// \brief What load_safetensors requires of the file.
struct SafetensorsOptions {
  /// Tensors in the file that the model does not have are an error (false: they are ignored).
  bool strict = true;
  /// Load the parameters only: buffers (BatchNorm's running statistics and `num_batches_tracked`) are
  /// neither required nor read, and keep their values; the file's entries of those names are ignored.
  bool parameters_only = false;
  /// Accept `num_batches_tracked` stored as F32 or F64 (a state_dict cast to float as a whole) when
  /// its value is an exact integer; false: only I64.
  bool float_counters = true;
};

namespace detail::safetensors {

/// Checks a file of `size` bytes against the 8-byte header length at `prefix` (nullptr: only that
/// the file holds 8 bytes); returns the header length. `fail(message)` throws.
template <class Fail>
std::uint64_t check_length_prefix(std::uint64_t size, const unsigned char* prefix, Fail&& fail) {
  if (size < 8) fail("the file has " + std::to_string(size) + " bytes, fewer than the 8 of the header length");
  if (prefix == nullptr) return 0;
  const std::uint64_t header_bytes = get_bits<std::uint64_t>(prefix);
  if (header_bytes > size - 8)
    fail("the header length " + std::to_string(header_bytes) + " is larger than the " + std::to_string(size - 8) +
         " bytes that follow it (truncated or not a safetensors file)");
  if (header_bytes > k_max_header_bytes)
    fail("the header length " + std::to_string(header_bytes) + " exceeds the 100 MB limit");
  return header_bytes;
}

/// The core of load_safetensors: parses `header` against a data section of `data_bytes` bytes, checks
/// every tensor of `model` against it, and only then calls `fetch_data()` (a pointer to the data
/// section), checks the values that must be integers (counters stored as floats) and copies;
/// `fail(message)` throws. The model is unchanged unless everything fits.
template <class Model, class FetchData, class Fail>
void load_checked(Model& model, std::string_view header, std::uint64_t data_bytes, FetchData&& fetch_data,
                  const SafetensorsOptions& options, Fail&& fail) {
  namespace st = detail::safetensors;
  std::vector<st::Entry> entries;
  try {
    entries = st::parse_header(header, data_bytes);
  } catch (const st::FormatError& e) {
    fail(e.what());
  }
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < entries.size(); ++i) index.emplace(entries[i].name, i);

  // Check the model's tensors against the entries; collect every problem before failing.
  std::vector<std::string> problems, missing;
  std::map<std::string, int> seen;
  std::vector<const st::Entry*> float_counters;  // integer buffers stored as F32/F64, in visit order
  st::visit_tensors(
      model,
      [&](std::string_view view, const auto& value, const st::TensorShape& s) {  // reads only
        using V = std::remove_cvref_t<decltype(value)>;
        const std::string name(view);
        if (seen[name]++ == 1) problems.push_back("the model has two tensors named '" + name + "'");
        const auto it = index.find(name);
        if (it == index.end()) {
          missing.push_back(name);
          return;
        }
        st::Entry& e = entries[it->second];
        e.used = true;
        const std::string what = "tensor '" + name + "': ";
        const bool float_dtype = e.dtype == "F32" || e.dtype == "F64";
        if constexpr (std::is_integral_v<V>) {
          if (e.dtype != "I64" && !(options.float_counters && float_dtype))
            problems.push_back(what + "dtype " + e.dtype + ", expected I64" +
                               (float_dtype ? " (or allow F32/F64 with SafetensorsOptions::float_counters)" : ""));
        } else if (!float_dtype) {
          problems.push_back(what + "dtype " + e.dtype + ", expected F32 or F64");
        }
        if (e.shape != s.torch && (s.stored.empty() || e.shape != s.stored)) {
          problems.push_back(what + "shape " + st::shape_text(e.shape) + ", expected " + st::shape_text(s.torch) +
                             (s.stored.empty() ? std::string() : " (or the stored " + st::shape_text(s.stored) + ")"));
          return;
        }
        if constexpr (std::is_integral_v<V>) {
          if (float_dtype && options.float_counters) float_counters.push_back(&e);  // value checked once read
        }
      },
      !options.parameters_only);
  auto join = [](const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  if (!missing.empty())
    problems.insert(problems.begin(),
                    "missing tensors: " + join(missing) +
                        (options.parameters_only ? std::string()
                                                 : std::string(" (parameters only: set "
                                                               "SafetensorsOptions::parameters_only)")));
  if (options.strict) {
    if (options.parameters_only) {  // the file's buffers are expected, just not read
      auto buffer = [&](std::string_view view, const auto&) {
        const auto it = index.find(std::string(view));
        if (it != index.end()) entries[it->second].used = true;
      };
      resblocks::detail::visit_buffers(model, buffer, ParameterName{});
    }
    std::vector<std::string> unexpected;
    for (const st::Entry& e : entries)
      if (!e.used) unexpected.push_back(e.name);
    if (!unexpected.empty())
      problems.push_back("unexpected tensors (not in the model; load with strict = false to ignore them): " +
                         join(unexpected));
  }
  auto fail_all = [&] {
    std::string all;
    for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
    fail(all);
  };
  if (!problems.empty()) fail_all();

  // Everything fits: fetch the data, check the float counters' values, copy (row-major file order into R×C).
  const unsigned char* data = fetch_data();
  std::vector<std::int64_t> counters;
  for (const st::Entry* e : float_counters) {  // one element, by the shape check
    const unsigned char* p = data + e->begin;
    const double v = e->dtype == "F32" ? double(st::read_element<float>(p, 0)) : st::read_element<double>(p, 0);
    if (!(std::isfinite(v) && v == std::trunc(v) && v >= -0x1p63 && v < 0x1p63))
      problems.push_back("tensor '" + e->name + "': value " + std::to_string(v) + " in dtype " + e->dtype +
                         " is not an integer (expected I64, or an exactly integral float)");
    else
      counters.push_back(static_cast<std::int64_t>(v));
  }
  if (!problems.empty()) fail_all();
  std::size_t counter = 0;
  st::visit_tensors(
      model,
      [&](std::string_view view, auto& value, const st::TensorShape&) {
        using V = std::remove_cvref_t<decltype(value)>;
        const st::Entry& e = entries[index.at(std::string(view))];
        const unsigned char* p = data + e.begin;
        if constexpr (std::is_integral_v<V>) {
          if (e.dtype == "I64")
            value = static_cast<V>(st::read_element<std::int64_t>(p, 0));
          else
            value = static_cast<V>(counters[counter++]);  // checked above
        } else if (e.dtype == "F32") {
          st::copy_row_major<float>(value, p);
        } else {
          st::copy_row_major<double>(value, p);
        }
      },
      !options.parameters_only);
}

}  // namespace detail::safetensors

/// Reads a safetensors image in memory (`file`: the bytes of a file written by save_safetensors, or
/// of PyTorch's state_dict in safetensors form; e.g. weights embedded in the program) into `model`'s
/// parameters and buffers; `source` names it in messages. Every tensor of the model must be in it
/// with dtype F32 or F64 (converted to the model's scalar; I64 for `num_batches_tracked`, or see
/// `float_counters`) and torch's shape (or the 2-D shape the layer stores; see the file comment).
/// Options: see SafetensorsOptions (defaults: strict, parameters and buffers).
///
/// Everything is validated first (header length, JSON syntax, every entry's dtype, shape and
/// data_offsets, no overlaps, then the model's tensors); only then are values copied, so on any
/// error (std::runtime_error naming the source and every problem found) the model is unchanged.
/// \param model the layer or network to load into
/// \param file the bytes of a safetensors file
/// \param options strictness, parameters only, float counters
/// \param source names the bytes in messages
/// \throws std::runtime_error naming the source and every problem found, the model unchanged
template <class Model>
void load_safetensors(Model& model, std::span<const std::byte> file, const SafetensorsOptions& options = {},
                      std::string_view source = "<memory>") {
  namespace st = detail::safetensors;
  const std::string path(source);
  auto fail = [&](const std::string& what) { throw std::runtime_error("load_safetensors: '" + path + "': " + what); };

  st::check_length_prefix(file.size(), nullptr, fail);
  const auto* bytes = reinterpret_cast<const unsigned char*>(file.data());
  const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
  const std::uint64_t header_bytes = st::check_length_prefix(file.size(), bytes, fail);
  const std::uint64_t data_bytes = file.size() - 8 - header_bytes;
  st::load_checked(
      model, text.substr(8, static_cast<std::size_t>(header_bytes)), data_bytes,
      [&] { return bytes + 8 + header_bytes; }, options, fail);
}

/// \brief load_safetensors from memory with only SafetensorsOptions::strict set.
/// \param model the layer or network to load into
/// \param file the bytes of a safetensors file
/// \param strict tensors the model does not have are an error (false: ignored)
/// \param source names the bytes in messages
/// \throws std::runtime_error naming the source and every problem found, the model unchanged
template <class Model>
void load_safetensors(Model& model, std::span<const std::byte> file, bool strict,
                      std::string_view source = "<memory>") {
  load_safetensors(model, file, SafetensorsOptions{.strict = strict}, source);
}

/// load_safetensors from the file `path` (written by save_safetensors, or PyTorch's state_dict in
/// safetensors form; see above). The file is checked before it is read: it must be a regular file
/// (a directory, a FIFO or a device is refused without opening it); the 8-byte length and the header
/// are read and validated against the file's size first, and only then the data, so a corrupt or
/// foreign file fails naming `path` without reading (or allocating) its size.
/// \param model the layer or network to load into
/// \param path the safetensors file
/// \param options strictness, parameters only, float counters
/// \throws std::runtime_error naming `path` when the file cannot be read or fails validation, the model unchanged
template <class Model>
void load_safetensors(Model& model, const std::string& path, const SafetensorsOptions& options = {}) {
  namespace st = detail::safetensors;
  detail::CheckedFile in(path, "load_safetensors");
  const std::uint64_t size = in.size();
  auto fail = [&](const std::string& what) { in.fail(what); };
  st::check_length_prefix(size, nullptr, fail);
  unsigned char length[8] = {};
  in.read(length, 8);
  const std::uint64_t header_bytes = st::check_length_prefix(size, length, fail);
  const std::string header = in.read_string(header_bytes);
  std::string data;  // read only once the header and the model's tensors are checked
  st::load_checked(
      model, header, size - 8 - header_bytes,
      [&] {
        data = in.read_string(size - 8 - header_bytes);
        return reinterpret_cast<const unsigned char*>(data.data());
      },
      options, fail);
}

/// \brief load_safetensors with only SafetensorsOptions::strict set (the signature before the options).
/// \param model the layer or network to load into
/// \param path the safetensors file
/// \param strict tensors the model does not have are an error (false: ignored)
/// \throws std::runtime_error naming `path` when the file cannot be read or fails validation, the model unchanged
template <class Model>
void load_safetensors(Model& model, const std::string& path, bool strict) {
  load_safetensors(model, path, SafetensorsOptions{.strict = strict});
}

}  // namespace resblocks
