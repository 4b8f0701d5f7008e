// Model names, versions and aliases through gRPC: versions per name, NAME,
// NAME:VERSION and NAME@ALIAS everywhere a model is named, an alias moved
// under load, the refusal to delete an aliased version, restarts.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/util/files.h"
#include "tests/integration/training_fixture.h"
#include "tests/testing/http_get.h"

namespace graft::server {
namespace {

TEST_F(TrainingTest, NamedModelsGetVersionsAndAliasesMoveAtomicallyAcrossRestarts) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  auto train = [&](const std::string& model_name) {
    v1::JobSpec spec = Spec("hym", 1);
    spec.set_input_size(112);
    spec.set_model_name(model_name);
    return TrainModel(spec);
  };
  const std::string v1_id = train("ants");
  const std::string v2_id = train("ants");
  auto resolve = [&](const std::string& ref) -> std::string {
    auto m = client_->GetModel(ref);
    return m.ok() ? m->id() : std::string(m.status().message());
  };
  auto first = client_->GetModel(v1_id);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->name(), "ants");
  EXPECT_EQ(first->version(), 1);
  auto second = client_->GetModel("ants");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->id(), v2_id) << "a bare name is the newest version while no default alias is set";
  EXPECT_EQ(second->version(), 2);
  EXPECT_EQ(std::vector<std::string>(second->aliases().begin(), second->aliases().end()),
            std::vector<std::string>{"latest"});
  EXPECT_EQ(resolve("ants:1"), v1_id);
  EXPECT_EQ(resolve("ants@latest"), v2_id);
  EXPECT_EQ(resolve("admin/ants:1"), v1_id);
  EXPECT_EQ(resolve("ants:9"), "model 'ants' has no version 9 (its versions: 1, 2)");
  EXPECT_EQ(resolve("ants@prod"), "model 'ants' has no alias 'prod'");
  EXPECT_EQ(client_->GetModel("bees").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->GetModel("ants:x").status().code(), absl::StatusCode::kInvalidArgument);

  // The default alias: what a bare name means. Predict answers with the id of
  // the version that served it.
  auto aliased = client_->SetModelAlias("ants", "default", 1);
  ASSERT_TRUE(aliased.ok()) << aliased.status();
  EXPECT_EQ(aliased->id(), v1_id);
  v1::PredictRequest predict;
  predict.add_models("ants");
  predict.add_images()->set_encoded(core::ReadFile(graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg").value());
  auto answer = client_->Predict(predict);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->results(0).model(), v1_id);
  EXPECT_EQ(client_->SetModelAlias("ants", "latest", 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->SetModelAlias("ants", "default", 3).status().code(), absl::StatusCode::kNotFound);

  // The alias moves back and forth while 8 clients predict "ants": every
  // answer comes from version 1 or 2, none fails.
  std::atomic<bool> stop{false};
  std::atomic<int> answers{0}, failures{0}, strangers{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&]() {
      client::GraftClient c("127.0.0.1:" + std::to_string(server_->port()),
                            graft::testing::AdminClientOptions(dir_.Join("data")));
      while (!stop) {
        auto r = c.Predict(predict);
        if (!r.ok()) {
          ++failures;
        } else if (r->results(0).model() != v1_id && r->results(0).model() != v2_id) {
          ++strangers;
        }
        ++answers;
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(client_->SetModelAlias("ants", "default", 1 + i % 2).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_GT(answers.load(), 8);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(strangers.load(), 0);
  ASSERT_TRUE(client_->SetModelAlias("ants", "default", 1).ok());
  ASSERT_TRUE(client_->SetModelAlias("ants", "prod", 2).ok());

  // An aliased version cannot be deleted; the message names the alias.
  const auto refused = client_->DeleteModel("ants:1");
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("alias 'default' points to"), std::string::npos) << refused;

  // Names, versions and aliases survive a restart.
  Restart([](ServerOptions&) {});
  EXPECT_EQ(resolve("ants"), v1_id);
  EXPECT_EQ(resolve("ants@prod"), v2_id);
  EXPECT_EQ(resolve("ants:2"), v2_id);

  // Versions are never reused: after deleting version 2, the next is 3.
  ASSERT_TRUE(client_->DeleteModelAlias("ants", "prod").ok());
  ASSERT_TRUE(client_->DeleteModel("ants:2").ok());
  EXPECT_EQ(resolve("ants@latest"), v1_id);
  const std::string v3_id = train("ants");
  auto third = client_->GetModel(v3_id);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->version(), 3);
  EXPECT_EQ(resolve("ants"), v1_id) << "the default alias still holds";

  // Names belong to their owner: another train principal has no 'ants'; an
  // application (inference token) finds the only owner's.
  auto bob = client_->CreateToken("bob", v1::ROLE_TRAIN);
  auto app = client_->CreateToken("app", v1::ROLE_INFERENCE);
  ASSERT_TRUE(bob.ok() && app.ok());
  client::ClientOptions as_bob, as_app;
  as_bob.token = bob->token();
  as_app.token = app->token();
  client::GraftClient bob_client("127.0.0.1:" + std::to_string(server_->port()), as_bob);
  client::GraftClient app_client("127.0.0.1:" + std::to_string(server_->port()), as_app);
  EXPECT_EQ(bob_client.GetModel("ants").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(bob_client.GetModel("admin/ants").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob_client.SetModelAlias("admin/ants", "default", 3).status().code(), absl::StatusCode::kPermissionDenied);
  auto served = app_client.Predict(predict);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(served->results(0).model(), v1_id);

  // A bad name is refused when the job is created, naming the field.
  v1::JobSpec bad = Spec("hym", 1);
  bad.set_model_name("model-x");
  const auto created = client_->CreateJob(bad);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(created.status().message().find("model_name"), std::string::npos) << created.status();
}

// Issue 33, finding 7: another tenant publishing a model under a name an
// application uses never answers for it. A bare name reaches the caller's own
// models and then the default owner's (admin); another principal's model is
// OWNER/NAME (over REST: OWNER%2FNAME). An inference token sees what it needs
// to predict with another's model, not its training data or its owner, and
// no server file paths.
TEST_F(TrainingTest, BareNamesNeverReachAnotherTenantsModel) {
  Restart([](ServerOptions& o) { o.http_port = 0; });
  auto bob_token = client_->CreateToken("bob", v1::ROLE_TRAIN);
  auto app_token = client_->CreateToken("app", v1::ROLE_INFERENCE);
  ASSERT_TRUE(bob_token.ok() && app_token.ok());
  const std::string target = "127.0.0.1:" + std::to_string(server_->port());
  client::ClientOptions as_bob, as_app;
  as_bob.token = bob_token->token();
  as_app.token = app_token->token();
  client::GraftClient bob(target, as_bob), app(target, as_app);
  auto train = [&](client::GraftClient& c) {
    v1::JobSpec spec = Spec("hym", 1);
    spec.set_input_size(112);
    spec.set_model_name("ants");
    auto job = c.CreateJob(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
    EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
    return done.model_id();
  };
  ASSERT_TRUE(bob.UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  const std::string squatter = train(bob);
  v1::PredictRequest predict;
  predict.add_models("ants");
  predict.add_images()->set_encoded(core::ReadFile(graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg").value());
  auto refused = app.Predict(predict);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound) << "bob's 'ants' answered for the bare name";
  EXPECT_NE(refused.status().message().find("(--default_model_owner); another principal's is OWNER/ants"),
            std::string::npos)
      << refused.status();
  predict.set_models(0, "bob/ants");
  auto named = app.Predict(predict);
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->results(0).model(), squatter);
  EXPECT_NE(testing::HttpGet(server_->http_port(), "/v2/models/bob%2Fants/ready", app_token->token()).find("200 OK"),
            std::string::npos);
  EXPECT_NE(testing::HttpGet(server_->http_port(), "/v2/models/ants/ready", app_token->token()).find("404"),
            std::string::npos);

  // The application's owner publishes 'ants': the bare name is theirs.
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  const std::string own = train(*client_);
  predict.set_models(0, "ants");
  auto served = app.Predict(predict);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(served->results(0).model(), own);

  // What an inference token sees of bob's model.
  auto seen = app.GetModel("bob/ants");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->id(), squatter);
  EXPECT_EQ(seen->owner(), "");
  EXPECT_EQ(seen->job_id(), "");
  EXPECT_EQ(seen->spec().dataset(), "");
  EXPECT_EQ(seen->report().highest_loss_size(), 0);
  EXPECT_GT(seen->class_names_size(), 0);
  auto bobs = bob.GetModel("ants");
  ASSERT_TRUE(bobs.ok());
  EXPECT_EQ(bobs->owner(), "bob");
  EXPECT_GT(bobs->report().highest_loss_size(), 0);
  auto listed = app.ListModels();
  ASSERT_TRUE(listed.ok());
  for (const auto& m : listed->models()) EXPECT_EQ(m.owner(), "") << m.id();
  auto backbone = app.GetBackbone("mobilenet_v2");
  ASSERT_TRUE(backbone.ok());
  EXPECT_EQ(backbone->weights().path(), "");
  EXPECT_NE(client_->GetBackbone("mobilenet_v2")->weights().path(), "");

  // Open Inference metadata lists every version of the name, as Triton does,
  // not only the one a bare name resolves to.
  train(*client_);
  const std::string meta = testing::HttpGet(server_->http_port(), "/v2/models/ants", app_token->token());
  EXPECT_NE(meta.find("\"versions\":[\"1\",\"2\"]"), std::string::npos) << meta;
  const std::string bobs_meta = testing::HttpGet(server_->http_port(), "/v2/models/bob%2Fants", app_token->token());
  EXPECT_NE(bobs_meta.find("\"versions\":[\"1\"]"), std::string::npos) << bobs_meta;
}

}  // namespace
}  // namespace graft::server
