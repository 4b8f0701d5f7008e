// core::JobRunner on its own: a tiny backbone (tests/fakes) and a dataset of
// coloured squares made here, so these run without ../shared in seconds.
// Ordering never sleeps: Watch returns when a job ends, and an observer
// holds the trainer at an epoch's end until the test has done what it must
// at exactly that point (cancel, stop).

#include "core/jobs/job_runner.h"
#include "core/jobs/admission.h"

#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <map>
#include <future>
#include <mutex>

#include "core/data/upload_session.h"
#include "core/serve/predictor.h"
#include "core/util/limit_error.h"
#include "tests/fakes/tiny_backbone.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {
namespace fs = std::filesystem;

const Principal kAlice{"alice", Role::kTrain};
const Principal kBob{"bob", Role::kTrain};

// Holds the trainer at the end of epoch `at` of any job until Release, or
// until a cancel of a running job has tripped its token.
class EpochLatch : public JobObserver {
 public:
  explicit EpochLatch(int at) : at_(at) {}
  void OnCancelRequested(const std::string&) override { Release(); }
  void OnEpoch(const JobRecord&, const EpochMetrics& m, int64_t) override {
    if (m.epoch != at_) return;
    std::unique_lock<std::mutex> lock(mu_);
    reached_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  // Waits (at most a minute) until a trainer is held.
  bool AwaitReached() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::minutes(1), [&] { return reached_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  const int at_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool reached_ = false;
  bool released_ = false;
};

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(dir_.Join("graft.db"));
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto datasets = DatasetStore::Open(*db_, dir_.Join("datasets"), UploadLimits{});
    ASSERT_TRUE(datasets.ok()) << datasets.status();
    datasets_ = std::move(*datasets);
    auto jobs = JobStore::Open(*db_);
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = std::move(*jobs);
    auto zoo_options = fakes::TinyZooAt(dir_.Join("zoo"));
    ASSERT_TRUE(zoo_options.ok()) << zoo_options.status();
    auto zoo = Zoo::Create(*zoo_options);
    ASSERT_TRUE(zoo.ok()) << zoo.status();
    zoo_ = std::move(*zoo);
    auto models = ModelStore::Open(*db_, dir_.Join("models"), *zoo_);
    ASSERT_TRUE(models.ok()) << models.status();
    models_ = std::move(*models);
    options_.checkpoint_dir = dir_.Join("checkpoints");
    options_.feature_spill_dir = "";
    alice_colours_ = Upload(kAlice);
  }

  // Red and blue squares, 12 of each, a quarter of them for validation; the
  // dataset's id.
  std::string Upload(const Principal& owner) {
    UploadHeader header;
    header.name = "colours";
    header.owner = owner.name;
    header.format = UploadFormat::kFolder;
    header.split_fraction = 0.25;
    auto session = UploadSession::Begin(*datasets_, header);
    EXPECT_TRUE(session.ok()) << session.status();
    if (!session.ok()) return "";
    for (int i = 0; i < 12; ++i) {
      EXPECT_TRUE((*session)->Append(absl::StrCat("red/", i, ".png"),
                                     testing::EncodeImage("png", 40, 40, 10 + i, 20, 200 + i), true).ok());
      EXPECT_TRUE((*session)->Append(absl::StrCat("blue/", i, ".png"),
                                     testing::EncodeImage("png", 40, 40, 200 + i, 30, 10 + i), true).ok());
    }
    auto result = (*session)->Finish();
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->dataset.id : "";
  }

  // A flat dataset of `count` squares of each named colour (b, g, r: OpenCV's order), a
  // quarter for validation, no two alike nor like "colours"; its id.
  std::string UploadSquares(const std::string& name, const std::map<std::string, std::array<int, 3>>& colours,
                            int count, int shade) {
    UploadHeader header;
    header.name = name;
    header.owner = kAlice.name;
    header.format = UploadFormat::kFolder;
    header.split_fraction = 0.25;
    auto session = UploadSession::Begin(*datasets_, header);
    EXPECT_TRUE(session.ok()) << session.status();
    if (!session.ok()) return "";
    for (const auto& [cls, rgb] : colours) {
      for (int i = 0; i < count; ++i) {
        EXPECT_TRUE((*session)->Append(absl::StrCat(cls, "/", i, ".png"),
                                       testing::EncodeImage("png", 40, 40, rgb[0] + shade + i, rgb[1] + shade,
                                                            rgb[2] + shade), true).ok());
      }
    }
    auto result = (*session)->Finish();
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->dataset.id : "";
  }

