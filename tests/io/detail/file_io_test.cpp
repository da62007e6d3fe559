// resblocks/io/detail/file_io.hpp: atomic, durable replacement (fsync of the file and of its
// directory, counted by an fsync interposed in this executable), output-path checks, checked reads.
#include "io/idx_test_files.hpp"
#include "support/catch.hpp"

#include <resblocks/io/detail/file_io.hpp>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace {
std::atomic<int> g_file_syncs{0}, g_dir_syncs{0};
}  // namespace

// Counts fsync calls on regular files and on directories, then forwards to the C library's.
extern "C" int fsync(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) == 0) (S_ISDIR(st.st_mode) ? g_dir_syncs : g_file_syncs).fetch_add(1);
  using Fsync = int (*)(int);
  static const auto real = reinterpret_cast<Fsync>(::dlsym(RTLD_NEXT, "fsync"));
  return real != nullptr ? real(fd) : 0;
}

using resblocks::detail::atomic_replace;
using resblocks::detail::check_writable;
namespace fs = std::filesystem;

TEST_CASE("file_io: atomic_replace syncs the file before the rename and the directory after", "[io][file_io]") {
  rbtest::TempDir dir;
  const std::string path = dir.file("out.bin");
  g_file_syncs = 0;
  g_dir_syncs = 0;
  atomic_replace(path, "test", [](auto&& sink) { sink("hello", 5); });
  REQUIRE(g_file_syncs.load() >= 1);
  REQUIRE(g_dir_syncs.load() >= 1);
  REQUIRE(rbtest::read_raw(path) == rbtest::Bytes{'h', 'e', 'l', 'l', 'o'});
}

TEST_CASE("file_io: atomic_replace refuses a directory target and keeps it", "[io][file_io]") {
  rbtest::TempDir dir;
  fs::create_directory(dir.path() / "sub");
  REQUIRE_THROWS_WITH(atomic_replace(dir.file("sub"), "test", [](auto&& sink) { sink("x", 1); }),
                      rbtest::contains("is a directory"));
  REQUIRE(fs::is_directory(dir.path() / "sub"));
  REQUIRE(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("file_io: check_writable names the problem and creates nothing", "[io][file_io]") {
  rbtest::TempDir dir;
  check_writable(dir.file("fine.bin"), "test");
  REQUIRE(fs::is_empty(dir.path()));
  REQUIRE_THROWS_WITH(check_writable(dir.file("no/such/dir/x.bin"), "--weights"),
                      rbtest::contains("--weights") && rbtest::contains("the directory does not exist"));
  REQUIRE_THROWS_WITH(check_writable(dir.path().string(), "--plot"), rbtest::contains("is a directory"));
  if (::geteuid() != 0) {  // root may write anywhere
    fs::create_directory(dir.path() / "ro");
    fs::permissions(dir.path() / "ro", fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
    REQUIRE_THROWS_WITH(check_writable(dir.file("ro/x.bin"), "--csv"), rbtest::contains("cannot write there"));
    fs::permissions(dir.path() / "ro", fs::perms::owner_all, fs::perm_options::replace);
  }
}

TEST_CASE("file_io: CheckedFile refuses FIFOs and directories without opening them", "[io][file_io]") {
  rbtest::TempDir dir;
  const std::string fifo = dir.file("pipe");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE_THROWS_WITH(resblocks::detail::CheckedFile(fifo, "reader"),
                      rbtest::contains("reader: '" + fifo + "'") && rbtest::contains("FIFO"));
  REQUIRE_THROWS_WITH(resblocks::detail::CheckedFile(dir.path().string(), "reader"),
                      rbtest::contains("is a directory"));
  rbtest::write_raw(dir.file("short"), {1, 2, 3});
  resblocks::detail::CheckedFile f(dir.file("short"), "reader");
  REQUIRE(f.size() == 3);
  REQUIRE_THROWS_WITH(f.read_string(4), rbtest::contains("ended after 3 of 4 bytes"));
}
