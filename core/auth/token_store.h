#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/util/change_feed.h"
#include "core/util/database.h"

namespace graft::core {

class Database;

// What a principal may do; each role includes the ones before it.
enum class Role { kInference = 1, kTrain = 2, kAdmin = 3 };

const char* RoleName(Role role);
absl::StatusOr<Role> ParseRole(const std::string& name);

// Who is calling: a token's name and its role.
struct Principal {
  std::string name;
  Role role = Role::kInference;
  bool admin() const { return role == Role::kAdmin; }
};

struct TokenInfo {
  std::string name;
  Role role = Role::kInference;
  double created_at = 0;
};

// Bearer tokens in SQLite: only their SHA-256 is stored, a presented token is
// compared against every stored hash in constant time.
class TokenStore {
 public:
  static absl::StatusOr<std::unique_ptr<TokenStore>> Open(Database& db);

  // A new token for `name` (1-64 of [A-Za-z0-9._-]); the secret is returned
  // once and never stored. ALREADY_EXISTS when the name has a token.
  absl::StatusOr<std::string> Create(const std::string& name, Role role);
  std::vector<TokenInfo> List();
  absl::Status Revoke(const std::string& name);
  // The principal whose token this is; nullopt for an unknown or revoked one.
  std::optional<Principal> Authenticate(std::string_view token);
  // With no token at all, creates the admin token "admin" and writes it to
  // `path` (mode 0600). Returns true when it did.
  absl::StatusOr<bool> Bootstrap(const std::string& path);

  // Processes sharing the database: creations and revocations are announced
  // on `feed` (topic "tokens"); Reload, subscribed to it, re-reads them.
  void SetChangeFeed(ChangeFeed* feed) { feed_ = feed; }
  absl::Status Reload();

 private:
  explicit TokenStore(Database& db) : db_(db) {}
  void Changed();

  struct Entry {
    std::string hash;  // 32 raw bytes
    Principal principal;
  };
  Database& db_;
  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  ChangeFeed* feed_ = nullptr;
};

}  // namespace graft::core
