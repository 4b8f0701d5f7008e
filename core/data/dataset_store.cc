#include "core/data/dataset_store.h"

#include "core/data/decode_budget.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/data/archive.h"
#include "core/data/client_paths.h"
#include "core/data/image_codec.h"
#include "core/data/split.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "core/util/limit_error.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> Components(const std::string& path) {
  std::vector<std::string> out;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (c != ".") out.emplace_back(c);
  }
  return out;
}

bool IsSplitDir(const std::string& c) { return c == "train" || c == "val" || c == "validation"; }

}  // namespace

// Gathers accepted images (hash + path) and rejections while entries stream in.
class DatasetStore::Collector {
 public:
  struct Accepted {
    std::vector<std::string> parts;
    std::string path;
    std::string sha;
    int64_t bytes;
  };

  Collector(DatasetStore& store) : store_(store) {}
  ~Collector() { ReleasePins(); }
  // Before removing what a refused upload created, and after a commit.
  void ReleasePins() {
    store_.Unpin(pinned_);
    pinned_.clear();
  }

  absl::Status Visit(const UploadEntry& e, const std::function<absl::Status(std::string*, int64_t)>& read) {
    if (e.directory) return absl::OkStatus();
    if (auto s = CheckRelativePath(e.path); !s.ok()) return Reject(e.path, std::string(s.message()), false);
    if (!e.regular) return Reject(e.path, absl::StrCat(e.kind, "s are not accepted"), false);
    const auto& limits = store_.limits_;
    if (e.size > limits.max_file_bytes) {
      return Reject(e.path, FileTooLarge(limits.max_file_bytes));
    }
    std::string data;
    if (auto s = read(&data, limits.max_file_bytes); !s.ok()) {
      if (s.code() == absl::StatusCode::kResourceExhausted) return Reject(e.path, std::string(s.message()));
      return s;  // the archive itself is broken: the whole upload fails
    }
    const auto header = ProbeImage(data);
    if (!header.ok()) return Reject(e.path, std::string(header.status().message()));
    if (limits.decode_budget != nullptr && DecodeBytesEstimate(*header) > limits.decode_budget->capacity()) {
      return Reject(e.path, absl::StrCat("decoding it needs about ", DecodeBytesEstimate(*header),
                                         " bytes, more than all of --max_decode_bytes"));
    }
    const auto image = DecodeImage(data, DecodeLimits{limits.max_pixels, limits.decode_budget});
    // Other decodes hold the budget: the upload fails whole, nothing is kept.
    if (absl::IsResourceExhausted(image.status())) return image.status();
    if (!image.ok()) return Reject(e.path, std::string(image.status().message()));
    total_bytes_ += static_cast<int64_t>(data.size());
    if (total_bytes_ > limits.max_dataset_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the dataset exceeds the limit of ", limits.max_dataset_bytes, " bytes of images"));
    }
    const std::string sha = Sha256Hex(data);
    const std::string blob = store_.BlobPath(sha);
    store_.Pin(sha);
    pinned_.push_back(sha);
    std::error_code ec;
    if (!fs::exists(blob, ec)) {
      fs::create_directories(fs::path(blob).parent_path(), ec);
      RETURN_IF_ERROR(WriteFileAtomic(blob, data));
      created_.push_back(sha);
    } else if (store_.sharing_.gc_grace_s > 0) {
      fs::last_write_time(blob, fs::file_time_type::clock::now(), ec);  // young again: see StorageSharing
    }
    accepted_.push_back({Components(e.path), e.path, sha, static_cast<int64_t>(data.size())});
    return absl::OkStatus();
  }

  // `in_class`: the path itself is fine, so its folder still names a class
  // (to report classes whose every file was rejected).
  absl::Status Reject(const std::string& path, const std::string& reason, bool in_class = true) {
    rejected_.push_back({PrintablePath(path), reason});
    if (in_class) rejected_parts_.push_back(Components(path));
    return absl::OkStatus();
  }

