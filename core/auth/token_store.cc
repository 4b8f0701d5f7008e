#include "core/auth/token_store.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/util/ids.h"
#include "core/util/database.h"
#include "core/util/log.h"
#include "core/util/migrations.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace {

constexpr char kTokenPrefix[] = "graft_";
constexpr size_t kTokenBytes = 32;  // 256 random bits

std::string RawSha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

absl::Status CheckTokenName(const std::string& name) {
  if (IsPlainName(name, 64)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("token name '", name, "' must be 1 to 64 letters, digits, '-', '_' or '.'"));
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kInference: return "inference";
    case Role::kTrain: return "train";
    case Role::kAdmin: return "admin";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseRole(const std::string& name) {
  if (name == "inference") return Role::kInference;
  if (name == "train") return Role::kTrain;
  if (name == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(absl::StrCat("role must be inference, train or admin, got '", name, "'"));
}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Open(Database& db) {
  RETURN_IF_ERROR(Migrate(db, "tokens",
                          {"CREATE TABLE IF NOT EXISTS tokens(name TEXT PRIMARY KEY, role INTEGER NOT NULL, sha256 "
                           "BLOB NOT NULL, created_at REAL NOT NULL);"}));
  std::unique_ptr<TokenStore> store(new TokenStore(db));
  RETURN_IF_ERROR(store->Reload());
  return store;
}

absl::Status TokenStore::Reload() {
  std::vector<Entry> entries;
  ASSIGN_OR_RETURN(auto q, db_.Prepare("SELECT name, role, sha256 FROM tokens"));
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    const int64_t role = q.Int(1);
    if (role < 1 || role > 3) continue;
    entries.push_back({q.Text(2), Principal{q.Text(0), static_cast<Role>(role)}});
  }
  absl::MutexLock lock(&mu_);
  entries_ = std::move(entries);
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenStore::Create(const std::string& name, Role role) {
  RETURN_IF_ERROR(CheckTokenName(name));
  unsigned char random[kTokenBytes];
  if (RAND_bytes(random, sizeof random) != 1) return absl::InternalError("no random bytes for a token");
  std::string token = absl::StrCat(
      kTokenPrefix, absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(random), sizeof random)));
  {
    ASSIGN_OR_RETURN(auto exists, db_.Prepare("SELECT 1 FROM tokens WHERE name = ?"));
    exists.Bind(1, name);
    ASSIGN_OR_RETURN(const bool found, exists.Step());
    if (found) {
      return absl::AlreadyExistsError(
          absl::StrCat("a token named '", name, "' exists; revoke it first (graft tokens revoke ", name, ")"));
    }
  }
  ASSIGN_OR_RETURN(auto ins, db_.Prepare("INSERT INTO tokens VALUES (?, ?, ?, ?)"));
  ins.Bind(1, name).Bind(2, static_cast<int64_t>(role)).BindBlob(3, RawSha256(token)).Bind(4, NowSeconds());
  RETURN_IF_ERROR(ins.Run());
  Changed();
  RETURN_IF_ERROR(Reload());
  return token;
}

void TokenStore::Changed() {
  if (feed_ == nullptr) return;
  if (auto s = feed_->Bump(ChangeFeed::kTokens); !s.ok()) {
    ABSL_LOG(WARNING) << "other graftd processes will see this token change at their next poll: " << s.message();
  }
}

std::vector<TokenInfo> TokenStore::List() {
  std::vector<TokenInfo> out;
  auto q = db_.Prepare("SELECT name, role, created_at FROM tokens ORDER BY name");
  if (!q.ok()) return out;
  while (q->Step().value_or(false)) {
    out.push_back({q->Text(0), static_cast<Role>(q->Int(1)), q->Double(2)});
  }
  return out;
}

absl::Status TokenStore::Revoke(const std::string& name) {
  {
    ASSIGN_OR_RETURN(auto exists, db_.Prepare("SELECT 1 FROM tokens WHERE name = ?"));
    exists.Bind(1, name);
    ASSIGN_OR_RETURN(const bool found, exists.Step());
    if (!found) return absl::NotFoundError(absl::StrCat("no token named '", name, "'"));
  }
  ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM tokens WHERE name = ?"));
  del.Bind(1, name);
  RETURN_IF_ERROR(del.Run());
  Changed();
  return Reload();
}

std::optional<Principal> TokenStore::Authenticate(std::string_view token) {
  const std::string hash = RawSha256(token);
  std::optional<Principal> found;
  absl::MutexLock lock(&mu_);
  // Every stored hash is compared, whole, whatever matched before.
  for (const Entry& e : entries_) {
    if (e.hash.size() == hash.size() && CRYPTO_memcmp(e.hash.data(), hash.data(), hash.size()) == 0) {
      found = e.principal;
    }
  }
  return found;
}

absl::StatusOr<bool> TokenStore::Bootstrap(const std::string& path) {
  {
    absl::MutexLock lock(&mu_);
    if (!entries_.empty()) return false;
  }
  auto created = Create("admin", Role::kAdmin);
  if (absl::IsAlreadyExists(created.status())) {
    // Another graftd on the same database bootstrapped at the same moment.
    RETURN_IF_ERROR(Reload());
    return false;
  }
  ASSIGN_OR_RETURN(const std::string token, std::move(created));
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  absl::Status written = absl::OkStatus();
  if (fd < 0) {
    written = absl::FailedPreconditionError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  } else {
    const std::string line = token + "\n";
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
      written = absl::FailedPreconditionError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
    }
  }
  if (!written.ok()) {
    ::unlink(tmp.c_str());
    (void)Revoke("admin");  // a token nobody can read would lock the server
    return written;
  }
  return true;
}

}  // namespace graft::core
