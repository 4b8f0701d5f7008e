#include "core/serve/records_dataset.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace {

// A file name extension from the image's first bytes (the store probes the
// content; the name only helps whoever reads the dataset's file list).
const char* ExtensionOf(const std::string& head) {
  if (head.rfind("\xFF\xD8\xFF", 0) == 0) return ".jpg";
  if (head.rfind("\x89PNG", 0) == 0) return ".png";
  if (head.rfind("BM", 0) == 0) return ".bmp";
  if (head.size() >= 12 && head.compare(0, 4, "RIFF") == 0 && head.compare(8, 4, "WEBP") == 0) return ".webp";
  if (head.rfind(std::string("II*\0", 4), 0) == 0 || head.rfind(std::string("MM\0*", 4), 0) == 0) return ".tif";
  return ".img";
}

}  // namespace

absl::StatusOr<RecordsDatasetResult> DatasetFromRecords(PredictionRecords& records, DatasetStore& datasets,
                                                        const RecordsDatasetRequest& request) {
  RETURN_IF_ERROR(DatasetStore::CheckName(request.name));
  if (!(request.split_fraction >= 0 && request.split_fraction < 1)) {
    return absl::InvalidArgumentError("split.fraction must lie in [0, 1) (0: the default 0.2)");
  }
  RecordsDatasetResult result;
  // image sha -> (label time, label, record); the latest label of an image wins.
  struct Chosen {
    double at = 0;
    std::string label;
    PredictionRecord record;
  };
  std::map<std::string, Chosen> by_image;
  RecordQuery q;
  q.model_key = request.model_key;
  q.since = request.since;
  if (request.labelled_only) q.with_feedback = true;
  q.limit = 1000;
  while (true) {
    ASSIGN_OR_RETURN(RecordPage page, records.List(q));
    for (PredictionRecord& r : page.records) {
      ++result.records;
      std::string label = r.feedback_label;
      double at = r.feedback_at;
      if (label.empty()) {
        if (r.top.empty()) continue;
        label = r.top[0].label;
        at = r.created_at;
      }
      auto [it, fresh] = by_image.try_emplace(r.image_sha256);
      if (!fresh) ++result.duplicates;
      // Feedback outranks a pseudo-label; then the later one wins.
      const bool is_feedback = !r.feedback_label.empty();
      const bool held_feedback = !fresh && !it->second.record.feedback_label.empty();
      if (fresh || (is_feedback && !held_feedback) || (is_feedback == held_feedback && at > it->second.at)) {
        it->second = {at, label, std::move(r)};
      }
    }
    if (page.next_offset == 0) break;
    q.offset = page.next_offset;
  }
  if (request.labelled_only) {
    RecordQuery without = q;
    without.offset = 0;
    without.with_feedback = false;
    without.limit = 1000;
    while (true) {
      ASSIGN_OR_RETURN(RecordPage page, records.List(without));
      result.unlabelled += static_cast<int64_t>(page.records.size());
      if (page.next_offset == 0) break;
      without.offset = page.next_offset;
    }
  }
  if (by_image.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", request.model_key, " has no ", request.labelled_only ? "labelled " : "",
        "prediction records", request.since > 0 ? " since then" : "",
        request.labelled_only ? " (send labels with Feedback, or leave labelled_only off to use the model's answers)"
                              : ""));
  }
  // The records' image files are read in place: the store copies what it keeps.
  std::vector<StagedFile> files;
  for (const auto& [sha, chosen] : by_image) {
    const std::string path = records.ImagePathOf(chosen.record);
    ASSIGN_OR_RETURN(const std::string head, records.ImageHead(chosen.record, 12));
    files.push_back({absl::StrCat(chosen.label, "/", sha.substr(0, 16), ExtensionOf(head)), path});
  }
  UploadRequest upload;
  upload.name = request.name;
  upload.owner = request.owner;
  upload.split_fraction = request.split_fraction;
  upload.split_seed = request.split_seed;
  ASSIGN_OR_RETURN(result.ingest, datasets.IngestFolder(upload, files, {}));
  return result;
}

}  // namespace graft::core
