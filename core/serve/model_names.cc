// ModelStore's names, versions and aliases. SQLite keeps them (the models'
// own model.json/info rows hold name and version; model_names the last
// version handed out, so versions are never reused; model_aliases the
// aliases); an in-memory index answers Resolve without touching the database.

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/serve/model_ref.h"
#include "core/serve/model_store.h"
#include "core/util/database.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"

namespace graft::core {

absl::Status ModelStore::OpenNames() {
  RETURN_IF_ERROR(Migrate(
      db_, "model_names",
      {"CREATE TABLE IF NOT EXISTS model_names(owner TEXT NOT NULL, name TEXT NOT NULL, last_version INTEGER NOT "
       "NULL, PRIMARY KEY(owner, name));"
       "CREATE TABLE IF NOT EXISTS model_aliases(owner TEXT NOT NULL, name TEXT NOT NULL, alias TEXT NOT NULL, "
       "version INTEGER NOT NULL, PRIMARY KEY(owner, name, alias))"}));
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT owner, name, alias, version FROM model_aliases"));
  absl::MutexLock lock(&mu_);
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    aliases_[{q.Text(0), q.Text(1)}][q.Text(2)] = q.Int(3);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ModelStore::ReserveVersion(const std::string& owner, const std::string& name) {
  Transaction tx(db_);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(auto up, db_.Prepare(
                                "INSERT INTO model_names VALUES (?, ?, 1) ON CONFLICT(owner, name) DO UPDATE SET "
                                "last_version = model_names.last_version + 1"));
  up.Bind(1, owner).Bind(2, name);
  RETURN_IF_ERROR(up.Run());
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT last_version FROM model_names WHERE owner = ? AND name = ?"));
  q.Bind(1, owner).Bind(2, name);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) return absl::InternalError("model_names lost its row");
  const int64_t version = q.Int(0);
  RETURN_IF_ERROR(tx.Commit());
  return version;
}

void ModelStore::IndexLocked(const ModelInfo& info) {
  if (!info.name.empty() && info.version > 0) versions_[{info.owner, info.name}][info.version] = info.id;
}

void ModelStore::UnindexLocked(const ModelInfo& info) {
  const auto it = versions_.find({info.owner, info.name});
  if (it == versions_.end()) return;
  it->second.erase(info.version);
  if (it->second.empty()) versions_.erase(it);
}

void ModelStore::SetDefaultOwner(std::string owner) {
  absl::MutexLock lock(&mu_);
  default_owner_ = std::move(owner);
}

absl::StatusOr<std::string> ModelStore::Resolve(const std::string& text, const std::string& caller, bool any_owner) {
  ASSIGN_OR_RETURN(const ModelRef ref, ParseModelRef(text));
  if (!ref.id.empty()) return ref.id;
  absl::MutexLock lock(&mu_);
  std::string owner = ref.owner;
  if (owner.empty()) {
    owner = caller;
    if (versions_.count({caller, ref.name}) == 0 && any_owner) {
      if (versions_.count({default_owner_, ref.name}) > 0) {
        owner = default_owner_;
      } else {
        return absl::NotFoundError(absl::StrCat("no model named '", ref.name, "' of yours or of the default owner '",
                                                default_owner_, "' (--default_model_owner); another principal's is "
                                                "OWNER/", ref.name));
      }
    }
  } else if (owner != caller && !any_owner) {
    return absl::PermissionDeniedError(absl::StrCat("model '", text, "' belongs to another principal"));
  }
  const auto named = versions_.find({owner, ref.name});
  if (named == versions_.end()) return absl::NotFoundError(absl::StrCat("no model named '", ref.name, "'"));
  const auto& versions = named->second;
  int64_t version = ref.version;
  if (version == 0) {
    std::string alias = ref.alias;
    const auto aliases = aliases_.find({owner, ref.name});
    if (alias.empty()) {
      const bool has_default = aliases != aliases_.end() && aliases->second.count(kDefaultAlias) > 0;
      alias = has_default ? kDefaultAlias : kLatestAlias;
    }
    if (alias == kLatestAlias) {
      version = versions.rbegin()->first;
    } else {
      if (aliases == aliases_.end() || aliases->second.count(alias) == 0) {
        return absl::NotFoundError(absl::StrCat("model '", ref.name, "' has no alias '", alias, "'"));
      }
      version = aliases->second.at(alias);
    }
  }
  const auto it = versions.find(version);
  if (it == versions.end()) {
    return absl::NotFoundError(absl::StrCat("model '", ref.name, "' has no version ", version, " (its versions: ",
                                            absl::StrJoin(versions, ", ",
                                                          [](std::string* out, const auto& v) {
                                                            absl::StrAppend(out, v.first);
                                                          }),
                                            ")"));
  }
  return it->second;
}

absl::StatusOr<ModelInfo> ModelStore::SetAlias(const std::string& owner, const std::string& name,
                                              const std::string& alias, int64_t version) {
  RETURN_IF_ERROR(ValidateModelName(name, "name"));
  if (alias == kLatestAlias) {
    return absl::InvalidArgumentError("alias 'latest' always means the newest version; it cannot be set");
  }
  RETURN_IF_ERROR(ValidateAliasName(alias, "alias"));
  absl::MutexLock serial(&refresh_mu_);  // see Publish
  absl::MutexLock lock(&mu_);
  const auto named = versions_.find({owner, name});
  if (named == versions_.end()) return absl::NotFoundError(absl::StrCat("no model named '", name, "'"));
  const auto it = named->second.find(version);
  if (it == named->second.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version ", version));
  }
  const auto model = models_.find(it->second);
  if (model == models_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("version ", version, " of '", name, "' cannot be served"));
  }
  ASSIGN_OR_RETURN(auto up, db_.Prepare("INSERT INTO model_aliases VALUES (?, ?, ?, ?) ON CONFLICT(owner, name, alias) "
                                        "DO UPDATE SET version = excluded.version"));
  up.Bind(1, owner).Bind(2, name).Bind(3, alias).Bind(4, version);
  RETURN_IF_ERROR(up.Run());
  aliases_[{owner, name}][alias] = version;
  Changed();
  return model->second->info();
}

