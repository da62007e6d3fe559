#pragma once
/// \file
/// \brief File safety shared by the readers and writers of resblocks/io: checked opening (a regular
/// file, its size known before anything is allocated), and atomic, durable replacement (a temporary
/// file beside the real target of a symlink, the old file's permissions, fsync of the file and of
/// its directory, then rename).

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#if defined(_WIN32)
#include <fstream>
#else
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace resblocks::detail {

/// The error text of errno value `e`.
inline std::string errno_text(int e) { return std::generic_category().message(e); }

/// What kind of file-system object `status` is, for messages ("a directory", "a FIFO", ...).
inline std::string file_kind(const std::filesystem::file_status& status) {
  namespace fs = std::filesystem;
  switch (status.type()) {
    case fs::file_type::directory:
      return "a directory";
    case fs::file_type::fifo:
      return "a FIFO (named pipe)";
    case fs::file_type::socket:
      return "a socket";
    case fs::file_type::block:
      return "a block device";
    case fs::file_type::character:
      return "a character device";
    case fs::file_type::symlink:
      return "a symbolic link";
    default:
      return "not a regular file";
  }
}

/// Throws std::runtime_error "<who>: '<path>': <problem>" unless `path` names (possibly through
/// symlinks) an existing regular file; returns its size in bytes. Nothing is opened, so a FIFO or
/// a device cannot block the caller.
inline std::uint64_t regular_file_size(const std::string& path, std::string_view who) {
  namespace fs = std::filesystem;
  auto fail = [&](const std::string& problem) {
    throw std::runtime_error(std::string(who) + ": '" + path + "': " + problem);
  };
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec && status.type() != fs::file_type::not_found) fail("cannot examine the file: " + ec.message());
  if (!fs::exists(status)) fail("no such file");
  if (!fs::is_regular_file(status)) fail("is " + file_kind(status) + ", not a regular file");
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) fail("cannot determine the file size: " + ec.message());
  return static_cast<std::uint64_t>(size);
}

/// \brief A regular file opened for reading after the checks of regular_file_size(); reads exactly
/// the bytes asked for or throws "<who>: '<path>': ..." (truncated, read error).
class CheckedFile {
 public:
  CheckedFile(const std::string& path, std::string_view who)
      : m_path(path), m_who(who), m_size(regular_file_size(path, who)) {
    m_file = std::fopen(path.c_str(), "rb");
    if (m_file == nullptr) fail("cannot open the file for reading: " + errno_text(errno));
  }
  CheckedFile(const CheckedFile&) = delete;
  CheckedFile& operator=(const CheckedFile&) = delete;
  ~CheckedFile() {
    if (m_file != nullptr) std::fclose(m_file);
  }

  /// The file's size when it was opened.
  [[nodiscard]] std::uint64_t size() const noexcept { return m_size; }

  /// Reads `n` bytes into `dst` (from the current position).
  void read(void* dst, std::size_t n) {
    const std::size_t got = n == 0 ? 0 : std::fread(dst, 1, n, m_file);
    if (got != n) {
      if (std::ferror(m_file)) fail("read error: " + errno_text(errno));
      fail("the file ended after " + std::to_string(got) + " of " + std::to_string(n) +
           " bytes (it changed while being read?)");
    }
  }

  /// `n` bytes into a new std::string; a size the memory cannot hold is an error naming the file.
  std::string read_string(std::uint64_t n) {
    std::string out;
    try {
      if (n > std::numeric_limits<std::size_t>::max()) throw std::bad_alloc();
      out.resize(static_cast<std::size_t>(n));
    } catch (const std::bad_alloc&) {
      fail("not enough memory to read " + std::to_string(n) + " bytes of it");
    }
    read(out.data(), out.size());
    return out;
  }

  [[noreturn]] void fail(const std::string& problem) const {
    throw std::runtime_error(m_who + ": '" + m_path + "': " + problem);
  }

 private:
  std::string m_path, m_who;
  std::uint64_t m_size = 0;
  std::FILE* m_file = nullptr;
};

/// The file a write to `path` really replaces: symlinks followed (relative ones against their
/// directory), up to 40 levels; a path that is no link is returned as is.
inline std::filesystem::path resolve_write_target(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  fs::path p = path;
  for (int depth = 0; depth < 40; ++depth) {
    std::error_code ec;
    if (!fs::is_symlink(fs::symlink_status(p, ec))) return p;
    const fs::path link = fs::read_symlink(p, ec);
    if (ec) return p;
    p = link.is_absolute() ? link : p.parent_path() / link;
  }
  return p;
}

