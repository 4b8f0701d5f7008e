// Canary aliases through gRPC: `prod` at version 1 with version 2 taking 10 %
// of its predictions. 2,000 predictions without a routing key are served by
// version 2 at 10 % +- 2.5 %; a routing key always reaches the same version;
// moving the shares while 8 clients predict fails nothing; the canary is
// stored (a restart keeps it), shown on the version (canary_of), protects the
// version from deletion, and ends when the alias is set without it.

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <thread>
#include <vector>

#include "tests/integration/training_fixture.h"

namespace graft::server {
namespace {

class CanaryTest : public TrainingTest {
 protected:
  std::string Train() {
    // The smallest input graft takes: this test is about routing, and its
    // 2,800 predictions cost what each forward costs.
    v1::JobSpec spec = Spec("hym", 1);
    spec.set_input_size(64);
    spec.set_model_name("insects");
    return TrainModel(spec);
  }

  v1::PredictRequest Request(const std::string& key = "") {
    v1::PredictRequest r;
    r.add_models("insects@prod");
    r.add_images()->set_encoded(image_);
    r.set_top_k(1);
    r.set_routing_key(key);
    return r;
  }

  // An ant photo made small (96x64): decoding it costs little beside the forward.
  static std::string SmallAnt() {
    const cv::Mat photo = cv::imread(graft::testing::HymenopteraDir() + "/val/ants/10308379_1b6c72e180.jpg");
    cv::Mat small;
    cv::resize(photo, small, cv::Size(96, 64), 0, 0, cv::INTER_AREA);
    std::vector<uchar> jpeg;
    EXPECT_TRUE(cv::imencode(".jpg", small, jpeg));
    return std::string(jpeg.begin(), jpeg.end());
  }

  std::string image_ = SmallAnt();
};

TEST_F(CanaryTest, TenPercentGoToTheCanaryKeysStickAndSharesMoveUnderLoad) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  const std::string v1_id = Train();
  const std::string v2_id = Train();

  // Refusals, each naming what was wrong.
  auto refused = client_->SetModelAlias("insects", "prod", 1, {{2, 100}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("under 100 percent"), std::string::npos) << refused.status();
  refused = client_->SetModelAlias("insects", "prod", 1, {{1, 10}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  refused = client_->SetModelAlias("insects", "prod", 1, {{7, 10}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound) << refused.status();
  EXPECT_NE(refused.status().message().find("no version 7"), std::string::npos) << refused.status();

  refused = client_->SetModelAlias("insects", "prod", 1, {{2, std::nan("")}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << "a NaN share was taken";
  refused = client_->SetModelAlias("insects", "prod", 1, {{2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("at most 4 canaries"), std::string::npos) << refused.status();
  refused = client_->SetModelAlias("insects", "prod", 1, {{2, 60}, {2, 30}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << "a version named twice was taken";

  auto set = client_->SetModelAlias("insects", "prod", 1, {{2, 10}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->id(), v1_id);
  auto canary = client_->GetModel(v2_id);
  ASSERT_TRUE(canary.ok());
  ASSERT_EQ(canary->canary_of_size(), 1);
  EXPECT_EQ(canary->canary_of(0).alias(), "prod");
  EXPECT_EQ(canary->canary_of(0).percent(), 10);
  EXPECT_EQ(client_->GetModel("insects@prod").value().id(), v1_id) << "GetModel of the alias is its own version";
  auto del = client_->DeleteModel(v2_id);
  EXPECT_EQ(del.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(del.message().find("canary"), std::string::npos) << del;

  // 2,000 predictions without a key, from 8 clients.
  std::atomic<int> to_v2{0}, failed{0}, other{0};
  auto predict = [&](int n, const std::function<std::string(int)>& key) {
    for (int i = 0; i < n; ++i) {
      auto r = client_->Predict(Request(key(i)));
      if (!r.ok()) {
        ++failed;
        continue;
      }
      const std::string& served = r->results(0).model();
      if (served == v2_id) ++to_v2;
      else if (served != v1_id) ++other;
    }
  };
  {
    std::vector<std::thread> clients;
    for (int c = 0; c < 8; ++c) clients.emplace_back(predict, 250, [](int) { return std::string(); });
    for (auto& t : clients) t.join();
  }
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(other.load(), 0);
  const double share = to_v2.load() / 2000.0;
  EXPECT_NEAR(share, 0.10, 0.025) << to_v2.load() << " of 2000 went to the canary";
  std::cout << to_v2.load() << " of 2000 predictions without a key went to the canary\n";

  // A routing key always reaches the same version; about a tenth of the keys reach the canary.
  std::map<std::string, std::string> first;
  int keys_on_v2 = 0;
  for (int k = 0; k < 200; ++k) {
    const std::string key = "user-" + std::to_string(k);
    for (int repeat = 0; repeat < 3; ++repeat) {
      auto r = client_->Predict(Request(key));
      ASSERT_TRUE(r.ok()) << r.status();
      const std::string& served = r->results(0).model();
      if (repeat == 0) {
        first[key] = served;
        keys_on_v2 += served == v2_id ? 1 : 0;
      } else {
        EXPECT_EQ(served, first[key]) << "key " << key << " moved between versions";
      }
    }
  }
  EXPECT_GT(keys_on_v2, 5);
  EXPECT_LT(keys_on_v2, 40);
  std::cout << keys_on_v2 << " of 200 routing keys reach the canary\n";
  // Raising the share keeps the keys the canary had.
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 1, {{2, 30}}).ok());
  for (const auto& [key, served] : first) {
    if (served != v2_id) continue;
    auto r = client_->Predict(Request(key));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->results(0).model(), v2_id) << "raising the canary's share moved key " << key << " off it";
  }

  // Shares moved 20 times while 8 clients predict: nothing fails, every answer from version 1 or 2.
  failed = 0;
  other = 0;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop.load(); ++i) predict(1, [c, i](int) { return "c" + std::to_string(c * 100000 + i); });
    });
  }
  for (int move = 0; move < 20; ++move) {
    auto moved = move % 4 == 3 ? client_->SetModelAlias("insects", "prod", 1)
                               : client_->SetModelAlias("insects", "prod", 1, {{2, 20.0 * (move % 4 + 1)}});
    EXPECT_TRUE(moved.ok()) << moved.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(other.load(), 0);

  // Stored: a restart keeps the canary.
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 1, {{2, 10}}).ok());
  Restart([](ServerOptions&) {});
  canary = client_->GetModel(v2_id);
  ASSERT_TRUE(canary.ok());
  ASSERT_EQ(canary->canary_of_size(), 1);
  EXPECT_EQ(canary->canary_of(0).percent(), 10);

  // Setting the alias without canaries ends it: every prediction from version 2 now.
  ASSERT_TRUE(client_->SetModelAlias("insects", "prod", 2).ok());
  EXPECT_EQ(client_->GetModel(v2_id).value().canary_of_size(), 0);
  for (int i = 0; i < 20; ++i) {
    auto r = client_->Predict(Request());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->results(0).model(), v2_id);
  }
}

}  // namespace
}  // namespace graft::server
