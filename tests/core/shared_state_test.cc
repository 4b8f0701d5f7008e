// The state graftd processes share through one database, on both backends
// (a SQLite file opened twice; a real PostgreSQL server the test starts):
// versioned migrations, the shared job queue (claims, heartbeats, takeover,
// cancels asked across processes), the change feed, and tokens one process
// creates or revokes as another sees them. Each "process" here is a Database
// connection of its own.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/auth/token_store.h"
#include "core/data/dataset_store.h"
#include "core/jobs/job_store.h"
#include "core/util/change_feed.h"
#include "core/util/database.h"
#include "core/util/migrations.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

double Now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// Polls `done` for up to `seconds`; how long it took, or -1.
double Within(double seconds, const std::function<bool()>& done) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (done()) return took;
    if (took > seconds) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

class SharedStateTest : public ::testing::TestWithParam<Database::Kind> {
 protected:
  void SetUp() override {
    target_ = GetParam() == Database::Kind::kSqlite ? dir_.Join("graft.db") : testing::FreshPostgresDatabase();
    ASSERT_FALSE(target_.empty());
  }
  // A connection of its own, as another process has.
  std::unique_ptr<Database> Connect() {
    auto db = Database::Open(target_);
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? std::move(*db) : nullptr;
  }
  JobRecord Queued(const std::string& id, double created, const std::string& owner = "alice") {
    JobRecord job;
    job.id = id;
    job.owner = owner;
    job.created_at = created;
    return job;
  }

  testing::TempDir dir_;
  std::string target_;
};

TEST_P(SharedStateTest, MigrationsRunOnceEachInOrderAndRecordTheirVersion) {
  auto a = Connect();
  ASSERT_NE(a, nullptr);
  const std::vector<std::string> v2 = {"CREATE TABLE log(step INTEGER NOT NULL)", "INSERT INTO log VALUES (2)"};
  ASSERT_TRUE(Migrate(*a, "test", v2).ok());
  EXPECT_EQ(SchemaVersion(*a, "test").value(), 2);
  // Again, and from two connections at once: nothing runs twice.
  auto b = Connect();
  ASSERT_NE(b, nullptr);
  std::vector<std::string> v3 = v2;
  v3.push_back("INSERT INTO log VALUES (3)");
  std::vector<absl::Status> results(2);
  std::thread t1([&] { results[0] = Migrate(*a, "test", v3); });
  std::thread t2([&] { results[1] = Migrate(*b, "test", v3); });
  t1.join();
  t2.join();
  ASSERT_TRUE(results[0].ok()) << results[0];
  ASSERT_TRUE(results[1].ok()) << results[1];
  EXPECT_EQ(SchemaVersion(*b, "test").value(), 3);
  auto q = a->Prepare("SELECT step FROM log ORDER BY step");
  ASSERT_TRUE(q.ok());
  std::vector<int64_t> steps;
  while (q->Step().value_or(false)) steps.push_back(q->Int(0));
  EXPECT_EQ(steps, (std::vector<int64_t>{2, 3}));
  // Another component's versions are its own.
  EXPECT_EQ(SchemaVersion(*a, "other").value(), 0);
  // A step that fails names its component and version, and leaves no record.
  std::vector<std::string> bad = v3;
  bad.push_back("INSERT INTO no_such_table VALUES (1)");
  const absl::Status failed = Migrate(*a, "test", bad);
  EXPECT_FALSE(failed.ok());
  EXPECT_NE(std::string(failed.message()).find("schema migration test v4"), std::string::npos) << failed;
  EXPECT_EQ(SchemaVersion(*a, "test").value(), 3);
}