  std::unique_ptr<JobRunner> NewRunner(JobObserver* observer = nullptr) {
    return std::make_unique<JobRunner>(*jobs_, *datasets_, *models_, *zoo_, options_, observer);
  }

  static JobSpec Spec(int epochs, const std::string& dataset = "colours") {
    JobSpec spec;
    spec.name = "colours on tiny";
    spec.backbone = "tiny";
    spec.dataset = dataset;
    spec.batch_size = 6;
    StageSpec stage;
    stage.epochs = epochs;
    stage.train = "head";
    stage.optimizer.learning_rate = 0.05;
    spec.stages = {stage};
    spec.seed = 7;
    return spec;
  }

  // Follows the job until it ends; its record then.
  JobRecord AwaitEnd(JobRunner& runner, const std::string& id) {
    const absl::Status watched = runner.Watch(id, false, [](const JobEvent&) { return true; }, [] { return true; });
    EXPECT_TRUE(watched.ok()) << watched;
    return runner.Get(id).value();
  }

  std::vector<int> EpochNumbers(const std::string& id) {
    std::vector<int> out;
    const std::vector<JobEvent> events = jobs_->Events(id, 0).value();
    for (const JobEvent& e : events) {
      if (e.type == JobEventType::kEpoch) out.push_back(e.epoch_number);
    }
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<DatasetStore> datasets_;
  std::unique_ptr<JobStore> jobs_;
  std::unique_ptr<Zoo> zoo_;
  std::unique_ptr<ModelStore> models_;
  RunnerOptions options_;
  std::string alice_colours_;
};

TEST_F(JobRunnerTest, AJobTrainsOnTheTinyBackboneAndPublishesAModelThatTellsTheColoursApart) {
  auto runner = NewRunner();
  ASSERT_TRUE(runner->Start().ok());
  JobSpec spec = Spec(8);
  spec.model_name = "colours";
  auto job = runner->Submit(spec, kAlice);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, JobState::kQueued);
  const JobRecord done = AwaitEnd(*runner, job->id);
  ASSERT_EQ(done.state, JobState::kSucceeded) << done.error;
  EXPECT_EQ(done.epochs_done, 8);
  EXPECT_EQ(EpochNumbers(done.id), (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8}));
  ASSERT_TRUE(done.best.has_value());
  EXPECT_EQ(done.best->val_accuracy, 1.0) << "red against blue is the easiest task there is";
  auto model = models_->Get(done.model_id);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->info().owner, "alice");
  EXPECT_EQ((*model)->info().class_names, (std::vector<std::string>{"blue", "red"}));
  EXPECT_EQ(models_->Resolve("colours", "alice", false).value(), done.model_id);
  EXPECT_FALSE(fs::exists(fs::path(options_.checkpoint_dir) / (done.id + ".ckpt"))) << "its checkpoint is gone";
  runner->Stop();
}

TEST_F(JobRunnerTest, QueuedJobsRespectBothQueueLimitsAndRunOldestFirstOnceStarted) {
  options_.max_queued_jobs = 3;
  options_.max_queued_jobs_per_principal = 2;
  const std::string bob_colours = Upload(kBob);
  auto runner = NewRunner();  // not started: everything stays QUEUED
  auto a1 = runner->Submit(Spec(1), kAlice);
  auto a2 = runner->Submit(Spec(1), kAlice);
  ASSERT_TRUE(a1.ok() && a2.ok());
  const auto a3 = runner->Submit(Spec(1), kAlice);
  EXPECT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(LimitFlagOf(a3.status()), "max_queued_jobs_per_principal") << a3.status();
  auto b1 = runner->Submit(Spec(1), kBob);
  ASSERT_TRUE(b1.ok()) << b1.status();
  const auto b2 = runner->Submit(Spec(1), kBob);
  EXPECT_EQ(LimitFlagOf(b2.status()), "max_queued_jobs") << b2.status();
  EXPECT_TRUE(runner->DatasetInUse(alice_colours_));

  // A queued job cancelled never runs, and frees its place in the queue.
  auto cancelled = runner->Cancel(a1->id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state, JobState::kCancelled);
  EXPECT_TRUE(runner->Submit(Spec(1), kAlice).ok());

  ASSERT_TRUE(runner->Start().ok());
  const JobRecord first = AwaitEnd(*runner, a2->id);
  const JobRecord second = AwaitEnd(*runner, b1->id);
  EXPECT_EQ(first.state, JobState::kSucceeded) << first.error;
  EXPECT_EQ(second.state, JobState::kSucceeded) << second.error;
  EXPECT_LE(first.finished_at, second.started_at) << "one trainer: the older job ran first, alone";
  EXPECT_EQ(runner->Get(a1->id)->started_at, 0) << "the cancelled job never started";
  EXPECT_TRUE(EpochNumbers(a1->id).empty());
  runner->Stop();
}

