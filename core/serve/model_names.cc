// ModelStore's names, versions and aliases. SQLite keeps them (the models'
// own model.json/info rows hold name and version; model_names the last
// version handed out, so versions are never reused; model_aliases the
// aliases); an in-memory index answers Resolve without touching the database.

#include <random>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/util/log.h"
#include "core/serve/model_ref.h"
#include "core/serve/model_store.h"
#include "core/util/database.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"

namespace graft::core {

namespace {

// An alias's canaries as the database holds them: "4=10;5=2.5".
std::string CanariesToText(const std::vector<CanaryRoute>& canaries) {
  return absl::StrJoin(canaries, ";", [](std::string* out, const CanaryRoute& c) {
    absl::StrAppend(out, c.version, "=", absl::StrFormat("%.17g", c.percent));
  });
}

std::vector<CanaryRoute> CanariesFromText(const std::string& text, const std::string& where) {
  std::vector<CanaryRoute> out;
  for (absl::string_view part : absl::StrSplit(text, ';', absl::SkipEmpty())) {
    const std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    CanaryRoute c;
    if (!absl::SimpleAtoi(kv.first, &c.version) || !absl::SimpleAtod(kv.second, &c.percent) || c.version < 1 ||
        !(c.percent > 0 && c.percent < 100)) {
      ABSL_LOG(ERROR) << "alias " << where << ": ignoring the malformed canary '" << part << "'";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

// A routing key's place in [0, 1) for one alias: FNV-1a (64 bits) of the key
// and the alias, the same in every process and build.
double KeyPoint(const std::string& key, const std::string& owner, const std::string& name, const std::string& alias) {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](absl::string_view s) {
    for (const unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xff;  // a separator no byte of a string equals after the xor above
    h *= 1099511628211ull;
  };
  mix(key);
  mix(owner);
  mix(name);
  mix(alias);
  // Murmur3's finalizer: FNV's low bits mix poorly, and the point is read from the high ones.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

double RandomPoint() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return static_cast<double>(gen() >> 11) * 0x1.0p-53;
}

}  // namespace

absl::Status ModelStore::OpenNames() {
  RETURN_IF_ERROR(Migrate(
      db_, "model_names",
      {"CREATE TABLE IF NOT EXISTS model_names(owner TEXT NOT NULL, name TEXT NOT NULL, last_version INTEGER NOT "
       "NULL, PRIMARY KEY(owner, name));"
       "CREATE TABLE IF NOT EXISTS model_aliases(owner TEXT NOT NULL, name TEXT NOT NULL, alias TEXT NOT NULL, "
       "version INTEGER NOT NULL, PRIMARY KEY(owner, name, alias))",
       // Canaries: "VERSION=PERCENT;..." (empty: none).
       "ALTER TABLE model_aliases ADD COLUMN canaries TEXT NOT NULL DEFAULT ''",
       // The shadow version (0: none).
       "ALTER TABLE model_aliases ADD COLUMN shadow INTEGER NOT NULL DEFAULT 0"}));
  ASSIGN_OR_RETURN(auto aliases, ReadAliases());
  absl::MutexLock lock(&mu_);
  aliases_ = std::move(aliases);
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::pair<std::string, std::string>, std::map<std::string, AliasTarget>>>
ModelStore::ReadAliases() {
  std::map<NameKey, std::map<std::string, AliasTarget>> out;
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT owner, name, alias, version, canaries, shadow FROM model_aliases"));
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    AliasTarget& t = out[{q.Text(0), q.Text(1)}][q.Text(2)];
    t.version = q.Int(3);
    t.canaries = CanariesFromText(q.Text(4), absl::StrCat(q.Text(0), "/", q.Text(1), "@", q.Text(2)));
    t.shadow = q.Int(5);
  }
  return out;
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
  ASSIGN_OR_RETURN(ServingRoute route, ResolveRef(text, caller, any_owner, nullptr));
  return std::move(route.id);
}

absl::StatusOr<ServingRoute> ModelStore::ResolveForServing(const std::string& text, const std::string& caller,
                                                          bool any_owner, const std::string& routing_key) {
  return ResolveRef(text, caller, any_owner, &routing_key);
}

absl::StatusOr<ServingRoute> ModelStore::ResolveRef(const std::string& text, const std::string& caller, bool any_owner,
                                                    const std::string* routing_key) {
  ASSIGN_OR_RETURN(const ModelRef ref, ParseModelRef(text));
  if (!ref.id.empty()) return ServingRoute{ref.id, {}};
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
  int64_t shadow = 0;
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
      const AliasTarget& target = aliases->second.at(alias);
      version = target.version;
      shadow = target.shadow;
      if (routing_key != nullptr && !target.canaries.empty()) {
        const double point =
            routing_key->empty() ? RandomPoint() : KeyPoint(*routing_key, owner, ref.name, alias);
        double below = 0;
        for (const CanaryRoute& c : target.canaries) {
          below += c.percent / 100;
          if (point < below) {
            version = c.version;
            break;
          }
        }
      }
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
  ServingRoute route{it->second, {}};
  if (shadow > 0) {
    // A shadow version deleted under it (another process) is simply not mirrored to.
    if (const auto s = versions.find(shadow); s != versions.end()) route.shadow = s->second;
  }
  return route;
}

absl::StatusOr<ModelInfo> ModelStore::SetAlias(const std::string& owner, const std::string& name,
                                              const std::string& alias, int64_t version,
                                              const std::vector<CanaryRoute>& canaries, int64_t shadow) {
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
  if (canaries.size() > static_cast<size_t>(kMaxCanaries)) {
    return absl::InvalidArgumentError(absl::StrCat("an alias has at most ", kMaxCanaries, " canaries, got ",
                                                   canaries.size()));
  }
  double total = 0;
  std::set<int64_t> seen{version};
  for (const CanaryRoute& c : canaries) {
    if (!(c.percent > 0 && c.percent < 100)) {
      return absl::InvalidArgumentError(absl::StrCat("canary version ", c.version, "'s share must be above 0 and under ",
                                                     "100 percent, got ", c.percent));
    }
    if (!seen.insert(c.version).second) {
      return absl::InvalidArgumentError(absl::StrCat("canary version ", c.version, " is named twice or is the alias's "
                                                     "own version"));
    }
    const auto canary = named->second.find(c.version);
    if (canary == named->second.end()) {
      return absl::NotFoundError(absl::StrCat("model '", name, "' has no version ", c.version, " (canary)"));
    }
    if (models_.count(canary->second) == 0) {
      return absl::FailedPreconditionError(absl::StrCat("canary version ", c.version, " of '", name,
                                                        "' cannot be served"));
    }
    total += c.percent;
  }
  if (!(total < 100)) {
    return absl::InvalidArgumentError(absl::StrCat("the canaries' shares sum to ", total,
                                                   " percent; they must leave the alias's own version some"));
  }
  if (shadow != 0) {
    const auto s = named->second.find(shadow);
    if (shadow < 0 || s == named->second.end()) {
      return absl::NotFoundError(absl::StrCat("model '", name, "' has no version ", shadow, " (shadow)"));
    }
    if (models_.count(s->second) == 0) {
      return absl::FailedPreconditionError(absl::StrCat("shadow version ", shadow, " of '", name,
                                                        "' cannot be served"));
    }
  }
  ASSIGN_OR_RETURN(auto up, db_.Prepare("INSERT INTO model_aliases (owner, name, alias, version, canaries, shadow) "
                                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(owner, name, alias) DO UPDATE SET "
                                        "version = excluded.version, canaries = excluded.canaries, shadow = "
                                        "excluded.shadow"));
  up.Bind(1, owner).Bind(2, name).Bind(3, alias).Bind(4, version).Bind(5, CanariesToText(canaries)).Bind(6, shadow);
  RETURN_IF_ERROR(up.Run());
  aliases_[{owner, name}][alias] = AliasTarget{version, canaries, shadow};
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
    for (const auto& [alias, target] : a->second) {
      if (target.version == info.version) out.push_back(alias);
    }
  }
  return out;
}

std::vector<std::pair<std::string, double>> ModelStore::CanaryOf(const ModelInfo& info) {
  std::vector<std::pair<std::string, double>> out;
  if (info.name.empty()) return out;
  absl::MutexLock lock(&mu_);
  if (const auto a = aliases_.find(NameKey{info.owner, info.name}); a != aliases_.end()) {
    for (const auto& [alias, target] : a->second) {
      for (const CanaryRoute& c : target.canaries) {
        if (c.version == info.version) out.emplace_back(alias, c.percent);
      }
    }
  }
  return out;
}

std::vector<std::string> ModelStore::ShadowOf(const ModelInfo& info) {
  std::vector<std::string> out;
  if (info.name.empty()) return out;
  absl::MutexLock lock(&mu_);
  if (const auto a = aliases_.find(NameKey{info.owner, info.name}); a != aliases_.end()) {
    for (const auto& [alias, target] : a->second) {
      if (target.shadow == info.version) out.push_back(alias);
    }
  }
  return out;
}

absl::StatusOr<AliasTarget> ModelStore::Alias(const std::string& owner, const std::string& name,
                                             const std::string& alias) {
  absl::MutexLock lock(&mu_);
  const auto a = aliases_.find(NameKey{owner, name});
  if (a == aliases_.end() || a->second.count(alias) == 0) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no alias '", alias, "'"));
  }
  return a->second.at(alias);
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
