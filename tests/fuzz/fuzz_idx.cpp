// libFuzzer harness: read_idx on the input as a file, gzipped or not. The file is a memfd (an
// in-memory file opened through /proc/self/fd), so no disk is touched. Any input must be read or
// rejected with std::runtime_error; what is read must be as large as its dimensions say.
#include <resblocks/io/idx_file.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("resblocks_fuzz_idx", 0);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ::ftruncate(fd, 0) != 0) std::abort();
  for (std::size_t done = 0; done < size;) {
    const ssize_t w = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (w <= 0) std::abort();
    done += static_cast<std::size_t>(w);
  }
  try {
    const resblocks::IdxArray a = resblocks::read_idx(path);
    if (a.data.size() != static_cast<std::size_t>(a.size() * resblocks::idx_element_size(a.type))) std::abort();
    if (a.size() > 0) (void)a.at<double>(a.size() - 1);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