TEST_F(JobRunnerTest, CancellingARunningJobStopsItBeforeTheNextEpochAndPublishesNothing) {
  EpochLatch latch(1);
  auto runner = NewRunner(&latch);
  ASSERT_TRUE(runner->Start().ok());
  auto job = runner->Submit(Spec(50), kAlice);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(latch.AwaitReached());
  EXPECT_EQ(runner->Get(job->id)->state, JobState::kRunning);
  // Cancel waits for the trainer to wind down; the latch lets the trainer go
  // once the cancel has tripped its token.
  const auto cancelled = runner->Cancel(job->id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state, JobState::kCancelled);
  const JobRecord done = AwaitEnd(*runner, job->id);
  EXPECT_EQ(done.state, JobState::kCancelled);
  EXPECT_EQ(EpochNumbers(done.id), std::vector<int>{1}) << "no epoch after the cancel";
  EXPECT_TRUE(done.model_id.empty());
  EXPECT_TRUE(models_->List().empty());
  EXPECT_FALSE(runner->DatasetInUse(alice_colours_));
  runner->Stop();
}

TEST_F(JobRunnerTest, AJobRunningWhenItsRunnerStopsResumesInTheNextRunnerWithoutRepeatingAnEpoch) {
  std::string id;
  {
    EpochLatch latch(2);
    auto runner = NewRunner(&latch);
    ASSERT_TRUE(runner->Start().ok());
    auto job = runner->Submit(Spec(5), kAlice);
    ASSERT_TRUE(job.ok()) << job.status();
    id = job->id;
    ASSERT_TRUE(latch.AwaitReached());
    runner->RequestStop();
    latch.Release();
    runner->Stop();
    const JobRecord left = runner->Get(id).value();
    EXPECT_EQ(left.state, JobState::kRunning) << "a shutdown leaves the job to resume";
    EXPECT_EQ(left.epochs_done, 2);
    EXPECT_TRUE(models_->List().empty());
  }
  auto next = NewRunner();  // as graftd after a restart
  ASSERT_TRUE(next->Start().ok());
  const JobRecord done = AwaitEnd(*next, id);
  ASSERT_EQ(done.state, JobState::kSucceeded) << done.error;
  EXPECT_EQ(EpochNumbers(id), (std::vector<int>{1, 2, 3, 4, 5}));
  bool resumed = false;
  const std::vector<JobEvent> events = jobs_->Events(id, 0).value();
  for (const JobEvent& e : events) {
    resumed |= e.type == JobEventType::kState && e.reason.find("resuming after epoch 2") != std::string::npos;
  }
  EXPECT_TRUE(resumed) << "the restart says where it resumed";
  EXPECT_EQ(models_->List().size(), 1u);
  next->Stop();
}

