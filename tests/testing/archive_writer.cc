#include "tests/testing/archive_writer.h"

#include <archive.h>
#include <archive_entry.h>

#include <opencv2/imgcodecs.hpp>

namespace graft::testing {

bool WriteArchive(const std::string& file, const std::string& format, const std::vector<ArchiveEntry>& entries) {
  archive* a = archive_write_new();
  if (format == "zip") {
    archive_write_set_format_zip(a);
  } else {
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
  }
  if (archive_write_open_filename(a, file.c_str()) != ARCHIVE_OK) return false;
  for (const ArchiveEntry& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_perm(entry, 0644);
    if (!e.symlink_target.empty()) {
      archive_entry_set_filetype(entry, AE_IFLNK);
      archive_entry_set_symlink(entry, e.symlink_target.c_str());
      archive_entry_set_size(entry, 0);
      archive_write_header(a, entry);
    } else {
      archive_entry_set_filetype(entry, AE_IFREG);
      archive_entry_set_size(entry, static_cast<la_int64_t>(e.data.size()));
      archive_write_header(a, entry);
      archive_write_data(a, e.data.data(), e.data.size());
    }
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
  return true;
}

std::string EncodeImage(const std::string& ext, int w, int h, int b, int g, int r) {
  cv::Mat img(h, w, CV_8UC3, cv::Scalar(b, g, r));
  std::vector<uchar> buf;
  cv::imencode("." + ext, img, buf);
  return std::string(buf.begin(), buf.end());
}

}  // namespace graft::testing
