#include "io/idx_test_files.hpp"
#include "support/catch.hpp"

#include <resblocks/io/idx_file.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace resblocks;
using rbtest::Bytes;
using rbtest::idx_bytes;
using rbtest::require_runtime_error;

namespace {

void require_idx_error(const std::string& path, const std::string& problem) {
  require_runtime_error([&] { (void)read_idx(path); }, {path, problem});
}

/// Writes `bytes` as `name` and as `name.gz`; returns both paths.
std::vector<std::string> write_both(const rbtest::TempDir& dir, const std::string& name, const Bytes& bytes) {
  rbtest::write_raw(dir.file(name), bytes);
  rbtest::write_gz(dir.file(name + ".gz"), bytes);
  return {dir.file(name), dir.file(name + ".gz")};
}

}  // namespace

TEST_CASE("read_idx: unsigned bytes round-trip, raw and gzipped", "[io][idx]") {
  rbtest::TempDir dir;
  Bytes payload;
  for (int i = 0; i < 2 * 3 * 4; ++i) payload.push_back(static_cast<unsigned char>(7 * i + 200));  // wraps past 255
  for (const auto& path : write_both(dir, "images-idx3-ubyte", idx_bytes(0x08, {2, 3, 4}, payload))) {
    INFO(path);
    const IdxArray a = read_idx(path);
    REQUIRE(a.type == IdxType::u8);
    REQUIRE(a.dims == std::vector<Index>{2, 3, 4});
    REQUIRE(a.size() == 24);
    REQUIRE(a.data == payload);
    REQUIRE(a.at<int>(0) == 200);
    REQUIRE(a.at<int>(8) == (7 * 8 + 200) % 256);
    REQUIRE(a.at<int>(23) == (7 * 23 + 200) % 256);
    REQUIRE_THROWS_AS(a.at<int>(24), std::out_of_range);
    REQUIRE_THROWS_AS(a.at<int>(-1), std::out_of_range);
  }
}

TEST_CASE("read_idx: every element type decodes big-endian values", "[io][idx]") {
  rbtest::TempDir dir;
  SECTION("i8") {
    const auto path = write_both(dir, "i8", idx_bytes(0x09, {3}, {0x7f, 0x80, 0xfe}))[1];
    const IdxArray a = read_idx(path);
    REQUIRE(a.type == IdxType::i8);
    REQUIRE(a.at<int>(0) == 127);
    REQUIRE(a.at<int>(1) == -128);
    REQUIRE(a.at<int>(2) == -2);
  }
  SECTION("i16") {
    const auto path = write_both(dir, "i16", idx_bytes(0x0B, {2}, {0x12, 0x34, 0xff, 0xfe}))[0];
    const IdxArray a = read_idx(path);
    REQUIRE(a.type == IdxType::i16);
    REQUIRE(a.at<int>(0) == 0x1234);
    REQUIRE(a.at<int>(1) == -2);
  }
  SECTION("i32") {
    const auto path =
        write_both(dir, "i32", idx_bytes(0x0C, {1, 2}, {0x00, 0x01, 0x11, 0x70, 0xff, 0xfe, 0xee, 0x90}))[1];
    const IdxArray a = read_idx(path);
    REQUIRE(a.type == IdxType::i32);
    REQUIRE(a.dims == std::vector<Index>{1, 2});
    REQUIRE(a.at<long>(0) == 70000);
    REQUIRE(a.at<long>(1) == -70000);
    REQUIRE(a.at<double>(1) == -70000.0);
  }
  SECTION("f32") {  // 1.5f = 0x3fc00000, -2.25f = 0xc0100000
    const auto path = write_both(dir, "f32", idx_bytes(0x0D, {2}, {0x3f, 0xc0, 0, 0, 0xc0, 0x10, 0, 0}))[0];
    const IdxArray a = read_idx(path);
    REQUIRE(a.type == IdxType::f32);
    REQUIRE(a.at<float>(0) == 1.5f);
    REQUIRE(a.at<double>(1) == -2.25);
  }
  SECTION("f64") {  // 1.5 = 0x3ff8..., -2.25 = 0xc002...
    const auto path =
        write_both(dir, "f64", idx_bytes(0x0E, {2}, {0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0, 0x02, 0, 0, 0, 0, 0, 0}))[1];
    const IdxArray a = read_idx(path);
    REQUIRE(a.type == IdxType::f64);
    REQUIRE(a.at<double>(0) == 1.5);
    REQUIRE(a.at<double>(1) == -2.25);
    REQUIRE(a.at<int>(1) == -2);
  }
}

TEST_CASE("read_idx: a payload larger than the first read chunk round-trips gzipped", "[io][idx]") {
  rbtest::TempDir dir;
  Bytes payload(3u << 20);  // 3 MiB: the buffer grows from 1 MiB
  std::uint32_t state = 12345;
  for (auto& b : payload) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<unsigned char>(state >> 24);
  }
  for (const auto& path : write_both(dir, "big", idx_bytes(0x08, {3, 1024, 1024}, payload))) {
    const IdxArray a = read_idx(path);
    REQUIRE(a.dims == std::vector<Index>{3, 1024, 1024});
    REQUIRE(a.data == payload);
  }
}

