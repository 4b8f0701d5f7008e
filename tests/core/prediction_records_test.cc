#include "core/serve/prediction_records.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/serve/model_store.h"
#include "core/util/files.h"
#include "tests/fakes/manual_clock.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

namespace fs = std::filesystem;

class PredictionRecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(dir_.Join("graft.db"));
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    model_.id = "model-0123456789ab";
    model_.owner = "alice";
    model_.name = "bees";
    model_.version = 2;
    model_.class_names = {"ants", "bees"};
  }

  std::unique_ptr<PredictionRecords> Open(RecordsOptions options) {
    auto r = PredictionRecords::Open(*db_, dir_.Join("predictions"), options, clock_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
  }

  static RecordQuery Query(int64_t limit = 100) {
    RecordQuery q;
    q.model_key = "alice/bees";
    q.limit = limit;
    return q;
  }

  // A candidate answering `top1` for "bees" (the rest for "ants").
  RecordCandidate Candidate(int i, float top1, const std::string* image) {
    RecordCandidate c;
    c.prediction_id = "pred-" + std::to_string(100000000000 + i);
    c.model = &model_;
    c.principal = "app";
    c.image = image;
    c.top = {{1, "bees", top1}, {0, "ants", 1 - top1}};
    return c;
  }

  // Files under the records' image folder.
  int ImageFiles() {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_.Join("predictions"))) n += e.is_regular_file();
    return n;
  }

  graft::testing::TempDir dir_;
  std::unique_ptr<Database> db_;
  fakes::ManualClock clock_;
  ModelInfo model_;
};