TEST_P(SharedStateTest, EveryStoreRecordsItsSchemaAndAnUnversionedDatabaseIsUpgradedInPlace) {
  auto db = Connect();
  ASSERT_NE(db, nullptr);
  // The jobs table as graftd made it before versioned migrations, with a job in it.
  ASSERT_TRUE(db->Exec(R"sql(
    CREATE TABLE jobs(
      id TEXT PRIMARY KEY, spec TEXT NOT NULL, state INTEGER NOT NULL, created_at REAL NOT NULL,
      started_at REAL NOT NULL, finished_at REAL NOT NULL, error TEXT NOT NULL, model_id TEXT NOT NULL,
      epochs_done INTEGER NOT NULL, epochs_total INTEGER NOT NULL, last TEXT NOT NULL, best TEXT NOT NULL,
      owner TEXT NOT NULL DEFAULT '');
    CREATE TABLE job_events(
      job_id TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL, event TEXT NOT NULL,
      PRIMARY KEY(job_id, seq));
    INSERT INTO jobs VALUES ('job-old', '{}', 2, 1.0, 2.0, 0.0, '', '', 1, 3, '', '', 'alice');
  )sql")
                  .ok());
  auto jobs = JobStore::Open(*db);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(SchemaVersion(*db, "jobs").value(), 4);
  const auto old = (*jobs)->Get("job-old");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->state, JobState::kRunning);
  EXPECT_EQ(old->epochs_done, 1);
  EXPECT_EQ((*jobs)->WorkerOf("job-old").value(), "");
  // Opening again changes nothing.
  ASSERT_TRUE(JobStore::Open(*db).ok());
  EXPECT_EQ(SchemaVersion(*db, "jobs").value(), 4);
  ASSERT_TRUE(TokenStore::Open(*db).ok());
  EXPECT_EQ(SchemaVersion(*db, "tokens").value(), 1);
  ASSERT_TRUE(DatasetStore::Open(*db, dir_.Join("datasets"), UploadLimits{}).ok());
  EXPECT_EQ(SchemaVersion(*db, "datasets").value(), 2);
  ASSERT_TRUE(ChangeFeed::Open(*db, target_).ok());
  EXPECT_EQ(SchemaVersion(*db, "changes").value(), 1);
}

TEST_P(SharedStateTest, TwoTrainersClaimEveryQueuedJobExactlyOnce) {
  auto a = Connect();
  auto b = Connect();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto store_a = JobStore::Open(*a);
  ASSERT_TRUE(store_a.ok()) << store_a.status();
  auto store_b = JobStore::Open(*b);
  ASSERT_TRUE(store_b.ok()) << store_b.status();
  const double t0 = Now();
  constexpr int kJobs = 40;
  for (int i = 0; i < kJobs; ++i) ASSERT_TRUE((*store_a)->Insert(Queued(absl::StrCat("job-", i), t0 + i)).ok());
  std::mutex mu;
  std::map<std::string, std::string> claimed;  // job -> worker
  int duplicates = 0;
  const auto claim_all = [&](JobStore& store, const std::string& worker) {
    while (true) {
      auto c = store.ClaimNext(worker, Now(), Now() - 60);
      ASSERT_TRUE(c.ok()) << c.status();
      if (!c->has_value()) return;
      std::lock_guard<std::mutex> lock(mu);
      if (!claimed.emplace((*c)->id, worker).second) ++duplicates;
      EXPECT_EQ((*c)->previous_worker, "");
    }
  };
  std::thread ta([&] { claim_all(**store_a, "trainer-a"); });
  std::thread tb([&] { claim_all(**store_b, "trainer-b"); });
  ta.join();
  tb.join();
  EXPECT_EQ(duplicates, 0);
  ASSERT_EQ(claimed.size(), static_cast<size_t>(kJobs));
  // The record says who holds each, and Update (a job's progress) leaves the claim alone.
  JobRecord first = (*store_a)->Get("job-0").value();
  first.epochs_done = 1;
  ASSERT_TRUE((*store_a)->Update(first).ok());
  EXPECT_EQ((*store_b)->WorkerOf("job-0").value(), claimed["job-0"]);
  EXPECT_EQ((*store_a)->Get("job-0")->epochs_done, 1);
}

