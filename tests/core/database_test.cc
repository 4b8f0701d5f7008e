// core::Database on both backends: SQLite (a file) and a real PostgreSQL
// server (Debian's package, started by the test). The same SQL, the same
// values back.

#include "core/util/database.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

class DatabaseTest : public ::testing::TestWithParam<Database::Kind> {
 protected:
  void SetUp() override {
    if (GetParam() == Database::Kind::kSqlite) {
      target_ = dir_.Join("graft.db");
    } else {
      target_ = testing::FreshPostgresDatabase();
      ASSERT_FALSE(target_.empty());
    }
    auto db = Database::Open(target_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    ASSERT_EQ(db_->kind(), GetParam());
    ASSERT_TRUE(db_->Exec(R"sql(
      CREATE TABLE IF NOT EXISTS things(
        id TEXT PRIMARY KEY, n INTEGER NOT NULL, x REAL NOT NULL, raw BLOB, note TEXT);
    )sql")
                    .ok());
  }

  testing::TempDir dir_;
  std::string target_;
  std::unique_ptr<Database> db_;
};

TEST_P(DatabaseTest, ValuesComeBackExactly) {
  const std::string blob("\0\x01\xff\xfe'\"?\\x", 9);
  const std::string text = "it's a 'quoted' ? and a \\ backslash, ünïcode";
  const double x = 0.1 + 1e-17 * 3;
  const int64_t big = std::numeric_limits<int64_t>::max();
  {
    auto ins = db_->Prepare("INSERT INTO things VALUES (?, ?, ?, ?, ?)");
    ASSERT_TRUE(ins.ok()) << ins.status();
    ins->Bind(1, std::string("a")).Bind(2, big).Bind(3, x).BindBlob(4, blob).Bind(5, text);
    ASSERT_TRUE(ins->Run().ok());
    ins->Reset();
    ins->Bind(1, std::string("b")).Bind(2, int64_t{-7}).Bind(3, 1.7976931348623157e308).BindNull(4).BindNull(5);
    ASSERT_TRUE(ins->Run().ok());
  }
  auto q = db_->Prepare("SELECT id, n, x, raw, note FROM things WHERE id <> '?' ORDER BY id");
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_TRUE(q->Step().value());
  EXPECT_EQ(q->Text(0), "a");
  EXPECT_EQ(q->Int(1), big);
  EXPECT_EQ(q->Double(2), x);
  EXPECT_EQ(q->Text(3), blob);
  EXPECT_EQ(q->Text(4), text);
  EXPECT_FALSE(q->IsNull(3));
  ASSERT_TRUE(q->Step().value());
  EXPECT_EQ(q->Int(1), -7);
  EXPECT_EQ(q->Double(2), 1.7976931348623157e308);
  EXPECT_TRUE(q->IsNull(3));
  EXPECT_TRUE(q->IsNull(4));
  EXPECT_FALSE(q->Step().value());
}

TEST_P(DatabaseTest, UpsertsUpdateInPlace) {
  for (int64_t n : {1, 2, 3}) {
    auto up = db_->Prepare(
        "INSERT INTO things(id, n, x) VALUES (?, ?, 0) ON CONFLICT(id) DO UPDATE SET n = things.n + excluded.n");
    ASSERT_TRUE(up.ok()) << up.status();
    ASSERT_TRUE(up->Bind(1, std::string("k")).Bind(2, n).Run().ok());
  }
  auto q = db_->Prepare("SELECT n, COUNT(*) FROM things GROUP BY n");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(q->Step().value());
  EXPECT_EQ(q->Int(0), 6);
  EXPECT_EQ(q->Int(1), 1);
}

TEST_P(DatabaseTest, TransactionsCommitOrLeaveNoTrace) {
  {
    Transaction tx(*db_);
    ASSERT_TRUE(tx.status().ok()) << tx.status();
    ASSERT_TRUE(db_->Exec("INSERT INTO things(id, n, x) VALUES ('gone', 1, 1)").ok());
  }  // destroyed uncommitted
  {
    Transaction tx(*db_);
    ASSERT_TRUE(db_->Exec("INSERT INTO things(id, n, x) VALUES ('kept', 1, 1)").ok());
    ASSERT_TRUE(tx.Commit().ok());
  }
  // Reopened: what was committed is there, nothing else.
  db_.reset();
  auto db = Database::Open(target_);
  ASSERT_TRUE(db.ok()) << db.status();
  auto q = (*db)->Prepare("SELECT id FROM things");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(q->Step().value());
  EXPECT_EQ(q->Text(0), "kept");
  EXPECT_FALSE(q->Step().value());
}

TEST_P(DatabaseTest, ErrorsNameWhatFailed) {
  ASSERT_TRUE(db_->Exec("INSERT INTO things(id, n, x) VALUES ('dup', 1, 1)").ok());
  auto again = db_->Prepare("INSERT INTO things(id, n, x) VALUES (?, 1, 1)");
  ASSERT_TRUE(again.ok());
  const absl::Status dup = again->Bind(1, std::string("dup")).Run();
  EXPECT_FALSE(dup.ok());
  EXPECT_NE(std::string(dup.message()).find(GetParam() == Database::Kind::kSqlite ? "UNIQUE" : "duplicate key"),
            std::string::npos)
      << dup;
  const absl::Status bad = db_->Exec("SELEKT 1");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.message()).find("SELEKT"), std::string::npos) << bad;
  // The connection is still good after errors.
  auto q = db_->Prepare("SELECT COUNT(*) FROM things");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(q->Step().value());
  EXPECT_EQ(q->Int(0), 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, DatabaseTest, ::testing::Values(Database::Kind::kSqlite, Database::Kind::kPostgres),
                         [](const auto& info) {
                           return info.param == Database::Kind::kSqlite ? "Sqlite" : "Postgres";
                         });

TEST(TranslateForPostgres, PlaceholdersAndTypesOutsideQuotes) {
  EXPECT_EQ(TranslateForPostgres("SELECT '?', \"a?\", ? FROM t WHERE x = ? AND y = 'it''s ?'"),
            "SELECT '?', \"a?\", $1 FROM t WHERE x = $2 AND y = 'it''s ?'");
  EXPECT_EQ(TranslateForPostgres("CREATE TABLE t(a INTEGER, b REAL NOT NULL, c BLOB, realm TEXT, d integer)"),
            "CREATE TABLE t(a BIGINT, b DOUBLE PRECISION NOT NULL, c BYTEA, realm TEXT, d BIGINT)");
  EXPECT_EQ(TranslateForPostgres("SELECT 'REAL INTEGER'"), "SELECT 'REAL INTEGER'");
}

TEST(DatabaseOpen, AnUnreachableServerIsUnavailableWithoutItsPassword) {
  auto db = Database::Open("postgresql://graft:s3cret@127.0.0.1:1/graft?connect_timeout=2");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(std::string(db.status().message()).find("s3cret"), std::string::npos) << db.status();
  EXPECT_NE(std::string(db.status().message()).find("127.0.0.1:1"), std::string::npos) << db.status();
}

}  // namespace
}  // namespace graft::core