TEST_F(PredictionRecordsTest, NoPolicyKeepsNothingAndTheKeyIsTheOwnersName) {
  auto records = Open({});
  const std::string image = "jpeg bytes";
  EXPECT_EQ(PredictionRecords::KeyOf(model_), "alice/bees");
  EXPECT_EQ(records->Consider(Candidate(0, 0.1f, &image)), RecordOutcome::kNotChosen);
  ModelInfo unnamed = model_;
  unnamed.name.clear();
  EXPECT_EQ(PredictionRecords::KeyOf(unnamed), "model-0123456789ab");
  EXPECT_EQ(records->SetPolicy("alice/bees", "alice", {1.5}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PredictionRecordsTest, ASampleRateOfAHalfKeepsAboutHalf) {
  RecordsOptions options;
  options.seed = 7;
  options.default_max_per_minute = 1e6;
  auto records = Open(options);
  RecordPolicy p;
  p.sample_rate = 0.5;
  ASSERT_TRUE(records->SetPolicy("alice/bees", "alice", p).ok());
  const std::string image = "same bytes every time";
  int kept = 0;
  for (int i = 0; i < 400; ++i) kept += Kept(records->Consider(Candidate(i, 0.99f, &image)));
  EXPECT_NEAR(kept, 200, 30);
  RecordQuery q = Query(1000);
  auto page = records->List(q);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(static_cast<int>(page->records.size()), kept);
  EXPECT_EQ(page->records[0].reason, "sampled");
  EXPECT_EQ(page->records[0].top[0].label, "bees");
  // One image file however many records hold the same bytes.
  EXPECT_EQ(ImageFiles(), 1);
  // A second store with the same seed keeps the same predictions.
  auto again = PredictionRecords::Open(*db_, dir_.Join("predictions2"), options, clock_);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->SetPolicy("alice/bees", "alice", p).ok());
  int kept_again = 0;
  for (int i = 0; i < 400; ++i) kept_again += Kept((*again)->Consider(Candidate(1000 + i, 0.99f, &image)));
  EXPECT_EQ(kept_again, kept);
}

TEST_F(PredictionRecordsTest, LowConfidenceAndMarginKeepExactlyThoseUnderTheThreshold) {
  auto records = Open({});
  RecordPolicy p;
  p.below_confidence = 0.6;
  ASSERT_TRUE(records->SetPolicy("alice/bees", "alice", p).ok());
  const std::string image = "x";
  const float tops[] = {0.95f, 0.59f, 0.61f, 0.5f, 0.6f, 0.3f};
  int expected = 0;
  for (int i = 0; i < 6; ++i) {
    const RecordOutcome o = records->Consider(Candidate(i, tops[i], &image));
    EXPECT_EQ(Kept(o), tops[i] < 0.6f) << tops[i];
    expected += tops[i] < 0.6f;
    if (Kept(o)) {
      EXPECT_EQ(o, RecordOutcome::kLowConfidence);
    }
  }
  RecordQuery q = Query();
  q.low_confidence_only = true;
  EXPECT_EQ(static_cast<int>(records->List(q)->records.size()), expected);

  p.below_confidence = 0;
  p.below_margin = 0.2;  // 0.59 leads by 0.18; 0.61 by 0.22
  ASSERT_TRUE(records->SetPolicy("alice/bees", "alice", p).ok());
  EXPECT_EQ(records->Consider(Candidate(10, 0.59f, &image)), RecordOutcome::kLowMargin);
  EXPECT_EQ(records->Consider(Candidate(11, 0.61f, &image)), RecordOutcome::kNotChosen);
  // A tensor input has no image to keep.
  EXPECT_EQ(records->Consider(Candidate(12, 0.5f, nullptr)), RecordOutcome::kNoImage);
}

TEST_F(PredictionRecordsTest, QuotaAndRateCapStopKeepingAndSayWhich) {
  RecordsOptions options;
  options.default_max_per_minute = 1e6;
  auto records = Open(options);
  RecordPolicy p;
  p.sample_rate = 1;
  p.quota_bytes = 1000;
  ASSERT_TRUE(records->SetPolicy("alice/bees", "alice", p).ok());
  std::vector<std::string> images;
  for (int i = 0; i < 5; ++i) images.push_back(std::string(300, static_cast<char>('a' + i)));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(records->Consider(Candidate(i, 0.9f, &images[i])), RecordOutcome::kSampled);
  EXPECT_EQ(records->Consider(Candidate(3, 0.9f, &images[3])), RecordOutcome::kOverQuota);
  EXPECT_EQ(*records->BytesOf("alice/bees"), 900);

  p.quota_bytes = 0;  // the store's default
  p.max_per_minute = 2;
  ASSERT_TRUE(records->SetPolicy("alice/bees", "alice", p).ok());
  EXPECT_EQ(records->Consider(Candidate(4, 0.9f, &images[4])), RecordOutcome::kSampled);
  EXPECT_EQ(records->Consider(Candidate(5, 0.9f, &images[4])), RecordOutcome::kSampled);
  EXPECT_EQ(records->Consider(Candidate(6, 0.9f, &images[4])), RecordOutcome::kOverRate);
  clock_.Advance(std::chrono::seconds(31));  // one token back
  EXPECT_EQ(records->Consider(Candidate(7, 0.9f, &images[4])), RecordOutcome::kSampled);
  EXPECT_EQ(records->Consider(Candidate(8, 0.9f, &images[4])), RecordOutcome::kOverRate);
}

TEST_F(PredictionRecordsTest, FeedbackIsKeptWithItsAuthorAndRecordsExpireWithTheirImages) {
  RecordsOptions options;
  options.retention_s = 3600;
  auto records = Open(options);
  RecordPolicy p;
  p.sample_rate = 1;
  ASSERT_TRUE(records->SetPolicy("alice/bees", "alice", p).ok());
  const std::string old_image = "old", new_image = "new";
  ASSERT_TRUE(Kept(records->Consider(Candidate(1, 0.9f, &old_image))));
  clock_.Advance(std::chrono::minutes(40));
  const RecordCandidate fresh = Candidate(2, 0.9f, &new_image);
  ASSERT_TRUE(Kept(records->Consider(fresh)));

  auto labelled = records->SetFeedback(fresh.prediction_id, "ants", "bob", model_.class_names);
  ASSERT_TRUE(labelled.ok()) << labelled.status();
  EXPECT_TRUE(labelled->disagrees());
  auto got = records->Get(fresh.prediction_id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->feedback_label, "ants");
  EXPECT_EQ(got->feedback_author, "bob");
  EXPECT_EQ(*records->Image(*got), "new");
  const auto wasp = records->SetFeedback(fresh.prediction_id, "wasps", "bob", model_.class_names);
  EXPECT_EQ(wasp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wasp.status().message().find("allow_new_classes"), std::string::npos) << wasp.status();
  EXPECT_EQ(records->SetFeedback("pred-000000000000", "ants", "bob", model_.class_names).status().code(), absl::StatusCode::kNotFound);

  clock_.Advance(std::chrono::minutes(30));  // the first is 70 minutes old
  EXPECT_EQ(records->Get(Candidate(1, 0, nullptr).prediction_id).status().code(), absl::StatusCode::kNotFound);
  auto page = records->List(Query());
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].id, fresh.prediction_id);
  EXPECT_EQ(ImageFiles(), 1);

  RecordQuery with = Query();
  with.with_feedback = false;
  EXPECT_TRUE(records->List(with)->records.empty());
  EXPECT_EQ(*records->Purge("alice/bees"), 1);
  EXPECT_EQ(ImageFiles(), 0);
}

TEST_F(PredictionRecordsTest, DeletingAModelDeletesOnlyItsRecordsAndPagesHaveNoGaps) {
  auto records = Open({});
  RecordPolicy p;
  p.sample_rate = 1;
  ASSERT_TRUE(records->SetPolicy("alice/bees", "alice", p).ok());
  const std::string image = "i";
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Kept(records->Consider(Candidate(i, 0.9f, &image))));
    clock_.Advance(std::chrono::seconds(1));
  }
  ModelInfo v3 = model_;
  v3.id = "model-ba9876543210";
  v3.version = 3;
  RecordCandidate c = Candidate(9, 0.9f, &image);
  c.model = &v3;
  ASSERT_TRUE(Kept(records->Consider(c)));

  RecordQuery q = Query(4);
  auto first = records->List(q);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->records.size(), 4u);
  EXPECT_EQ(first->records[0].version, 3);  // newest first
  q.offset = first->next_offset;
  auto second = records->List(q);
  ASSERT_EQ(second->records.size(), 2u);
  EXPECT_EQ(second->next_offset, 0);

  EXPECT_EQ(*records->DeleteForModel(model_.id), 5);
  auto left = records->List(Query());
  ASSERT_EQ(left->records.size(), 1u);
  EXPECT_EQ(left->records[0].model_id, v3.id);
  EXPECT_EQ(ImageFiles(), 1);  // still referenced
}

}  // namespace
}  // namespace graft::core