TEST_P(SharedStateTest, OnePrincipalsBacklogDoesNotHoldTheQueue) {
  auto db = Connect();
  ASSERT_NE(db, nullptr);
  auto store = JobStore::Open(*db).value();
  const double t0 = Now();
  // alice queued five jobs before bob queued one.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->Insert(Queued(absl::StrCat("alice-", i), t0 + i, "alice")).ok());
  ASSERT_TRUE(store->Insert(Queued("bob-0", t0 + 10, "bob")).ok());
  const auto claim = [&](const std::string& worker, int cap = 0) {
    auto c = store->ClaimNext(worker, Now(), Now() - 60, cap);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() && c->has_value() ? (*c)->id : std::string("none");
  };
  // The first trainer takes alice's oldest; the next takes bob's, though
  // alice's four others are older: alice already runs one, bob none.
  EXPECT_EQ(claim("t1"), "alice-0");
  EXPECT_EQ(claim("t2"), "bob-0");
  EXPECT_EQ(claim("t3"), "alice-1");
  // A cap of two running jobs per principal leaves alice's others queued.
  EXPECT_EQ(claim("t4", 2), "none");
  EXPECT_EQ(claim("t4"), "alice-2");
}

TEST_P(SharedStateTest, AJobWhoseTrainerStoppedHeartbeatingIsTakenOver) {
  auto a = Connect();
  auto b = Connect();
  auto store_a = JobStore::Open(*a).value();
  auto store_b = JobStore::Open(*b).value();
  JobRecord job = Queued("job-1", Now());
  ASSERT_TRUE(store_a->Insert(job).ok());
  auto mine = store_a->ClaimNext("a", Now(), Now() - 15);
  ASSERT_TRUE(mine.ok() && mine->has_value());
  job.state = JobState::kRunning;
  ASSERT_TRUE(store_a->Update(job).ok());
  // While a heartbeats, b finds nothing to claim.
  ASSERT_TRUE(store_a->Heartbeat("a", Now()).ok());
  auto none = store_b->ClaimNext("b", Now(), Now() - 15);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // a falls silent past the takeover time: b takes the job, learning from whom.
  const double last_beat = Now();
  auto taken = store_b->ClaimNext("b", last_beat + 20, last_beat + 5);
  ASSERT_TRUE(taken.ok() && taken->has_value()) << taken.status();
  EXPECT_EQ((*taken)->id, "job-1");
  EXPECT_EQ((*taken)->previous_worker, "a");
  EXPECT_NEAR((*taken)->previous_heartbeat, last_beat, 1.0);
  // The crash-loop guard counts a's run of the RUNNING job as ended abnormally.
  EXPECT_EQ((*taken)->abnormal_ends, 1);
  EXPECT_EQ(store_a->WorkerOf("job-1").value(), "b");
  // b stops cleanly: released, anyone claims it next (a RUNNING job before older QUEUED ones).
  ASSERT_TRUE(store_a->Insert(Queued("job-0", Now() - 100)).ok());
  ASSERT_TRUE(store_b->Release("b").ok());
  EXPECT_EQ(store_a->WorkerOf("job-1").value(), "");
  auto next = store_a->ClaimNext("a", Now(), Now() - 15);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ((*next)->id, "job-1");
  EXPECT_EQ((*next)->abnormal_ends, 1) << "a clean release is no abnormal end";
  // a restarts after a crash and finds the job still its own: one more.
  ASSERT_TRUE(store_a->Release("a", /*abnormal=*/true).ok());
  auto again = store_b->ClaimNext("b", Now(), Now() - 15);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->id, "job-1");
  EXPECT_EQ((*again)->abnormal_ends, 2);
  ASSERT_TRUE(store_b->Release("b").ok());
  ASSERT_TRUE(store_a->ClaimNext("a", Now(), Now() - 15)->has_value());
  // A finished job is never claimed or released again.
  job.state = JobState::kSucceeded;
  ASSERT_TRUE(store_a->Update(job).ok());
  ASSERT_TRUE(store_a->Release("a").ok());
  EXPECT_EQ(store_a->WorkerOf("job-1").value(), "a");
  auto last = store_b->ClaimNext("b", Now(), Now() + 100);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->id, "job-0");
  EXPECT_FALSE(store_b->ClaimNext("b", Now(), Now() + 100)->has_value());
}