/// \brief Writes a file atomically and durably: `write(sink)` fills a new temporary file beside the
/// real target (symlinks resolved, so a link keeps pointing at the new contents); the temporary
/// file gets the old file's permission bits (a new file: 0666 less the umask), is flushed and
/// fsync'ed, renamed over the target, and the directory is fsync'ed. On any failure the temporary
/// file is removed, the old file is untouched, and std::runtime_error "<who>: '<path>': <problem>"
/// is thrown. `sink(data, n)` appends n bytes.
template <class Writer>
void atomic_replace(const std::string& path, std::string_view who, Writer&& write) {
  namespace fs = std::filesystem;
  const std::string prefix = std::string(who) + ": '" + path + "': ";
  const fs::path target = resolve_write_target(fs::path(path));
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  static std::atomic<unsigned long long> counter{0};
  const auto stamp = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
  fs::path temp = target;
  temp += ".tmp" + std::to_string(stamp) + "_" + std::to_string(counter.fetch_add(1));
  auto no_dir = [&] {
    std::error_code ec;
    return fs::is_directory(dir, ec) ? std::string() : std::string(" (the directory does not exist)");
  };
#if defined(_WIN32)
  auto fail = [&](const std::string& what) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw std::runtime_error(prefix + what);
  };
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(prefix + "cannot create a file there" + no_dir());
    bool ok = true;
    write([&](const char* data, std::size_t n) {
      if (ok) ok = static_cast<bool>(out.write(data, static_cast<std::streamsize>(n)));
    });
    out.flush();
    if (!ok || !out) fail("writing the temporary file " + temp.string() + " failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(temp, target, ec);
  if (ec) fail("cannot replace the file with the temporary one: " + ec.message());
#else
  struct stat old {};
  const bool exists = ::stat(target.c_str(), &old) == 0;
  if (exists && !S_ISREG(old.st_mode))
    throw std::runtime_error(prefix + "exists and is " + file_kind(fs::status(target)) + ", not a regular file");
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);  // 0666 & ~umask
  if (fd < 0) throw std::runtime_error(prefix + "cannot create a file there: " + errno_text(errno) + no_dir());
  int fd_open = fd;
  auto fail = [&](const std::string& what) {
    if (fd_open >= 0) ::close(fd_open);
    ::unlink(temp.c_str());
    throw std::runtime_error(prefix + what);
  };
  if (exists) {
    if (::fchown(fd, old.st_uid, old.st_gid) != 0) {  // only root may give a file away; keep ours then
    }
    if (::fchmod(fd, old.st_mode & 07777) != 0)
      fail("cannot give the new file the old one's permissions: " + errno_text(errno));
  }
  int error = 0;
  write([&](const char* data, std::size_t n) {
    while (n > 0 && error == 0) {
      const ssize_t w = ::write(fd, data, n);
      if (w < 0) {
        if (errno != EINTR) error = errno;
        continue;
      }
      data += w;
      n -= static_cast<std::size_t>(w);
    }
  });
  if (error != 0) fail("writing the temporary file " + temp.string() + " failed: " + errno_text(error));
  if (::fsync(fd) != 0) fail("syncing the temporary file " + temp.string() + " to disk failed: " + errno_text(errno));
  fd_open = -1;
  if (::close(fd) != 0) fail("closing the temporary file " + temp.string() + " failed: " + errno_text(errno));
  if (::rename(temp.c_str(), target.c_str()) != 0)
    fail("cannot replace the file with the temporary one: " + errno_text(errno));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {  // the rename itself is durable only once the directory is synced
    const int synced = ::fsync(dir_fd);
    const int sync_errno = errno;
    ::close(dir_fd);
    if (synced != 0 && sync_errno != EINVAL && sync_errno != EROFS)  // some file systems cannot sync directories
      throw std::runtime_error(prefix +
                               "the file was replaced, but syncing its directory failed: " + errno_text(sync_errno));
  }
#endif
}

/// Throws std::runtime_error "<who>: '<path>': <problem>" unless a file can be written at `path`
/// (by creating and removing a temporary file beside its real target): for checking output paths
/// before long work. The file itself is not created or changed.
inline void check_writable(const std::string& path, std::string_view who) {
  namespace fs = std::filesystem;
  const fs::path target = resolve_write_target(fs::path(path));
  std::error_code ec;
  const fs::file_status status = fs::status(target, ec);
  if (fs::exists(status) && !fs::is_regular_file(status))
    throw std::runtime_error(std::string(who) + ": '" + path + "': is " + file_kind(status) +
                             ", not a file that can be written");
  if (target.has_filename() == false || target.filename() == "." || target.filename() == "..")
    throw std::runtime_error(std::string(who) + ": '" + path + "': names a directory, not a file");
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const fs::path probe =
      dir / (".resblocks_write_check_" + std::to_string(static_cast<unsigned long long>(
                                             std::chrono::steady_clock::now().time_since_epoch().count())));
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (f == nullptr) {
    const int e = errno;
    const std::string why = fs::is_directory(dir, ec) ? errno_text(e) : "the directory does not exist";
    throw std::runtime_error(std::string(who) + ": '" + path + "': cannot write there: " + why);
  }
  std::fclose(f);
  fs::remove(probe, ec);
}

}  // namespace resblocks::detail
