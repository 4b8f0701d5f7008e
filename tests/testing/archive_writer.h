#pragma once

#include <string>
#include <vector>

namespace graft::testing {

struct ArchiveEntry {
  std::string path;
  std::string data;
  std::string symlink_target;  // non-empty: a symbolic link
};

// Writes a tar.gz ("tar.gz") or zip ("zip") with libarchive; entries are
// written exactly as given, hostile paths included.
bool WriteArchive(const std::string& file, const std::string& format, const std::vector<ArchiveEntry>& entries);

// Encodes a w x h image of one colour ("png" or "jpg").
std::string EncodeImage(const std::string& ext, int w, int h, int b, int g, int r);

}  // namespace graft::testing
