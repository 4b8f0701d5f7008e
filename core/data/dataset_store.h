#pragma once

#include <functional>
#include <optional>

#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/data/dataset.h"
#include "core/util/database.h"

namespace graft::core {

class DecodeBudget;

struct UploadLimits {
  int64_t max_file_bytes = 64LL << 20;
  int64_t max_dataset_bytes = 8LL << 30;  // also what an archive may expand to
  int64_t max_pixels = 40'000'000;
  int64_t max_archive_entries = 1'000'000;
  // Classes of one dataset (--max_dataset_classes, at most kMaxClasses): a
  // model's reports, confusion and listings grow with them.
  int64_t max_classes = 10'000;
  // Wall time an archive's walk may take (--max_archive_seconds; 0: none).
  double max_archive_seconds = 1800;
  DecodeBudget* decode_budget = nullptr;  // shared with serving; null: unbounded
};

// Several graftd processes on one artifact directory (a shared volume): each
// stages its uploads in a folder of its own (`staging`, a file name: its
// worker id), and garbage collection spares unreferenced blobs younger than
// `gc_grace_s` (another process's upload in progress, not yet committed;
// an upload that finds its blob already there refreshes the blob's time).
struct StorageSharing {
  std::string staging = "local";
  double gc_grace_s = 0;
};

struct UploadRequest {
  std::string name;
  std::string owner;          // the uploading principal; names are unique per owner
  double split_fraction = 0;  // 0: default 0.2 (FLAT layout only)
  uint64_t split_seed = 0;
  std::function<bool()> cancelled;  // the client gave up: stop reading the archive
};

// A file of a folder upload, already written to the staging directory.
struct StagedFile {
  std::string path;         // relative path the client gave
  std::string staged_path;  // where its bytes are
};

struct IngestResult {
  DatasetInfo dataset;
  std::vector<RejectedFile> rejected;
};

// Datasets under <root>: images stored once by content (blobs/<sha256>),
// metadata in SQLite. An upload is staged, checked entry by entry, and
// committed in one transaction; anything not committed is removed (staging
// at once, unreferenced blobs on the next start or delete).
class DatasetStore {
 public:
  static absl::StatusOr<std::unique_ptr<DatasetStore>> Open(Database& db, const std::string& root, UploadLimits limits,
                                                           StorageSharing sharing = {});

  const UploadLimits& limits() const { return limits_; }

  // A fresh directory for an upload's bytes; DiscardStaging removes it.
  absl::StatusOr<std::string> NewStagingDir();
  void DiscardStaging(const std::string& dir);

  absl::StatusOr<IngestResult> IngestArchive(const UploadRequest& request, const std::string& archive_path);
  // `pre_rejected`: entries the transport already refused (bad paths).
  absl::StatusOr<IngestResult> IngestFolder(const UploadRequest& request, const std::vector<StagedFile>& files,
                                            std::vector<RejectedFile> pre_rejected);

  // All datasets, or those of `owner` when set.
  std::vector<DatasetInfo> List(const std::optional<std::string>& owner = std::nullopt);
  // By id, or by name among `owner`'s datasets (all datasets when unset: a
  // name held by several owners is ambiguous). The caller checks ownership.
  absl::StatusOr<DatasetInfo> Get(const std::string& id_or_name,
                                  const std::optional<std::string>& owner = std::nullopt);
  // As `principal` names it: its own dataset of that name first; with
  // `any_owner` (admins), then anyone's. The caller checks ownership.
  absl::StatusOr<DatasetInfo> Resolve(const std::string& id_or_name, const std::string& principal, bool any_owner);
  absl::StatusOr<std::vector<RejectedFile>> Rejected(const std::string& id);
  absl::Status Delete(const std::string& id);
  absl::StatusOr<std::vector<DatasetImage>> Images(const std::string& id);

  // Path checks shared with the transport: relative, no "..", no hidden
  // parts, at most kMaxPathChars (stored with every image).
  static constexpr size_t kMaxPathChars = 512;
  // The most --max_dataset_classes may allow (each class name is listed in
  // every answer about the dataset).
  static constexpr size_t kMaxClasses = 50'000;
  // Rejected files kept with a dataset (its answers list at most 1,000):
  // the first ones, with the whole count beside them.
  static constexpr size_t kMaxStoredRejected = 1000;
  static absl::Status CheckRelativePath(const std::string& path);
  // Dataset names: 1-128 of [A-Za-z0-9._-], never in the form of an id.
  static absl::Status CheckName(const std::string& name);

 private:
  // The tables, created if missing, and old SQLite files upgraded (dataset_store_schema.cc).
  static absl::Status CreateTables(Database& db);
  DatasetStore(Database& db, std::string root, UploadLimits limits, StorageSharing sharing)
      : db_(db), root_(std::move(root)), limits_(limits), sharing_(std::move(sharing)) {}
  class Collector;
  absl::StatusOr<IngestResult> Commit(const UploadRequest& request, Collector& collector);
  std::string BlobPath(const std::string& sha) const;
  absl::Status CollectGarbage();
  // Removes those of `blobs` no dataset references (a refused upload's).
  void RemoveUnreferenced(const std::vector<std::string>& blobs);
  // Blobs an upload in progress has written or found (not yet referenced by
  // a committed dataset): garbage collection leaves them alone. Found by the
  // kill -9 campaign: a delete during an upload removed the upload's blobs,
  // and the committed dataset referenced missing files.
  void Pin(const std::string& sha) ABSL_LOCKS_EXCLUDED(gc_mu_);
  void Unpin(const std::vector<std::string>& shas) ABSL_LOCKS_EXCLUDED(gc_mu_);

  Database& db_;
  std::string root_;
  UploadLimits limits_;
  StorageSharing sharing_;
  absl::Mutex gc_mu_;  // held by garbage collection, and to pin
  std::map<std::string, int> pinned_ ABSL_GUARDED_BY(gc_mu_);
};

}  // namespace graft::core
