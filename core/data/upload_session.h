#pragma once

#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/data/dataset_store.h"

namespace graft::core {

// How the client says its bytes are laid out. kDetect: an archive whose kind
// libarchive finds out; kFolder: files one after another, each chunk naming
// its file.
enum class UploadFormat { kDetect, kZip, kTarGz, kTar, kFolder };

struct UploadHeader {
  std::string name;
  std::string owner;  // the uploading principal
  UploadFormat format = UploadFormat::kDetect;
  int64_t total_bytes = 0;    // what the client declares it will send; 0: not declared
  double split_fraction = 0;  // [0, 1); 0: the default 0.2 (FLAT layout only)
  uint64_t split_seed = 0;
};

// One dataset upload as its bytes arrive, whatever carries them: Begin checks
// the header and makes a staging folder, Append takes each chunk, Finish
// checks what arrived and hands it to the store. Every limit of an upload
// (--max_dataset_bytes, --max_upload_file_bytes, --max_archive_entries, the
// declared size) is held here, so a transport is a read loop. The staging
// folder goes when the session does, however it ends.
class UploadSession {
 public:
  // `cancelled`: the client gave up (checked per chunk and while ingesting).
  static absl::StatusOr<std::unique_ptr<UploadSession>> Begin(DatasetStore& store, UploadHeader header,
                                                              std::function<bool()> cancelled = nullptr);
  ~UploadSession();
  UploadSession(const UploadSession&) = delete;
  UploadSession& operator=(const UploadSession&) = delete;

  // One chunk. A folder upload's chunk names its file in `path` (empty: the
  // file the previous chunk named goes on); `last` closes that file. An
  // archive's chunks carry no path. A refused file (bad path, too large) is
  // listed in the result's `rejected`, not an error; an error ends the upload.
  absl::Status Append(absl::string_view path, absl::string_view data, bool last);

  // Ingests what arrived; nothing is kept unless this returns OK.
  absl::StatusOr<IngestResult> Finish();

  int64_t received_bytes() const { return received_; }

 private:
  UploadSession(DatasetStore& store, UploadHeader header, std::function<bool()> cancelled, std::string staging);
  absl::Status CloseFile();
  absl::Status StartFile(absl::string_view path);
  bool Cancelled() const { return cancelled_ && cancelled_(); }

  DatasetStore& store_;
  const UploadHeader header_;
  const std::function<bool()> cancelled_;
  const std::string staging_;
  const std::string archive_path_;
  std::ofstream archive_;
  int64_t received_ = 0;
  // A folder upload's files, and the one being written.
  std::vector<StagedFile> files_;
  std::vector<RejectedFile> rejected_;
  std::ofstream current_;
  std::string current_path_;     // as the client named it
  std::string current_staged_;   // where its bytes go
  bool current_refused_ = false;
  int64_t current_bytes_ = 0;
};

}  // namespace graft::core
