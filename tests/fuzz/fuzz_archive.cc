// An uploaded archive (tar, tar.gz, zip, whatever libarchive detects), entry by
// entry through ingestion's checks: walk limits, path rules, entry kinds,
// per-file size, then the image probe, as DatasetStore's collector runs them.
#include <cstdint>
#include <string>

#include "core/data/archive.h"
#include "core/data/dataset_store.h"
#include "core/data/image_codec.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace graft::core;
  const std::string path = graft::fuzz::WriteInput("archive", data, size);
  constexpr int64_t kMaxFile = 256 << 10;
  ArchiveWalkLimits limits;
  limits.max_entries = 256;
  limits.max_expanded_bytes = 8 << 20;
  int64_t entries = 0;
  const absl::Status walked = ForEachArchiveEntry(
      path,
      [&](const UploadEntry& e, const std::function<absl::Status(std::string*, int64_t)>& read) -> absl::Status {
        ++entries;
        GRAFT_FUZZ_ASSERT(entries <= limits.max_entries);
        if (e.directory) return absl::OkStatus();
        if (!DatasetStore::CheckRelativePath(e.path).ok() || !e.regular) return absl::OkStatus();
        std::string bytes;
        const absl::Status s = read(&bytes, kMaxFile);
        if (absl::IsResourceExhausted(s)) return absl::OkStatus();  // rejected: larger than the per-file limit
        if (!s.ok()) return s;
        GRAFT_FUZZ_ASSERT(static_cast<int64_t>(bytes.size()) <= kMaxFile);
        (void)ProbeImage(bytes);
        return absl::OkStatus();
      },
      limits);
  // A broken archive is INVALID_ARGUMENT, a limit RESOURCE_EXHAUSTED; nothing else.
  GRAFT_FUZZ_ASSERT(walked.ok() || absl::IsInvalidArgument(walked) || absl::IsResourceExhausted(walked));
  return 0;
}
