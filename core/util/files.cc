#include "core/util/files.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace graft::core {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read '", path, "'"));
  return std::move(out).str();
}

bool DiskNearlyFull(const std::string& path, int64_t bytes) {
  std::filesystem::path p(path);
  std::error_code ec;
  while (!p.empty() && !std::filesystem::exists(p, ec)) p = p.parent_path();
  struct statvfs st {};
  if (p.empty() || ::statvfs(p.c_str(), &st) != 0) return false;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize) < bytes;
}

absl::Status WriteError(const std::string& what, const std::string& path, int err) {
  if (err == ENOSPC || err == EDQUOT || err == EFBIG || DiskNearlyFull(path)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "no space left on the disk holding '", path, "' while writing the ", what, " (",
        std::strerror(err == 0 ? ENOSPC : err), "); nothing of it was kept: free space there (or move --data_dir) and retry"));
  }
  return absl::UnavailableError(absl::StrCat("cannot write the ", what, " to '", path, "': ", std::strerror(err)));
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& contents) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return WriteError("file", tmp, errno);
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return WriteError("file", path, err);
    }
    done += static_cast<size_t>(n);
  }
  const int synced = ::fsync(fd) == 0 ? 0 : errno;
  const int closed = ::close(fd) == 0 ? 0 : errno;
  if (synced != 0 || closed != 0) {
    const int err = synced != 0 ? synced : closed;
    ::unlink(tmp.c_str());
    return WriteError("file", path, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot rename to '", path, "': ", err));
  }
  return absl::OkStatus();
}

}  // namespace graft::core