absl::Status ModelStore::DeleteAlias(const std::string& owner, const std::string& name, const std::string& alias) {
  absl::MutexLock serial(&refresh_mu_);  // see Publish
  absl::MutexLock lock(&mu_);
  const auto it = aliases_.find({owner, name});
  if (it == aliases_.end() || it->second.count(alias) == 0) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no alias '", alias, "'"));
  }
  ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM model_aliases WHERE owner = ? AND name = ? AND alias = ?"));
  del.Bind(1, owner).Bind(2, name).Bind(3, alias);
  RETURN_IF_ERROR(del.Run());
  it->second.erase(alias);
  if (it->second.empty()) aliases_.erase(it);
  Changed();
  return absl::OkStatus();
}

std::vector<std::string> ModelStore::Aliases(const ModelInfo& info) {
  std::vector<std::string> out;
  if (info.name.empty()) return out;
  absl::MutexLock lock(&mu_);
  const NameKey key{info.owner, info.name};
  if (const auto v = versions_.find(key); v != versions_.end() && v->second.rbegin()->first == info.version) {
    out.push_back(kLatestAlias);
  }
  if (const auto a = aliases_.find(key); a != aliases_.end()) {
    for (const auto& [alias, version] : a->second) {
      if (version == info.version) out.push_back(alias);
    }
  }
  return out;
}

std::vector<int64_t> ModelStore::Versions(const ModelInfo& info) {
  std::vector<int64_t> out;
  if (info.name.empty()) return out;
  absl::MutexLock lock(&mu_);
  if (const auto v = versions_.find(NameKey{info.owner, info.name}); v != versions_.end()) {
    for (const auto& [version, id] : v->second) out.push_back(version);
  }
  return out;
}

}  // namespace graft::core