  std::vector<Accepted> accepted_;
  std::vector<RejectedFile> rejected_;
  std::vector<std::vector<std::string>> rejected_parts_;
  std::vector<std::string> created_;  // blobs this upload wrote
  int64_t total_bytes_ = 0;

 private:
  DatasetStore& store_;
  std::vector<std::string> pinned_;
};

absl::StatusOr<std::unique_ptr<DatasetStore>> DatasetStore::Open(Database& db, const std::string& root,
                                                                  UploadLimits limits, StorageSharing sharing) {
  if (sharing.staging.empty() || sharing.staging.find('/') != std::string::npos || sharing.staging[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat("staging folder name '", sharing.staging, "' is not a file name"));
  }
  std::unique_ptr<DatasetStore> store(new DatasetStore(db, root, limits, sharing));
  std::error_code ec;
  const fs::path staging = fs::path(root) / "staging" / sharing.staging;
  fs::remove_all(staging, ec);  // this process's uploads interrupted by a crash
  fs::create_directories(fs::path(root) / "blobs", ec);
  fs::create_directories(staging, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", root, ": ", ec.message()));
  RETURN_IF_ERROR(CreateTables(db));
  RETURN_IF_ERROR(store->CollectGarbage());
  return store;
}

std::string DatasetStore::BlobPath(const std::string& sha) const {
  return (fs::path(root_) / "blobs" / sha.substr(0, 2) / sha).string();
}

absl::StatusOr<std::string> DatasetStore::NewStagingDir() {
  const fs::path dir = fs::path(root_) / "staging" / sharing_.staging / NewId("upload");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  return dir.string();
}

void DatasetStore::DiscardStaging(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

absl::StatusOr<IngestResult> DatasetStore::IngestArchive(const UploadRequest& request, const std::string& archive_path) {
  Collector collector(*this);
  absl::StatusOr<IngestResult> result = absl::StatusOr<IngestResult>(absl::UnknownError(""));
  ArchiveWalkLimits walk;
  walk.max_entries = limits_.max_archive_entries;
  walk.max_expanded_bytes = limits_.max_dataset_bytes;
  walk.cancelled = request.cancelled;
  walk.max_seconds = limits_.max_archive_seconds;
  const absl::Status walked = ForEachArchiveEntry(
      archive_path, [&](const UploadEntry& e, const auto& read) { return collector.Visit(e, read); }, walk);
  result = walked.ok() ? Commit(request, collector) : absl::StatusOr<IngestResult>(walked);
  collector.ReleasePins();
  if (!result.ok()) RemoveUnreferenced(collector.created_);
  return result;
}

void DatasetStore::Pin(const std::string& sha) {
  absl::MutexLock lock(&gc_mu_);
  ++pinned_[sha];
}

void DatasetStore::Unpin(const std::vector<std::string>& shas) {
  absl::MutexLock lock(&gc_mu_);
  for (const std::string& sha : shas) {
    const auto it = pinned_.find(sha);
    if (it != pinned_.end() && --it->second == 0) pinned_.erase(it);
  }
}

void DatasetStore::RemoveUnreferenced(const std::vector<std::string>& blobs) {
  absl::MutexLock lock(&gc_mu_);
  for (const std::string& sha : blobs) {
    if (pinned_.count(sha) > 0) continue;  // another upload in progress holds it
    auto q = db_.Prepare("SELECT 1 FROM dataset_images WHERE sha256 = ? LIMIT 1");
    if (!q.ok()) return;
    q->Bind(1, sha);
    if (q->Step().value_or(true)) continue;
    std::error_code ec;
    fs::remove(BlobPath(sha), ec);
  }
}

absl::StatusOr<IngestResult> DatasetStore::IngestFolder(const UploadRequest& request,
                                                        const std::vector<StagedFile>& files,
                                                        std::vector<RejectedFile> pre_rejected) {
  Collector collector(*this);
  for (const RejectedFile& r : pre_rejected) {
    RETURN_IF_ERROR(collector.Reject(r.path, r.reason, CheckRelativePath(r.path).ok()));
  }
  for (const StagedFile& f : files) {
    UploadEntry e;
    e.path = f.path;
    e.regular = true;
    std::error_code ec;
    e.size = static_cast<int64_t>(fs::file_size(f.staged_path, ec));
    const absl::Status visited = collector.Visit(e, [&](std::string* data, int64_t max_bytes) -> absl::Status {
      ASSIGN_OR_RETURN(*data, ReadFile(f.staged_path));
      if (static_cast<int64_t>(data->size()) > max_bytes) {
        return absl::ResourceExhaustedError(FileTooLarge(max_bytes));
      }
      return absl::OkStatus();
    });
    if (!visited.ok()) {
      collector.ReleasePins();
      RemoveUnreferenced(collector.created_);
      return visited;
    }
  }
  auto result = Commit(request, collector);
  collector.ReleasePins();
  if (!result.ok()) RemoveUnreferenced(collector.created_);
  return result;
}

absl::StatusOr<IngestResult> DatasetStore::Commit(const UploadRequest& request, Collector& c) {
  RETURN_IF_ERROR(CheckName(request.name));
  // Strip folders every image shares ("hymenoptera/train/ants/x.jpg").
  auto& acc = c.accepted_;
  size_t strip = 0;
  while (!acc.empty()) {
    const std::string& first = acc[0].parts.size() > strip ? acc[0].parts[strip] : "";
    const bool shared = std::all_of(acc.begin(), acc.end(), [&](const auto& a) {
      return a.parts.size() > strip + 2 && a.parts[strip] == first;
    });
    if (!shared || IsSplitDir(first)) break;
    ++strip;
  }
  const bool train_val = std::any_of(acc.begin(), acc.end(), [&](const auto& a) {
    return a.parts.size() > strip && IsSplitDir(a.parts[strip]);
  });

  struct Placed {
    Split split;
    std::string cls;
    const Collector::Accepted* image;
  };
  std::vector<Placed> placed;
  std::set<std::string> class_dirs;  // every class folder seen, images accepted or not
  auto place = [&](const std::vector<std::string>& parts, Split* split, std::string* cls) -> std::string {
    if (parts.size() <= strip) return "not inside a class folder";
    std::vector<std::string> p(parts.begin() + static_cast<long>(strip), parts.end());
    if (train_val) {
      if (!IsSplitDir(p[0])) return "outside the train/ and val/ folders";
      if (p.size() < 3) return absl::StrCat("not inside a class folder under ", p[0], "/");
      *split = p[0] == "train" ? Split::kTrain : Split::kVal;
      *cls = p[1];
      return "";
    }
    if (p.size() < 2) return "not inside a class folder";
    *split = Split::kTrain;
    *cls = p[0];
    return "";
  };
  for (const auto& a : acc) {
    Split split;
    std::string cls;
    const std::string why = place(a.parts, &split, &cls);
    if (!why.empty()) {
      c.rejected_.push_back({a.path, why});
      continue;
    }
    placed.push_back({split, cls, &a});
    if (split == Split::kTrain) class_dirs.insert(cls);
  }
  for (const auto& parts : c.rejected_parts_) {
    Split split;
    std::string cls;
    if (place(parts, &split, &cls).empty() && split == Split::kTrain) class_dirs.insert(cls);
  }

  // Classes come from the training folders, sorted like torchvision's ImageFolder.
  std::vector<std::string> classes(class_dirs.begin(), class_dirs.end());
  if (static_cast<int64_t>(classes.size()) > limits_.max_classes) {
    return LimitError(absl::StatusCode::kInvalidArgument,
                      absl::StrCat("the upload has ", classes.size(), " class folders; at most ", limits_.max_classes,
                                   " are allowed (--max_dataset_classes)"),
                      "max_dataset_classes");
  }
  std::map<std::string, int> label_of;
  for (size_t i = 0; i < classes.size(); ++i) label_of[classes[i]] = static_cast<int>(i);
  std::vector<ClassCount> counts(classes.size());
  for (size_t i = 0; i < classes.size(); ++i) counts[i].name = classes[i];
  std::vector<std::vector<const Placed*>> flat_by_class(classes.size());
  std::vector<std::pair<Split, const Placed*>> final_images;
  for (const Placed& p : placed) {
    const auto it = label_of.find(p.cls);
    if (it == label_of.end()) {
      c.rejected_.push_back({p.image->path, absl::StrCat("class '", p.cls, "' has no train/ folder")});
      continue;
    }
    if (train_val) {
      final_images.emplace_back(p.split, &p);
    } else {
      flat_by_class[static_cast<size_t>(it->second)].push_back(&p);
    }
  }
  const double fraction = request.split_fraction > 0 ? request.split_fraction : 0.2;
  if (!train_val) {
    if (fraction >= 1) return absl::InvalidArgumentError("split fraction must be below 1");
    std::vector<SplitItem> items;
    std::vector<const Placed*> placed;
    for (size_t k = 0; k < flat_by_class.size(); ++k) {
      for (const Placed* p : flat_by_class[k]) {
        items.push_back({static_cast<int>(k), p->image->path});
        placed.push_back(p);
      }
    }
    const std::vector<bool> val = StratifiedValidation(items, fraction, request.split_seed);
    for (size_t i = 0; i < placed.size(); ++i) final_images.emplace_back(val[i] ? Split::kVal : Split::kTrain, placed[i]);
  }
  for (const auto& [split, p] : final_images) {
    auto& cc = counts[static_cast<size_t>(label_of[p->cls])];
    (split == Split::kTrain ? cc.train : cc.val)++;
  }
  auto rejects = [&]() {
    std::string s = absl::StrCat(c.rejected_.size(), " file(s) rejected");
    for (size_t i = 0; i < std::min<size_t>(3, c.rejected_.size()); ++i) {
      absl::StrAppend(&s, i ? "; " : ": ", c.rejected_[i].path, " (", c.rejected_[i].reason, ")");
    }
    return s;
  };
  if (classes.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("a dataset needs at least 2 classes, found ", classes.size(),
                                                   classes.empty() ? "" : " ('" + classes[0] + "')", "; ", rejects()));
  }
  std::vector<std::string> empty;
  for (const auto& cc : counts) {
    if (cc.train == 0) empty.push_back(cc.name);
  }
  if (!empty.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("class(es) left without training images: ",
                                                   absl::StrJoin(empty, ", "), "; ", rejects()));
  }

  DatasetInfo info;
  info.id = NewId("ds");
  info.name = request.name;
  info.owner = request.owner;
  info.layout = train_val ? DatasetLayout::kTrainVal : DatasetLayout::kFlat;
  info.classes = counts;
  info.split_fraction = train_val ? 0 : fraction;
  info.split_seed = request.split_seed;
  info.created_at = NowSeconds();
  info.rejected_count = static_cast<int>(c.rejected_.size());
  for (const auto& cc : counts) {
    info.train_images += cc.train;
    info.val_images += cc.val;
  }
  info.bytes = 0;
  for (const auto& [split, p] : final_images) info.bytes += p->image->bytes;

  // A sample is kept (the first kMaxStoredRejected), the whole count in its
  // own column: a lookup never parses a list that grows with the upload.
  nlohmann::json rejected = nlohmann::json::array();
  for (size_t i = 0; i < std::min(c.rejected_.size(), kMaxStoredRejected); ++i) {
    rejected.push_back({{"path", c.rejected_[i].path}, {"reason", c.rejected_[i].reason}});
  }
  Transaction tx(db_);
  RETURN_IF_ERROR(tx.status());
  {
    ASSIGN_OR_RETURN(auto exists, db_.Prepare("SELECT id FROM datasets WHERE name = ? AND owner = ?"));
    exists.Bind(1, info.name).Bind(2, info.owner);
    ASSIGN_OR_RETURN(const bool found, exists.Step());
    if (found) {
      return absl::AlreadyExistsError(absl::StrCat("a dataset named '", info.name, "' already exists (", exists.Text(0),
                                                   "); delete it first or choose another name"));
    }
  }
  {
    ASSIGN_OR_RETURN(auto ins, db_.Prepare(
        "INSERT INTO datasets(id, name, layout, split_fraction, split_seed, created_at, bytes, rejected, owner, "
        "rejected_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    ins.Bind(1, info.id).Bind(2, info.name).Bind(3, static_cast<int64_t>(info.layout)).Bind(4, info.split_fraction)
        .Bind(5, static_cast<int64_t>(info.split_seed)).Bind(6, info.created_at).Bind(7, info.bytes)
        .Bind(8, rejected.dump()).Bind(9, info.owner).Bind(10, static_cast<int64_t>(c.rejected_.size()));
    RETURN_IF_ERROR(ins.Run());
  }
  for (size_t i = 0; i < classes.size(); ++i) {
    ASSIGN_OR_RETURN(auto ins, db_.Prepare("INSERT INTO dataset_classes VALUES (?, ?, ?)"));
    ins.Bind(1, info.id).Bind(2, static_cast<int64_t>(i)).Bind(3, classes[i]);
    RETURN_IF_ERROR(ins.Run());
  }
  {
    ASSIGN_OR_RETURN(auto ins, db_.Prepare("INSERT INTO dataset_images VALUES (?, ?, ?, ?, ?)"));
    for (const auto& [split, p] : final_images) {
      ins.Bind(1, info.id).Bind(2, static_cast<int64_t>(split)).Bind(3, static_cast<int64_t>(label_of[p->cls]))
          .Bind(4, p->image->path).Bind(5, p->image->sha);
      RETURN_IF_ERROR(ins.Run());
      ins.Reset();
    }
  }
  RETURN_IF_ERROR(tx.Commit());
  return IngestResult{info, c.rejected_};
}

absl::Status DatasetStore::Delete(const std::string& id) {
  ASSIGN_OR_RETURN(const DatasetInfo d, Get(id));
  {
    Transaction tx(db_);
    RETURN_IF_ERROR(tx.status());
    ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM datasets WHERE id = ?"));
    del.Bind(1, d.id);
    RETURN_IF_ERROR(del.Run());
    RETURN_IF_ERROR(tx.Commit());
  }
  return CollectGarbage();
}

absl::Status DatasetStore::CollectGarbage() {
  // Under gc_mu_ from the query to the last removal: an upload pins a blob
  // before it looks for it, so it either sees the file gone (and writes it
  // again) or keeps it from being removed.
  absl::MutexLock lock(&gc_mu_);
  std::set<std::string> referenced;
  {
    ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT DISTINCT sha256 FROM dataset_images"));
    while (true) {
      ASSIGN_OR_RETURN(const bool row, q.Step());
      if (!row) break;
      referenced.insert(q.Text(0));
    }
  }
  std::error_code ec;
  int removed = 0;
  for (auto it = fs::recursive_directory_iterator(fs::path(root_) / "blobs", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string name = it->path().filename().string();
    if (referenced.count(name) == 0 && pinned_.count(name) == 0) {
      if (sharing_.gc_grace_s > 0) {
        std::error_code t;
        const auto written = fs::last_write_time(it->path(), t);
        const double age = std::chrono::duration<double>(fs::file_time_type::clock::now() - written).count();
        if (t || age < sharing_.gc_grace_s) continue;
      }
      fs::remove(it->path(), ec);
      ++removed;
    }
  }
  if (removed > 0) ABSL_LOG(INFO) << "removed " << removed << " image blob(s) no dataset references";
  return absl::OkStatus();
}

}  // namespace graft::core
