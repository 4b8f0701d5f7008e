// The PostgreSQL backend of core::Database, through libpq: one connection,
// statements sent with PQexecParams (text parameters, BLOBs binary; text
// results, BYTEA unescaped), the stores' SQL translated on the way (? -> $n,
// INTEGER/REAL/BLOB -> BIGINT/DOUBLE PRECISION/BYTEA).

#include <poll.h>

#include <chrono>
#include <set>

#include <libpq-fe.h>

#include <cctype>
#include <cstdlib>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/util/database.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace {

constexpr Oid kByteaOid = 17;

// SQLSTATE classes and codes the stores' callers act on.
absl::Status ErrorOf(const PGconn* conn, const PGresult* result, const std::string& what) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = result ? PQresultErrorMessage(result) : PQerrorMessage(conn);
  absl::StripTrailingAsciiWhitespace(&message);
  const std::string code = state ? state : "";
  if (code == "53100") {  // disk_full
    return absl::ResourceExhaustedError(
        absl::StrCat("no space left on the PostgreSQL server's disk (", message, "); nothing of this change was kept"));
  }
  if (code.rfind("08", 0) == 0 || PQstatus(conn) != CONNECTION_OK) {  // connection exceptions
    return absl::UnavailableError(absl::StrCat("postgresql: ", what, ": ", message));
  }
  return absl::InternalError(absl::StrCat("postgresql: ", what, ": ", message));
}

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

}  // namespace