// A data-parallel job's group: rank 0 (the holder) opens it; three other
// trainers race for its two free ranks from connections of their own, and
// each rank goes to one of them; the holder itself, a closed group and a
// group whose holder stopped heartbeating take no ranks; a new generation
// starts with every rank free again.
TEST_P(SharedStateTest, TrainersClaimEachRankOfADataParallelGroupOnce) {
  auto a = Connect();
  auto store_a = JobStore::Open(*a).value();
  JobRecord job = Queued("job-dp", Now());
  ASSERT_TRUE(store_a->Insert(job).ok());
  ASSERT_TRUE(store_a->ClaimNext("t0", Now(), Now() - 15)->has_value());
  job.state = JobState::kRunning;
  ASSERT_TRUE(store_a->Update(job).ok());
  EXPECT_FALSE(store_a->ClaimRank("t1", Now() - 15)->has_value()) << "no group open yet";
  EXPECT_FALSE(store_a->OpenGroup("job-dp", "someone-else", "h:1", 3).ok()) << "only the holder opens a group";
  auto generation = store_a->OpenGroup("job-dp", "t0", "10.0.0.1:29500", 3);
  ASSERT_TRUE(generation.ok()) << generation.status();
  EXPECT_EQ(*generation, 1);
  EXPECT_FALSE(store_a->ClaimRank("t0", Now() - 15)->has_value()) << "the holder is rank 0 already";
  std::vector<std::optional<JobStore::RankClaim>> claims(3);
  std::vector<std::thread> racers;
  for (int t = 0; t < 3; ++t) {
    racers.emplace_back([&, t] {
      auto db = Connect();
      auto store = JobStore::Open(*db).value();
      for (int attempt = 0; attempt < 3 && !claims[t]; ++attempt) {
        auto c = store->ClaimRank("t" + std::to_string(t + 1), Now() - 15);
        ASSERT_TRUE(c.ok()) << c.status();
        claims[t] = *c;
      }
    });
  }
  for (auto& r : racers) r.join();
  std::set<int> ranks;
  int claimed = 0;
  for (const auto& c : claims) {
    if (!c) continue;
    ++claimed;
    ranks.insert(c->rank);
    EXPECT_EQ(c->address, "10.0.0.1:29500");
    EXPECT_EQ(c->size, 3);
    EXPECT_EQ(c->generation, 1);
  }
  EXPECT_EQ(claimed, 2);
  EXPECT_EQ(ranks, (std::set<int>{1, 2}));
  EXPECT_EQ(store_a->GroupMembers("job-dp", 1)->size(), 2u);
  // The next generation starts empty; a closed one takes nobody; nor one whose rank 0 went silent.
  ASSERT_EQ(store_a->OpenGroup("job-dp", "t0", "10.0.0.1:29501", 3).value(), 2);
  auto again = store_a->ClaimRank("t1", Now() - 15);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->rank, 1);
  EXPECT_EQ((*again)->generation, 2);
  EXPECT_FALSE(store_a->ClaimRank("t1", Now() - 15)->has_value()) << "one rank per trainer";
  EXPECT_FALSE(store_a->ClaimRank("t2", Now() + 100)->has_value()) << "rank 0 stopped heartbeating";
  ASSERT_TRUE(store_a->CloseGroup("job-dp").ok());
  EXPECT_FALSE(store_a->ClaimRank("t2", Now() - 15)->has_value());
}