TEST_CASE("read_idx: missing, unreadable, directory and empty files", "[io][idx][error]") {
  rbtest::TempDir dir;
  require_idx_error(dir.file("nothing-here"), "no such file");
  require_idx_error(dir.path().string(), "is a directory");
  for (const auto& path : write_both(dir, "empty", {})) require_idx_error(path, "empty file");

  const std::string locked = dir.file("locked");
  rbtest::write_raw(locked, idx_bytes(0x08, {1}, {1}));
  std::filesystem::permissions(locked, std::filesystem::perms::none);
  if (std::ifstream(locked).is_open())
    WARN("running with the rights to read a mode-000 file (root?): the unreadable-file case is not checked");
  else
    require_idx_error(locked, "cannot open");
}

TEST_CASE("read_idx: a FIFO is refused without blocking", "[io][idx][error]") {
  rbtest::TempDir dir;
  const std::string fifo = dir.file("pipe");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  require_idx_error(fifo, "FIFO");
}

TEST_CASE("read_idx: bad headers", "[io][idx][error]") {
  rbtest::TempDir dir;
  for (const auto& path : write_both(dir, "short", {0, 0, 8})) require_idx_error(path, "header shorter than 4 bytes");
  for (const auto& path : write_both(dir, "magic", {0, 1, 8, 1, 0, 0, 0, 1, 5}))
    require_idx_error(path, "bad magic number");
  for (const auto& path : write_both(dir, "type", idx_bytes(0x07, {1}, {5})))
    require_idx_error(path, "unknown data type code 0x07");
  for (const auto& path : write_both(dir, "rank0", idx_bytes(0x08, {}, {5}))) require_idx_error(path, "0 dimensions");
  for (const auto& path : write_both(dir, "zero", idx_bytes(0x08, {2, 0, 3}, {})))
    require_idx_error(path, "dimension 1 is 0");
  for (const auto& path : write_both(dir, "absurd", idx_bytes(0x08, {0x80000000u, 1}, {1})))
    require_idx_error(path, "dimension 0 is 2147483648, absurdly large");
  for (const auto& path : write_both(dir, "overflow", idx_bytes(0x0E, {0x7fffffff, 0x7fffffff, 0x7fffffff}, {1})))
    require_idx_error(path, "size overflow");
  Bytes cut = idx_bytes(0x08, {60000, 28, 28}, {});
  cut.resize(4 + 7);  // two sizes and a bit of the third
  for (const auto& path : write_both(dir, "dims", cut)) require_idx_error(path, "header truncated");
}

TEST_CASE("read_idx: truncated payload and trailing bytes", "[io][idx][error]") {
  rbtest::TempDir dir;
  for (const auto& path : write_both(dir, "short", idx_bytes(0x0B, {2, 3}, {1, 2, 3, 4, 5, 6, 7})))
    require_idx_error(path, "truncated: expected 12 bytes of data, got 7");
  for (const auto& path : write_both(dir, "trailing", idx_bytes(0x08, {2, 2}, {1, 2, 3, 4, 5, 6})))
    require_idx_error(path, "2 trailing bytes after the payload");
}

TEST_CASE("read_idx: a header declaring exabytes is not allocated", "[io][idx][error]") {
  // (2^31 - 1)^2 bytes declared, 3 present: an allocation of the declared size would throw
  // std::bad_alloc (or take the machine down) instead of reporting the truncation.
  rbtest::TempDir dir;
  for (const auto& path : write_both(dir, "huge", idx_bytes(0x08, {0x7fffffff, 0x7fffffff}, {1, 2, 3})))
    require_idx_error(path, "truncated: expected 4611686014132420609 bytes of data, got 3");
}

TEST_CASE("read_idx: corrupt, truncated and CRC-damaged gzip streams", "[io][idx][error]") {
  rbtest::TempDir dir;
  Bytes payload(5000);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<unsigned char>((i * i) % 251);
  const std::string good = dir.file("good.gz");
  rbtest::write_gz(good, idx_bytes(0x08, {50, 100}, payload));
  REQUIRE(read_idx(good).data == payload);
  const Bytes gz = rbtest::read_raw(good);
  REQUIRE(gz.size() > 30);

  SECTION("CRC error") {  // the gzip trailer: CRC-32 then the length, little-endian
    Bytes bad = gz;
    bad[bad.size() - 8] ^= 0x01;
    rbtest::write_raw(dir.file("crc.gz"), bad);
    require_idx_error(dir.file("crc.gz"), "incorrect data check");
  }
  SECTION("length error") {
    Bytes bad = gz;
    bad[bad.size() - 4] ^= 0x01;
    rbtest::write_raw(dir.file("length.gz"), bad);
    require_idx_error(dir.file("length.gz"), "gzip");
  }
  SECTION("truncated stream") {
    Bytes bad(gz.begin(), gz.end() - 12);
    rbtest::write_raw(dir.file("cut.gz"), bad);
    require_idx_error(dir.file("cut.gz"), "unexpected end of file");
  }
  SECTION("corrupt deflate data") {
    Bytes bad = gz;
    for (std::size_t i = 12; i < 24; ++i) bad[i] = 0xff;  // just after the 10-byte gzip header
    rbtest::write_raw(dir.file("corrupt.gz"), bad);
    require_idx_error(dir.file("corrupt.gz"), "corrupt or truncated gzip data");
  }
}
