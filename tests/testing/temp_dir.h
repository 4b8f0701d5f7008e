#pragma once

#include <filesystem>
#include <string>

namespace graft::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

// Regular files under `dir`, recursively (0 when it does not exist).
int CountFiles(const std::string& dir);

}  // namespace graft::testing