// The stores' SQL as PostgreSQL takes it: `?` outside quotes becomes $1, $2,
// ...; the type names INTEGER, REAL and BLOB (outside quotes, as whole words)
// become BIGINT, DOUBLE PRECISION and BYTEA.
std::string TranslateForPostgres(const std::string& sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int param = 0;
  for (size_t i = 0; i < sql.size();) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {  // a literal or quoted identifier, copied whole ('' escapes inside)
      size_t end = i + 1;
      while (end < sql.size()) {
        if (sql[end] == c) {
          if (end + 1 < sql.size() && sql[end + 1] == c) {
            end += 2;
            continue;
          }
          break;
        }
        ++end;
      }
      out.append(sql, i, end + 1 - i);
      i = end + 1;
    } else if (c == '?') {
      absl::StrAppend(&out, "$", ++param);
      ++i;
    } else if (IsWordChar(c) && (i == 0 || !IsWordChar(sql[i - 1]))) {
      size_t end = i;
      while (end < sql.size() && IsWordChar(sql[end])) ++end;
      const std::string word = sql.substr(i, end - i);
      const std::string upper = absl::AsciiStrToUpper(word);
      if (upper == "INTEGER") {
        out += "BIGINT";
      } else if (upper == "REAL") {
        out += "DOUBLE PRECISION";
      } else if (upper == "BLOB") {
        out += "BYTEA";
      } else {
        out += word;
      }
      i = end;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

namespace {

class PostgresStatement : public StatementImpl {
 public:
  PostgresStatement(PGconn* conn, std::string sql) : conn_(conn), sql_(std::move(sql)) {}
  ~PostgresStatement() override { Clear(); }

  void BindText(int index, const std::string& value) override { Set(index, value, false); }
  void BindBlob(int index, const std::string& value) override { Set(index, value, true); }
  void BindInt(int index, int64_t value) override { Set(index, std::to_string(value), false); }
  void BindDouble(int index, double value) override { Set(index, absl::StrFormat("%.17g", value), false); }
  void BindNull(int index) override {
    Grow(index);
    params_[static_cast<size_t>(index - 1)].reset();
  }

  absl::StatusOr<bool> Step() override {
    if (result_ == nullptr) {
      std::vector<const char*> values(params_.size());
      std::vector<int> lengths(params_.size()), formats(params_.size());
      for (size_t i = 0; i < params_.size(); ++i) {
        values[i] = params_[i] ? params_[i]->data() : nullptr;
        lengths[i] = params_[i] ? static_cast<int>(params_[i]->size()) : 0;
        formats[i] = binary_[i] ? 1 : 0;
      }
      result_ = PQexecParams(conn_, sql_.c_str(), static_cast<int>(params_.size()), nullptr, values.data(),
                             lengths.data(), formats.data(), 0);
      const ExecStatusType status = result_ ? PQresultStatus(result_) : PGRES_FATAL_ERROR;
      if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        absl::Status error = ErrorOf(conn_, result_, sql_);
        Clear();
        return error;
      }
      row_ = -1;
    }
    return ++row_ < PQntuples(result_);
  }

  void Reset() override {
    Clear();
    params_.clear();
    binary_.clear();
  }

  std::string Text(int column) const override {
    if (PQgetisnull(result_, row_, column)) return {};
    const char* value = PQgetvalue(result_, row_, column);
    if (PQftype(result_, column) == kByteaOid) {
      size_t n = 0;
      unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(value), &n);
      if (raw == nullptr) return {};
      std::string out(reinterpret_cast<const char*>(raw), n);
      PQfreemem(raw);
      return out;
    }
    return std::string(value, static_cast<size_t>(PQgetlength(result_, row_, column)));
  }
  int64_t Int(int column) const override {
    return PQgetisnull(result_, row_, column) ? 0 : std::strtoll(PQgetvalue(result_, row_, column), nullptr, 10);
  }
  double Double(int column) const override {
    return PQgetisnull(result_, row_, column) ? 0 : std::strtod(PQgetvalue(result_, row_, column), nullptr);
  }
  bool IsNull(int column) const override { return PQgetisnull(result_, row_, column) != 0; }

 private:
  void Grow(int index) {
    if (index < 1) return;
    if (params_.size() < static_cast<size_t>(index)) {
      params_.resize(static_cast<size_t>(index));
      binary_.resize(static_cast<size_t>(index), false);
    }
  }
  void Set(int index, std::string value, bool binary) {
    if (index < 1) return;
    Grow(index);
    params_[static_cast<size_t>(index - 1)] = std::move(value);
    binary_[static_cast<size_t>(index - 1)] = binary;
  }
  void Clear() {
    if (result_ != nullptr) PQclear(result_);
    result_ = nullptr;
  }

  PGconn* conn_;
  const std::string sql_;
  std::vector<std::optional<std::string>> params_;
  std::vector<bool> binary_;
  PGresult* result_ = nullptr;
  int row_ = -1;
};

class PostgresDatabase : public DatabaseImpl {
 public:
  explicit PostgresDatabase(PGconn* conn) : conn_(conn) {}
  ~PostgresDatabase() override { PQfinish(conn_); }

  absl::Status Exec(const std::string& sql) override {
    const std::string translated = TranslateForPostgres(sql);
    PGresult* result = PQexec(conn_, translated.c_str());
    const ExecStatusType status = result ? PQresultStatus(result) : PGRES_FATAL_ERROR;
    absl::Status out = absl::OkStatus();
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
      out = ErrorOf(conn_, result, translated);
    }
    PQclear(result);
    return out;
  }

  absl::StatusOr<std::unique_ptr<StatementImpl>> Prepare(const std::string& sql) override {
    if (PQstatus(conn_) != CONNECTION_OK) PQreset(conn_);  // one reconnect after the server restarted
    if (PQstatus(conn_) != CONNECTION_OK) return ErrorOf(conn_, nullptr, "reconnect");
    return std::unique_ptr<StatementImpl>(new PostgresStatement(conn_, TranslateForPostgres(sql)));
  }

  const char* BeginSql() const override { return "BEGIN"; }

  absl::StatusOr<bool> WaitForNotification(const std::string& channel, int timeout_ms) override {
    if (PQstatus(conn_) != CONNECTION_OK) {
      PQreset(conn_);
      listening_.clear();  // a new session listens to nothing
      if (PQstatus(conn_) != CONNECTION_OK) return ErrorOf(conn_, nullptr, "reconnect");
    }
    if (listening_.count(channel) == 0) {
      char* quoted = PQescapeIdentifier(conn_, channel.c_str(), channel.size());
      if (quoted == nullptr) return ErrorOf(conn_, nullptr, "LISTEN");
      const std::string sql = absl::StrCat("LISTEN ", quoted);
      PQfreemem(quoted);
      RETURN_IF_ERROR(Exec(sql));
      listening_.insert(channel);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      if (PQconsumeInput(conn_) == 0) return ErrorOf(conn_, nullptr, "LISTEN");
      bool got = false;
      while (PGnotify* n = PQnotifies(conn_)) {
        got = got || channel == n->relname;
        PQfreemem(n);
      }
      if (got) return true;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return false;
      pollfd fd{PQsocket(conn_), POLLIN, 0};
      if (fd.fd < 0) return ErrorOf(conn_, nullptr, "LISTEN");
      (void)poll(&fd, 1, static_cast<int>(left));
    }
  }

 private:
  PGconn* conn_;
  std::set<std::string> listening_;
};

void IgnoreNotice(void*, const char*) {}  // "relation already exists, skipping" and the like

}  // namespace

absl::StatusOr<std::unique_ptr<DatabaseImpl>> OpenPostgres(const std::string& uri) {
  PGconn* conn = PQconnectdb(uri.c_str());
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string message = conn ? PQerrorMessage(conn) : "out of memory";
    absl::StripTrailingAsciiWhitespace(&message);
    PQfinish(conn);
    // The URI may hold a password: name the database by its host part only.
    const size_t at = uri.rfind('@');
    return absl::UnavailableError(absl::StrCat("cannot connect to PostgreSQL at ",
                                               at == std::string::npos ? uri : uri.substr(at + 1), ": ", message));
  }
  PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  auto db = std::make_unique<PostgresDatabase>(conn);
  if (auto s = db->Exec("SET client_min_messages = warning"); !s.ok()) return s;
  return std::unique_ptr<DatabaseImpl>(std::move(db));
}

}  // namespace graft::core
