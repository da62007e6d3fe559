#pragma once
/// \file
/// \brief read_idx: the IDX array format of MNIST and Fashion-MNIST, gzipped or not (needs zlib:
/// link resblocks::io).

#include "resblocks/core/types.hpp"
#include "resblocks/io/detail/file_io.hpp"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

namespace resblocks {

/// Element type of an IDX file: the third byte of its magic number.
enum class IdxType : std::uint8_t { u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E };

/// \brief Bytes per element of `type`, or 0 for a code that is not an IdxType.
/// \param type the element type
/// \returns 1, 2, 4 or 8, or 0
[[nodiscard]] constexpr Index idx_element_size(IdxType type) noexcept {
  switch (type) {
    case IdxType::u8:
    case IdxType::i8:
      return 1;
    case IdxType::i16:
      return 2;
    case IdxType::i32:
    case IdxType::f32:
      return 4;
    case IdxType::f64:
      return 8;
  }
  return 0;
}

/// \brief An IDX array as read from the file: element type, dimensions (outermost first) and the
/// raw big-endian payload, row-major (the last dimension varies fastest).
struct IdxArray {
  IdxType type = IdxType::u8;
  std::vector<Index> dims;
  std::vector<unsigned char> data;  ///< raw big-endian payload, size() * idx_element_size(type) bytes

  /// \brief Number of elements: the product of dims (0 when there are none).
  /// \returns the element count
  [[nodiscard]] Index size() const noexcept {
    if (dims.empty()) return 0;
    Index n = 1;
    for (const Index d : dims) n *= d;
    return n;
  }

  /// Element `flat` (row-major index) decoded to host order and converted to T; throws
  /// std::out_of_range outside the array.
  /// \param flat row-major index of the element
  /// \returns the element as T
  /// \throws std::out_of_range when flat is outside the array (or the payload is shorter than the dims say)
  template <class T>
  [[nodiscard]] T at(Index flat) const {
    static_assert(std::is_arithmetic_v<T>, "IdxArray::at<T>: T must be an arithmetic type");
    const Index bytes = idx_element_size(type);
    if (flat < 0 || flat >= size() || static_cast<std::size_t>((flat + 1) * bytes) > data.size())
      throw std::out_of_range("IdxArray::at: element " + std::to_string(flat) + " outside an array of " +
                              std::to_string(size()) + " elements (" + std::to_string(data.size()) + " bytes)");
    const unsigned char* p = data.data() + flat * bytes;
    auto load = [p]<class U>(U) {  // big-endian unsigned integer of sizeof(U) bytes
      U v = 0;
      for (std::size_t i = 0; i < sizeof(U); ++i) v = static_cast<U>((v << 8) | p[i]);
      return v;
    };
    switch (type) {
      case IdxType::u8:
        return static_cast<T>(p[0]);
      case IdxType::i8:
        return static_cast<T>(static_cast<std::int8_t>(p[0]));
      case IdxType::i16:
        return static_cast<T>(static_cast<std::int16_t>(load(std::uint16_t{})));
      case IdxType::i32:
        return static_cast<T>(static_cast<std::int32_t>(load(std::uint32_t{})));
      case IdxType::f32:
        return static_cast<T>(std::bit_cast<float>(load(std::uint32_t{})));
      case IdxType::f64:
        return static_cast<T>(std::bit_cast<double>(load(std::uint64_t{})));
    }
    throw std::logic_error("IdxArray::at: unknown element type");
  }
};

namespace detail {

/// "0x0d": a byte in hex, as IDX type codes are written.
inline std::string hex_byte(unsigned v) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[(v >> 4) & 15] + digits[v & 15];
}

/// \brief A gzFile opened for reading (plain files pass through), closed on destruction; every
/// failure throws std::runtime_error "read_idx: '<path>': <problem>".
class IdxReader {
 public:
  /// Checks first that `path` is a regular file (a directory, FIFO or device is refused unopened).
  explicit IdxReader(const std::string& path) : m_path(path), m_size(regular_file_size(path, "read_idx")) {
    m_file = gzopen(path.c_str(), "rb");
    if (m_file == nullptr) fail("cannot open the file for reading: " + std::generic_category().message(errno));
    gzbuffer(m_file, 1u << 17);
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;
  ~IdxReader() {
    if (m_file != nullptr) gzclose(m_file);
  }

  /// Reads up to `n` bytes into `dst`: fewer only at the end of the (decompressed) data.
  std::size_t read(unsigned char* dst, std::size_t n) {
    std::size_t total = 0;
    while (total < n) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - total, std::size_t{1} << 30));
      const int got = gzread(m_file, dst + total, chunk);
      check_stream();
      if (got <= 0) break;
      total += static_cast<std::size_t>(got);
    }
    return total;
  }

  /// The size of the file on disk (compressed, for a gzipped one).
  [[nodiscard]] std::uint64_t file_size() const noexcept { return m_size; }

  /// True when the file is not gzipped (valid after the first read).
  [[nodiscard]] bool plain() const { return gzdirect(m_file) != 0; }

  /// Closes the file; throws if zlib reports the stream ended badly.
  void close() {
    const int status = gzclose(m_file);
    m_file = nullptr;
    if (status != Z_OK) fail("error closing the gzip stream (zlib status " + std::to_string(status) + ")");
  }

  [[noreturn]] void fail(const std::string& problem) const {
    throw std::runtime_error("read_idx: '" + m_path + "': " + problem);
  }

 private:
  /// Throws on a zlib or I/O error: corrupt deflate data, a CRC or length mismatch, a truncated stream.
  void check_stream() const {
    int errnum = Z_OK;
    const char* message = gzerror(m_file, &errnum);
    if (errnum == Z_OK) return;
    std::string text = message != nullptr ? message : "";
    const std::string prefix = m_path + ": ";  // zlib prefixes its messages with the path
    if (text.rfind(prefix, 0) == 0) text.erase(0, prefix.size());
    if (errnum == Z_ERRNO) fail("read error: " + text);
    fail("corrupt or truncated gzip data (zlib: " + text + ")");
  }

  std::string m_path;
  std::uint64_t m_size = 0;
  gzFile m_file = nullptr;
};

}  // namespace detail