TEST_P(SharedStateTest, CancelsAndQueueCountsAcrossProcesses) {
  auto a = Connect();
  auto b = Connect();
  auto store_a = JobStore::Open(*a).value();
  auto store_b = JobStore::Open(*b).value();
  ASSERT_TRUE(store_a->Insert(Queued("job-1", Now(), "alice")).ok());
  ASSERT_TRUE(store_a->Insert(Queued("job-2", Now() + 1, "bob")).ok());
  ASSERT_TRUE(store_a->Insert(Queued("job-3", Now() + 2, "alice")).ok());
  EXPECT_EQ(store_b->CountQueued("alice").value(), std::make_pair(3, 2));
  // A queued job nobody holds is claimed by the process that cancels it; once
  // held, no other process can claim it to cancel.
  EXPECT_TRUE(store_b->ClaimUnheld("job-3", "b", Now()).value());
  EXPECT_FALSE(store_a->ClaimUnheld("job-3", "a", Now()).value());
  // So is a RUNNING job its trainer released (to resume later), but not one
  // a trainer holds.
  JobRecord released = store_a->Get("job-2").value();
  released.state = JobState::kRunning;
  ASSERT_TRUE(store_a->Update(released).ok());
  EXPECT_TRUE(store_a->ClaimUnheld("job-2", "a", Now()).value());
  ASSERT_TRUE(store_a->Release("a").ok());
  EXPECT_TRUE(store_b->ClaimUnheld("job-2", "b", Now()).value());
  EXPECT_FALSE(store_a->ClaimUnheld("job-2", "a", Now()).value());
  // A running job's cancel is asked through the database; its holder sees it.
  auto held = store_a->ClaimNext("a", Now(), Now() - 15);
  ASSERT_TRUE(held.ok() && held->has_value());
  EXPECT_TRUE(store_a->CancelRequested("a")->empty());
  ASSERT_TRUE(store_b->RequestCancel((*held)->id).ok());
  EXPECT_EQ(store_a->CancelRequested("a").value(), std::vector<std::string>{(*held)->id});
  EXPECT_TRUE(store_a->CancelRequested("b")->empty());
}

TEST_P(SharedStateTest, ChangesReachAnotherProcessWithinTwoSeconds) {
  auto a = Connect();
  auto b = Connect();
  auto feed_a = ChangeFeed::Open(*a, target_).value();
  auto feed_b = ChangeFeed::Open(*b, target_).value();
  std::atomic<int> models{0}, tokens{0};
  feed_b->Subscribe(ChangeFeed::kModels, [&] { ++models; });
  feed_b->Subscribe(ChangeFeed::kTokens, [&] { ++tokens; });
  ASSERT_TRUE(feed_b->Start().ok());
  // Nothing moved since b started: no calls.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(models.load(), 0);
  ASSERT_TRUE(feed_a->Bump(ChangeFeed::kModels).ok());
  const double took = Within(2.0, [&] { return models.load() == 1; });
  EXPECT_GE(took, 0) << "a model change took over 2 s to arrive";
  EXPECT_EQ(tokens.load(), 0);
  // Inside a transaction, the change arrives once it commits.
  {
    Transaction tx(*a);
    ASSERT_TRUE(feed_a->Bump(ChangeFeed::kTokens).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    EXPECT_EQ(tokens.load(), 0);
    ASSERT_TRUE(tx.Commit().ok());
  }
  EXPECT_GE(Within(2.0, [&] { return tokens.load() == 1; }), 0);
  feed_b->Stop();
}

TEST_P(SharedStateTest, ATokenCreatedOrRevokedInOneProcessCountsInAnotherWithinTwoSeconds) {
  auto a = Connect();
  auto b = Connect();
  auto feed_a = ChangeFeed::Open(*a, target_).value();
  auto feed_b = ChangeFeed::Open(*b, target_).value();
  auto tokens_a = TokenStore::Open(*a).value();
  auto tokens_b = TokenStore::Open(*b).value();
  tokens_a->SetChangeFeed(feed_a.get());
  feed_b->Subscribe(ChangeFeed::kTokens, [&] { ASSERT_TRUE(tokens_b->Reload().ok()); });
  ASSERT_TRUE(feed_b->Start().ok());
  auto app = tokens_a->Create("app", Role::kInference);
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_GE(Within(2.0, [&] { return tokens_b->Authenticate(*app).has_value(); }), 0);
  EXPECT_EQ(tokens_b->Authenticate(*app)->name, "app");
  ASSERT_TRUE(tokens_a->Revoke("app").ok());
  EXPECT_GE(Within(2.0, [&] { return !tokens_b->Authenticate(*app).has_value(); }), 0);
  feed_b->Stop();
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedStateTest,
                         ::testing::Values(Database::Kind::kSqlite, Database::Kind::kPostgres), [](const auto& info) {
                           return info.param == Database::Kind::kSqlite ? "SQLite" : "PostgreSQL";
                         });

}  // namespace
}  // namespace graft::core