TEST_F(JobRunnerTest, AdmissionRefusesWhatCannotRunNamingTheFieldOrTheFlag) {
  auto runner = NewRunner();
  JobSpec unknown = Spec(1);
  unknown.backbone = "tinier";
  const auto no_backbone = runner->Submit(unknown, kAlice);
  EXPECT_EQ(no_backbone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_backbone.status().message().find("spec.backbone"), std::string::npos) << no_backbone.status();

  const auto others = runner->Submit(Spec(1, alice_colours_), kBob);
  EXPECT_EQ(others.status().code(), absl::StatusCode::kPermissionDenied) << others.status();
  EXPECT_NE(others.status().message().find("spec.dataset"), std::string::npos) << others.status();
  EXPECT_EQ(runner->Submit(Spec(1), kBob).status().code(), absl::StatusCode::kNotFound) << "bob has no 'colours'";
  EXPECT_TRUE(runner->Submit(Spec(1, alice_colours_), Principal{"root", Role::kAdmin}).ok()) << "admins use any";

  JobSpec deep = Spec(1);
  deep.stages[0].train = "top:5";  // tiny has two blocks
  EXPECT_EQ(runner->Submit(deep, kAlice).status().code(), absl::StatusCode::kInvalidArgument);

  options_.max_job_memory_bytes = 1000;
  auto small = NewRunner();
  const auto costly = small->Submit(Spec(1), kAlice);
  EXPECT_EQ(costly.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(LimitFlagOf(costly.status()), "max_job_memory_bytes") << costly.status();
  // Nothing refused was stored.
  EXPECT_EQ(runner->List(std::nullopt)->size(), 1u);
}

TEST_F(JobRunnerTest, AddedDatasetsJoinTheTrainingSplitWithTheirNewClassesAndAHoldoutMustBeUnseen) {
  const std::string more = UploadSquares("more", {{"green", {20, 200, 20}}, {"red", {20, 20, 190}}}, 8, 30);
  const std::string unseen = UploadSquares("unseen", {{"blue", {190, 20, 20}}, {"red", {20, 20, 190}}}, 4, 50);
  auto runner = NewRunner();
  ASSERT_TRUE(runner->Start().ok());

  JobSpec spec = Spec(4);
  spec.model_name = "colours";
  spec.add_datasets = {"more"};
  auto job = runner->Submit(spec, kAlice);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->spec.add_datasets, (std::vector<std::string>{more})) << "stored by id";
  JobRecord done = AwaitEnd(*runner, job->id);
  ASSERT_EQ(done.state, JobState::kSucceeded) << done.error;
  // The dataset's classes first, then the added dataset's new one.
  EXPECT_EQ(models_->Get(done.model_id).value()->info().class_names,
            (std::vector<std::string>{"blue", "red", "green"}));

  // Added datasets are the caller's own, not the job's own, and not twice.
  JobSpec twice = Spec(1);
  twice.add_datasets = {"more", more};
  const auto refused_twice = runner->Submit(twice, kAlice);
  EXPECT_EQ(refused_twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused_twice.status().message().find("spec.add_datasets[1]: 'more' is added twice"), std::string::npos)
      << refused_twice.status();
  JobSpec flood = Spec(1);
  flood.add_datasets.assign(kMaxAddedDatasets + 1, "more");
  const auto refused_flood = runner->Submit(flood, kAlice);
  EXPECT_EQ(refused_flood.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused_flood.status().message().find("spec.add_datasets: at most 16 datasets"), std::string::npos)
      << refused_flood.status();
  JobSpec itself = Spec(1);
  itself.add_datasets = {"colours"};
  EXPECT_NE(runner->Submit(itself, kAlice).status().message().find("is the job's dataset already"), std::string::npos);
  JobSpec others = Spec(1, Upload(kBob));
  others.add_datasets = {more};
  const auto refused_others = runner->Submit(others, kBob);
  EXPECT_EQ(refused_others.status().code(), absl::StatusCode::kPermissionDenied) << refused_others.status();
  EXPECT_NE(refused_others.status().message().find("spec.add_datasets[0]"), std::string::npos);

  // A holdout that shares content with what the job trains on is refused by name.
  JobSpec promoted = Spec(2);
  promoted.model_name = "colours";
  promoted.add_datasets = {"more"};
  promoted.has_promotion = true;
  promoted.promotion.alias = "prod";
  for (const std::string seen : {"colours", "more"}) {
    promoted.promotion.holdout = seen;
    const auto refused = runner->Submit(promoted, kAlice);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << seen;
    EXPECT_NE(refused.status().message().find("spec.promotion.holdout: dataset '" + seen + "' shares"),
              std::string::npos)
        << refused.status();
  }
  JobSpec unnamed = promoted;
  unnamed.model_name.clear();
  unnamed.promotion.holdout = "unseen";
  EXPECT_NE(runner->Submit(unnamed, kAlice).status().message().find("spec.promotion: needs model_name"),
            std::string::npos);

  // An unseen holdout is taken. This runner has no predictor to evaluate
  // with: the job still succeeds, its model stays a version, the alias is
  // left alone, and the decision says why.
  promoted.promotion.holdout = "unseen";
  job = runner->Submit(promoted, kAlice);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->spec.promotion.holdout, unseen);
  done = AwaitEnd(*runner, job->id);
  ASSERT_EQ(done.state, JobState::kSucceeded) << done.error;
  std::vector<PromotionResult> decisions;
  const std::vector<JobEvent> events = jobs_->Events(done.id, 0).value();
  for (const JobEvent& e : events) {
    if (e.type == JobEventType::kPromotion) decisions.push_back(e.promotion);
  }
  ASSERT_EQ(decisions.size(), 1u);
  EXPECT_FALSE(decisions[0].promoted);
  EXPECT_EQ(decisions[0].alias, "colours@prod");
  EXPECT_EQ(decisions[0].challenger, done.model_id);
  EXPECT_EQ(decisions[0].challenger_version, 2);
  EXPECT_NE(decisions[0].reason.find("no predictor"), std::string::npos) << decisions[0].reason;
  EXPECT_TRUE(absl::IsNotFound(models_->Alias("alice", "colours", "prod").status()));
  runner->Stop();
}

