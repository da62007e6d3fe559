#pragma once
// Test helpers for the IDX reader: a scratch directory, and IDX files written byte by byte (raw or
// through zlib's gzwrite), independently of the reader.
#include "support/catch.hpp"

#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace rbtest {

using Bytes = std::vector<unsigned char>;

/// A fresh directory under the system temporary directory, removed with its files on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    const auto tick = std::chrono::steady_clock::now().time_since_epoch().count();
    for (int attempt = 0; attempt < 100; ++attempt) {
      m_path = std::filesystem::temp_directory_path() / ("resblocks_io_test_" + std::to_string(tick) + "_" +
                                                         std::to_string(rd()) + "_" + std::to_string(attempt));
      if (std::filesystem::create_directory(m_path)) return;
    }
    throw std::runtime_error("TempDir: cannot create a scratch directory");
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  /// Path of `name` inside the directory.
  std::string file(const std::string& name) const { return (m_path / name).string(); }
  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
};

/// Appends `v` as `bytes` big-endian bytes.
inline void put_be(Bytes& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

/// An IDX file: 0, 0, type code, rank, the sizes (32-bit big-endian), then `payload` as is.
inline Bytes idx_bytes(unsigned type_code, const std::vector<std::uint64_t>& dims, const Bytes& payload) {
  Bytes out{0, 0, static_cast<unsigned char>(type_code), static_cast<unsigned char>(dims.size())};
  for (const auto d : dims) put_be(out, d, 4);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

inline void write_raw(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

/// Writes `bytes` gzip-compressed (zlib's gzwrite).
inline void write_gz(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty())
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

inline Bytes read_raw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

/// Requires that f() throws a std::runtime_error whose message contains every one of `parts`.
inline void require_runtime_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    INFO("message: " << message);
    for (const auto& part : parts) {
      INFO("expected to contain: " << part);
      CHECK(message.find(part) != std::string::npos);
    }
    return;
  } catch (const std::exception& e) {
    FAIL("threw something else than std::runtime_error: " << e.what());
  }
  FAIL("did not throw; expected an error containing " << (parts.empty() ? std::string() : parts.front()));
}

}  // namespace rbtest