/// Reads an IDX file (MNIST's format), gzip-compressed or not. Throws std::runtime_error naming
/// the path and the problem for a missing, empty, truncated or corrupt file, an unknown type code,
/// bad sizes or bytes left after the payload. Memory grows with the data actually read, so a
/// corrupt header cannot make it allocate the size it declares.
/// \param path the file, `.gz` or not
/// \returns its type, dimensions and payload
/// \throws std::runtime_error for a missing, empty, truncated or corrupt file, an unknown type code, bad sizes
///   or bytes left after the payload
inline IdxArray read_idx(const std::string& path) {
  detail::IdxReader in(path);
  const auto hex = detail::hex_byte;

  unsigned char magic[4] = {};
  const std::size_t got_magic = in.read(magic, 4);
  if (got_magic == 0) in.fail("empty file");
  if (got_magic < 4) in.fail("header shorter than 4 bytes (the file holds " + std::to_string(got_magic) + ")");
  if (magic[0] != 0 || magic[1] != 0)
    in.fail("bad magic number: the first two bytes are " + hex(magic[0]) + " " + hex(magic[1]) +
            ", an IDX file starts with two zero bytes");
  IdxArray array;
  array.type = static_cast<IdxType>(magic[2]);
  const Index element = idx_element_size(array.type);
  if (element == 0)
    in.fail("unknown data type code " + hex(magic[2]) + " (IDX knows 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e)");
  const unsigned rank = magic[3];
  if (rank == 0) in.fail("0 dimensions declared");

  std::vector<unsigned char> sizes(4 * std::size_t{rank});
  const std::size_t got_sizes = in.read(sizes.data(), sizes.size());
  if (got_sizes < sizes.size())
    in.fail("header truncated: " + std::to_string(rank) + " dimensions need " + std::to_string(sizes.size()) +
            " bytes of sizes, the file holds " + std::to_string(got_sizes));
  // IDX sizes are 32-bit big-endian; more than 2^31 - 1 in one dimension is corruption.
  constexpr std::uint64_t max_dim = std::numeric_limits<std::int32_t>::max();
  constexpr std::uint64_t max_bytes = std::numeric_limits<Index>::max() / 2;
  std::uint64_t bytes = static_cast<std::uint64_t>(element);
  for (std::size_t i = 0; i < rank; ++i) {
    const unsigned char* b = sizes.data() + 4 * i;
    const std::uint64_t d =
        (std::uint64_t{b[0]} << 24) | (std::uint64_t{b[1]} << 16) | (std::uint64_t{b[2]} << 8) | b[3];
    if (d == 0) in.fail("dimension " + std::to_string(i) + " is 0");
    if (d > max_dim) in.fail("dimension " + std::to_string(i) + " is " + std::to_string(d) + ", absurdly large");
    if (bytes > max_bytes / d) in.fail("size overflow: the dimensions declare more than 2^62 bytes of data");
    bytes *= d;
    array.dims.push_back(static_cast<Index>(d));
  }

  // The payload: a plain file is checked against its size and read at once; a gzipped one grows
  // geometrically (from 1 MiB) as data arrives, capped at the declared size.
  const auto declared = static_cast<std::size_t>(bytes);
  const std::size_t header = 4 + sizes.size();
  std::size_t have = 0;
  bool sized = false;  // a plain file at least as long as the header says: allocate the payload at once
  if (in.plain()) {
    const std::uint64_t file_size = in.file_size();
    if (file_size < header + declared)
      in.fail("truncated: expected " + std::to_string(declared) + " bytes of data, got " +
              std::to_string(file_size - header));
    sized = true;
  }
  std::vector<unsigned char>& data = array.data;
  while (have < declared) {
    if (have == data.size()) {
      const std::size_t next = sized ? declared : std::min(declared, std::max(2 * have, std::size_t{1} << 20));
      try {
        data.reserve(next);  // exactly next: no doubling past the declared size
        data.resize(next);
      } catch (const std::bad_alloc&) {
        in.fail("not enough memory for the " + std::to_string(declared) + " bytes of data the header declares");
      }
    }
    const std::size_t got = in.read(data.data() + have, data.size() - have);
    have += got;
    if (have < data.size()) break;  // end of the data
  }
  if (have < declared)
    in.fail("truncated: expected " + std::to_string(declared) + " bytes of data, got " + std::to_string(have));

  // Read to the end: this also verifies the gzip CRC and length.
  std::size_t trailing = 0;
  unsigned char rest[4096];
  for (std::size_t got = 0; (got = in.read(rest, sizeof rest)) > 0;) trailing += got;
  if (trailing > 0)
    in.fail(std::to_string(trailing) + " trailing bytes after the payload (the dimensions declare " +
            std::to_string(declared) + " bytes of data)");
  in.close();
  return array;
}

}  // namespace resblocks