TEST_F(JobRunnerTest, APromotionEvaluatesBothVersionsOnTheHoldoutAndMovesTheAliasOnlyOnAWin) {
  const std::string more = UploadSquares("more", {{"green", {20, 200, 20}}, {"red", {20, 20, 190}}}, 8, 30);
  UploadSquares("unseen", {{"blue", {190, 20, 20}}, {"red", {20, 20, 190}}}, 4, 50);
  Predictor predictor(*zoo_, models_.get(), {});
  options_.predictor = &predictor;
  auto runner = NewRunner();
  ASSERT_TRUE(runner->Start().ok());
  JobSpec spec = Spec(8);
  spec.model_name = "colours";
  const JobRecord v1 = AwaitEnd(*runner, runner->Submit(spec, kAlice).value().id);
  ASSERT_EQ(v1.state, JobState::kSucceeded) << v1.error;
  ASSERT_TRUE(models_->SetAlias("alice", "colours", "prod", 1).ok());

  const auto decide = [&](double min_gain, double canary) {
    RetrainRequest r;
    r.model = "colours@prod";
    r.add_datasets = {"more"};
    r.has_promotion = true;
    r.promotion.alias = "prod";
    r.promotion.holdout = "unseen";
    r.promotion.min_gain = min_gain;
    r.promotion.canary_percent = canary;
    auto job = runner->Retrain(r, kAlice);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return PromotionResult{};
    EXPECT_EQ(job->spec.model_name, "colours");
    EXPECT_EQ(job->spec.seed, 7u) << "the champion's spec";
    const JobRecord done = AwaitEnd(*runner, job->id);
    EXPECT_EQ(done.state, JobState::kSucceeded) << done.error;
    const std::vector<JobEvent> events = jobs_->Events(done.id, 0).value();
    for (const JobEvent& e : events) {
      if (e.type == JobEventType::kPromotion) return e.promotion;
    }
    ADD_FAILURE() << "no promotion event";
    return PromotionResult{};
  };
  // Red against blue is perfect for both: a lead of 0.5 cannot be had.
  const PromotionResult kept = decide(0.5, 0);
  EXPECT_TRUE(kept.compared);
  EXPECT_FALSE(kept.promoted) << kept.reason;
  EXPECT_EQ(kept.champion_version, 1);
  EXPECT_EQ(kept.challenger_version, 2);
  EXPECT_EQ(kept.holdout_images, 8);
  EXPECT_EQ(kept.champion_value, 1.0);
  EXPECT_EQ(kept.challenger_value, 1.0);
  EXPECT_EQ(models_->Alias("alice", "colours", "prod")->version, 1);
  // min_gain 0: a tie is a win; with a canary share the alias keeps its
  // version and the challenger takes the share.
  const PromotionResult canary = decide(0, 10);
  EXPECT_TRUE(canary.promoted) << canary.reason;
  EXPECT_EQ(canary.canary_percent, 10);
  EXPECT_NE(canary.reason.find("colours@prod keeps version 1 with version 3 as its canary at 10%"), std::string::npos)
      << canary.reason;
  const AliasTarget target = models_->Alias("alice", "colours", "prod").value();
  EXPECT_EQ(target.version, 1);
  ASSERT_EQ(target.canaries.size(), 1u);
  EXPECT_EQ(target.canaries[0].version, 3);
  EXPECT_EQ(target.canaries[0].percent, 10);
  runner->Stop();
}

