// DatasetStore's reads: listing, lookup by id or name, a dataset's rejected
// files and its images. Uploads, deletion and garbage collection are in
// dataset_store.cc.

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/data/dataset_store.h"
#include "core/util/ids.h"
#include "core/util/status_macros.h"

namespace graft::core {

std::vector<DatasetInfo> DatasetStore::List(const std::optional<std::string>& owner) {
  std::vector<DatasetInfo> out;
  std::vector<std::string> ids;
  {
    auto q = db_.Prepare("SELECT id FROM datasets WHERE ? = 0 OR owner = ? ORDER BY created_at");
    if (!q.ok()) return out;
    q->Bind(1, static_cast<int64_t>(owner.has_value())).Bind(2, owner.value_or(""));
    while (q->Step().value_or(false)) ids.push_back(q->Text(0));
  }
  for (const auto& id : ids) {
    if (auto d = Get(id); d.ok()) out.push_back(*d);
  }
  return out;
}

absl::StatusOr<DatasetInfo> DatasetStore::Get(const std::string& id_or_name, const std::optional<std::string>& owner) {
  // Ids and names never share a form (CheckName), so an id is looked up as an
  // id only and a name as a name only.
  const bool by_id = LooksLikeId(id_or_name);
  ASSIGN_OR_RETURN(
      auto q,
      db_.Prepare(
          "SELECT id, name, layout, split_fraction, split_seed, created_at, bytes, "
          "CASE WHEN rejected_count < 0 THEN rejected ELSE '' END, owner, rejected_count FROM datasets "
          "WHERE (? = 1 AND id = ?) OR (? = 0 AND name = ? AND (? = 0 OR owner = ?)) ORDER BY created_at"));
  q.Bind(1, static_cast<int64_t>(by_id))
      .Bind(2, id_or_name)
      .Bind(3, static_cast<int64_t>(by_id))
      .Bind(4, id_or_name)
      .Bind(5, static_cast<int64_t>(owner.has_value()))
      .Bind(6, owner.value_or(""));
  ASSIGN_OR_RETURN(const bool found, q.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no dataset '", id_or_name, "'"));
  DatasetInfo d;
  d.owner = q.Text(8);
  d.id = q.Text(0);
  d.name = q.Text(1);
  d.layout = static_cast<DatasetLayout>(q.Int(2));
  d.split_fraction = q.Double(3);
  d.split_seed = static_cast<uint64_t>(q.Int(4));
  d.created_at = q.Double(5);
  d.bytes = q.Int(6);
  d.rejected_count = q.Int(9) >= 0 ? static_cast<int>(q.Int(9))
                                    : static_cast<int>(nlohmann::json::parse(q.Text(7), nullptr, false).size());
  {
    ASSIGN_OR_RETURN(const bool another, q.Step());
    if (another) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset name '", id_or_name, "' is used by several owners; name it by id"));
    }
  }
  ASSIGN_OR_RETURN(auto classes, db_.Prepare("SELECT name FROM dataset_classes WHERE dataset_id = ? ORDER BY idx"));
  classes.Bind(1, d.id);
  while (true) {
    ASSIGN_OR_RETURN(const bool row, classes.Step());
    if (!row) break;
    d.classes.push_back({classes.Text(0), 0, 0});
  }
  ASSIGN_OR_RETURN(auto counts, db_.Prepare("SELECT label, split, COUNT(*) FROM dataset_images WHERE dataset_id = ? "
                                            "GROUP BY label, split"));
  counts.Bind(1, d.id);
  while (true) {
    ASSIGN_OR_RETURN(const bool row, counts.Step());
    if (!row) break;
    const auto label = static_cast<size_t>(counts.Int(0));
    if (label >= d.classes.size()) continue;
    const int n = static_cast<int>(counts.Int(2));
    if (counts.Int(1) == static_cast<int64_t>(Split::kTrain)) {
      d.classes[label].train = n;
      d.train_images += n;
    } else {
      d.classes[label].val = n;
      d.val_images += n;
    }
  }
  return d;
}

absl::StatusOr<DatasetInfo> DatasetStore::Resolve(const std::string& id_or_name, const std::string& principal,
                                                  bool any_owner) {
  auto own = Get(id_or_name, principal);
  if (!any_owner || !absl::IsNotFound(own.status())) return own;
  return Get(id_or_name);
}

absl::StatusOr<std::vector<RejectedFile>> DatasetStore::Rejected(const std::string& id) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT rejected FROM datasets WHERE id = ?"));
  q.Bind(1, id);
  ASSIGN_OR_RETURN(const bool found, q.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no dataset '", id, "'"));
  std::vector<RejectedFile> out;
  for (const auto& r : nlohmann::json::parse(q.Text(0), nullptr, false)) {
    out.push_back({r.value("path", ""), r.value("reason", "")});
  }
  return out;
}

absl::StatusOr<std::vector<DatasetImage>> DatasetStore::Images(const std::string& id) {
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT split, label, path, sha256 FROM dataset_images WHERE dataset_id = ? "
                                       "ORDER BY rowid"));
  q.Bind(1, id);
  std::vector<DatasetImage> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out.push_back({static_cast<Split>(q.Int(0)), static_cast<int>(q.Int(1)), q.Text(2), BlobPath(q.Text(3))});
  }
  return out;
}

}  // namespace graft::core