TEST(Promotion, TheChallengerMustLeadByMinGainInTheMetricsDirection) {
  EXPECT_TRUE(ChallengerWins(Monitor::kValAccuracy, 0.90, 0.905, 0.005));
  EXPECT_FALSE(ChallengerWins(Monitor::kValAccuracy, 0.90, 0.9049, 0.005));
  EXPECT_FALSE(ChallengerWins(Monitor::kValMacroF1, 0.90, 0.80, 0.005));
  EXPECT_TRUE(ChallengerWins(Monitor::kValLoss, 0.30, 0.29, 0.005)) << "lower loss wins";
  EXPECT_FALSE(ChallengerWins(Monitor::kValLoss, 0.30, 0.31, 0.0));
  EXPECT_TRUE(ChallengerWins(Monitor::kValAccuracy, 0.90, 0.90, 0.0)) << "min_gain 0: a tie is enough";
  EvaluationReport report;
  report.accuracy = 0.7;
  report.macro_f1 = 0.6;
  report.log_loss = 0.5;
  EXPECT_EQ(MetricValue(report, Monitor::kValAccuracy), 0.7);
  EXPECT_EQ(MetricValue(report, Monitor::kValMacroF1), 0.6);
  EXPECT_EQ(MetricValue(report, Monitor::kValLoss), 0.5);
}

TEST_F(JobRunnerTest, AdmissionCompletesASpecItAcceptsAndHoldsDataParallelJobsToSharedTrainers) {
  const JobAdmission admission(*zoo_, *datasets_, {/*max_job_memory_bytes=*/8LL << 30, /*shared=*/false});
  JobSpec spec = Spec(3);
  spec.backbone = "TINY";  // names are found case-insensitively and stored canonical
  ASSERT_TRUE(admission.Admit(spec, kAlice).ok());
  EXPECT_EQ(spec.backbone, "tiny");
  EXPECT_EQ(spec.dataset, alice_colours_) << "the dataset is stored by id";
  EXPECT_EQ(spec.TotalEpochs(), 3);
  JobSpec group = Spec(1);
  group.workers = 2;
  const absl::Status alone = admission.Admit(group, kAlice);
  EXPECT_EQ(alone.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(alone.message().find("spec.workers"), std::string::npos) << alone;
  const JobAdmission shared(*zoo_, *datasets_, {8LL << 30, /*shared=*/true});
  group = Spec(1);
  group.workers = 2;
  EXPECT_TRUE(shared.Admit(group, kAlice).ok());
}

TEST_F(JobRunnerTest, APublishThatFailsFailsTheJobWithTheReasonAndKeepsNoModel) {
  auto runner = NewRunner();
  auto job = runner->Submit(Spec(2), kAlice);
  ASSERT_TRUE(job.ok()) << job.status();
  // The models' folder is gone and a file stands in its place: no model can
  // be written there (even as root).
  fs::remove_all(dir_.Join("models"));
  { std::ofstream(dir_.Join("models")) << "not a folder"; }
  ASSERT_TRUE(runner->Start().ok());
  const JobRecord done = AwaitEnd(*runner, job->id);
  EXPECT_EQ(done.state, JobState::kFailed);
  EXPECT_NE(done.error.find("publishing the model"), std::string::npos) << done.error;
  EXPECT_EQ(done.epochs_done, 2) << "it trained; only publishing failed";
  EXPECT_TRUE(done.model_id.empty());
  EXPECT_TRUE(models_->List().empty());
  runner->Stop();
}

}  // namespace
}  // namespace graft::core
