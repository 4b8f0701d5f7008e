// graftd as a hostile or careless client meets it: tokens and roles on every
// RPC, owners, TLS, and the findings of the security review, each rebuilt here.

#include <google/protobuf/descriptor.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iostream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "client/client.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "server/server.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/http_get.h"
#include "tests/testing/local_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tls_certs.h"

namespace graft {
namespace {

namespace fs = std::filesystem;
using server::GraftServer;
using server::ServerOptions;

// The smallest role each method needs. A method graftd serves that is missing
// here fails EveryRpcRefusesMissingUnknownAndTooSmallTokens: a new RPC must
// be given its role on purpose.
const std::map<std::string, v1::Role>& MinimumRoles() {
  static const auto* roles = new std::map<std::string, v1::Role>{
      {"graft.v1.Tokens/CreateToken", v1::ROLE_ADMIN},
      {"graft.v1.Tokens/ListTokens", v1::ROLE_ADMIN},
      {"graft.v1.Tokens/RevokeToken", v1::ROLE_ADMIN},
      {"graft.v1.Tokens/WhoAmI", v1::ROLE_INFERENCE},
      {"graft.v1.Backbones/ListBackbones", v1::ROLE_INFERENCE},
      {"graft.v1.Backbones/GetBackbone", v1::ROLE_INFERENCE},
      {"graft.v1.Backbones/RegisterBackbone", v1::ROLE_ADMIN},
      {"graft.v1.Backbones/UnregisterBackbone", v1::ROLE_ADMIN},
      {"graft.v1.Backbones/PullBackbone", v1::ROLE_ADMIN},
      {"graft.v1.Inference/Predict", v1::ROLE_INFERENCE},
      {"graft.v1.Inference/Embed", v1::ROLE_INFERENCE},
      {"graft.v1.Datasets/UploadDataset", v1::ROLE_TRAIN},
      {"graft.v1.Datasets/ListDatasets", v1::ROLE_TRAIN},
      {"graft.v1.Datasets/GetDataset", v1::ROLE_TRAIN},
      {"graft.v1.Datasets/DeleteDataset", v1::ROLE_TRAIN},
      {"graft.v1.Training/CreateJob", v1::ROLE_TRAIN},
      {"graft.v1.Training/GetJob", v1::ROLE_TRAIN},
      {"graft.v1.Training/ListJobs", v1::ROLE_TRAIN},
      {"graft.v1.Training/CancelJob", v1::ROLE_TRAIN},
      {"graft.v1.Training/WatchJob", v1::ROLE_TRAIN},
      {"graft.v1.Models/ListModels", v1::ROLE_INFERENCE},
      {"graft.v1.Models/GetModel", v1::ROLE_INFERENCE},
      {"graft.v1.Models/DeleteModel", v1::ROLE_TRAIN},
      {"graft.v1.Models/ExportModel", v1::ROLE_TRAIN},
  };
  return *roles;
}

// One call of any method with an empty request message, as raw bytes: the
// status graftd answers.
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::CompletionQueue cq;
  grpc::ByteBuffer request(nullptr, 0), response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  auto call = stub.PrepareUnaryCall(&ctx, "/" + method, request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

client::ClientOptions WithToken(const std::string& token) {
  client::ClientOptions o;
  o.token = token;
  return o;
}

// A tiny two-class dataset (red and blue squares) as a tar.gz.
std::string TinyDataset(const std::string& dir) {
  std::vector<testing::ArchiveEntry> entries;
  for (const char* split : {"train", "val"}) {
    const int n = std::string(split) == "train" ? 6 : 2;
    for (int i = 0; i < n; ++i) {
      entries.push_back({std::string(split) + "/red/" + std::to_string(i) + ".png",
                         testing::EncodeImage("png", 48, 48, 10 + i, 10, 230), ""});
      entries.push_back({std::string(split) + "/blue/" + std::to_string(i) + ".png",
                         testing::EncodeImage("png", 48, 48, 230, 10 + i, 10), ""});
    }
  }
  const std::string path = dir + "/tiny.tar.gz";
  EXPECT_TRUE(testing::WriteArchive(path, "tar.gz", entries));
  return path;
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options = testing::LocalServerOptions(dir_.Join("data"));
    options.metrics_port = 0;
    options.zoo_dir = dir_.Join("zoo");
    fs::create_directories(options.zoo_dir);
    // squeezenet1_1 only: the smallest real backbone, quick to train on.
    fs::copy_file(testing::WeightsDir() + "/squeezenet1_1-imagenet.safetensors",
                  options.zoo_dir + "/squeezenet1_1-imagenet.safetensors");
    Customize(options);
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    admin_token_ = testing::ReadToken(GraftServer::AdminTokenPath(dir_.Join("data")));
    if (options.auth == "tokens") {
      ASSERT_GE(admin_token_.size(), 22u);
    }
    admin_ = std::make_unique<client::GraftClient>(Target(), WithToken(admin_token_));
  }
  virtual void Customize(ServerOptions&) {}
  // An upload as a raw client sends it: `header`, then `data` in 1 MiB
  // chunks; `after_send` runs before the answer is awaited.
  grpc::Status RawUpload(const v1::UploadHeader& header, const std::string& data,
                         const std::function<void(grpc::ClientContext*)>& after_send = {}) {
    auto stub = v1::Datasets::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + admin_token_);
    v1::UploadDatasetResponse response;
    auto writer = stub->UploadDataset(&ctx, &response);
    v1::UploadDatasetRequest first;
    *first.mutable_header() = header;
    writer->Write(first);
    for (size_t at = 0; at < data.size(); at += 1 << 20) {
      v1::UploadDatasetRequest chunk;
      chunk.mutable_chunk()->set_data(data.substr(at, 1 << 20));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    if (after_send) after_send(&ctx);
    return writer->Finish();
  }
  std::string Target() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  std::string NewToken(const std::string& name, v1::Role role) {
    auto created = admin_->CreateToken(name, role);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->token() : "";
  }

  testing::TempDir dir_;
  std::unique_ptr<GraftServer> server_;
  std::string admin_token_;
  std::unique_ptr<client::GraftClient> admin_;
};

TEST_F(SecurityTest, FirstStartWritesAnAdminTokenOnlyItsOwnerReads) {
  const std::string path = GraftServer::AdminTokenPath(dir_.Join("data"));
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  auto me = admin_->WhoAmI();
  ASSERT_TRUE(me.ok()) << me.status();
  EXPECT_EQ(me->name(), "admin");
  EXPECT_EQ(me->role(), v1::ROLE_ADMIN);
  // The database holds no token in the clear.
  for (const char* file : {"/graft.db", "/graft.db-wal"}) {
    const auto db = core::ReadFile(dir_.Join("data") + file);
    if (db.ok()) {
      EXPECT_EQ(db->find(admin_token_), std::string::npos) << file;
    }
  }
}

TEST_F(SecurityTest, EveryRpcRefusesMissingUnknownAndTooSmallTokens) {
  const std::string inference = NewToken("app", v1::ROLE_INFERENCE);
  const std::string train = NewToken("trainer", v1::ROLE_TRAIN);
  auto channel = grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials());
  int methods = 0;
  for (const std::string& service_name : server_->service_names()) {
    const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_name);
    ASSERT_NE(service, nullptr) << service_name;
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string method = service_name + "/" + service->method(i)->name();
      if (service_name == "grpc.health.v1.Health") {
        // Probes need no token.
        if (service->method(i)->name() == "Check") {
          EXPECT_TRUE(RawCall(channel, method, "").ok()) << method;
        }
        continue;
      }
      ++methods;
      const auto role = MinimumRoles().find(method);
      ASSERT_NE(role, MinimumRoles().end()) << method << " has no minimum role in this test";
      const grpc::Status none = RawCall(channel, method, "");
      EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method << ": " << none.error_message();
      EXPECT_NE(none.error_message().find("no token"), std::string::npos) << none.error_message();
      const grpc::Status unknown = RawCall(channel, method, "graft_not-a-real-token");
      EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
      EXPECT_NE(unknown.error_message().find("unknown or revoked token"), std::string::npos);
      if (role->second == v1::ROLE_INFERENCE) continue;
      const std::string smaller = role->second == v1::ROLE_ADMIN ? train : inference;
      const grpc::Status denied = RawCall(channel, method, smaller);
      EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << method << ": " << denied.error_message();
      EXPECT_NE(denied.error_message().find(role->second == v1::ROLE_ADMIN ? "needs the role admin"
                                                                           : "needs the role train"),
                std::string::npos)
          << denied.error_message();
    }
  }
  EXPECT_EQ(methods, static_cast<int>(MinimumRoles().size()));
}

TEST_F(SecurityTest, RevokedTokensAreRefusedAtOnce) {
  const std::string token = NewToken("temp", v1::ROLE_TRAIN);
  client::GraftClient temp(Target(), WithToken(token));
  ASSERT_TRUE(temp.ListDatasets().ok());
  ASSERT_TRUE(admin_->RevokeToken("temp").ok());
  EXPECT_EQ(temp.ListDatasets().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(admin_->CreateToken("admin", v1::ROLE_ADMIN).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(admin_->CreateToken("bad name", v1::ROLE_TRAIN).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(admin_->CreateToken("x", v1::ROLE_UNSPECIFIED).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SecurityTest, TrainPrincipalsSeeOnlyTheirOwnAndInferenceTokensPredictWithAll) {
  client::GraftClient alice(Target(), WithToken(NewToken("alice", v1::ROLE_TRAIN)));
  client::GraftClient bob(Target(), WithToken(NewToken("bob", v1::ROLE_TRAIN)));
  client::GraftClient app(Target(), WithToken(NewToken("app", v1::ROLE_INFERENCE)));
  const std::string archive = TinyDataset(dir_.path());
  auto mine = alice.UploadDataset(archive, "colours");
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_EQ(mine->dataset().owner(), "alice");
  const std::string ds = mine->dataset().id();

  // Bob: the same name is his own; alice's dataset is not his by id or name.
  auto his = bob.UploadDataset(archive, "colours");
  ASSERT_TRUE(his.ok()) << his.status();
  EXPECT_NE(his->dataset().id(), ds);
  EXPECT_EQ(bob.GetDataset(ds).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.DeleteDataset(ds).code(), absl::StatusCode::kPermissionDenied);
  auto listed = bob.ListDatasets();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->datasets_size(), 1);
  EXPECT_EQ(listed->datasets(0).id(), his->dataset().id());
  auto by_name = bob.GetDataset("colours");
  ASSERT_TRUE(by_name.ok());
  EXPECT_EQ(by_name->id(), his->dataset().id());
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset(ds);
  spec.add_stages()->set_epochs(10);
  EXPECT_EQ(bob.CreateJob(spec).status().code(), absl::StatusCode::kPermissionDenied);

  // Alice trains; bob can neither see nor touch her job or model.
  auto job = alice.CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->owner(), "alice");
  EXPECT_EQ(bob.GetJob(job->id()).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.CancelJob(job->id()).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.WatchJob(job->id(), false, [](const v1::JobEvent&) { return true; }).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.ListJobs()->jobs_size(), 0);
  ASSERT_TRUE(alice.WatchJob(job->id(), false, [](const v1::JobEvent&) { return true; }).ok());
  auto done = alice.GetJob(job->id());
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
  const std::string model = done->model_id();
  EXPECT_EQ(bob.GetModel(model).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.ExportModel(model).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.DeleteModel(model).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.ListModels()->models_size(), 0);
  v1::PredictRequest predict;
  predict.add_models(model);
  predict.add_images()->set_encoded(testing::EncodeImage("png", 48, 48, 10, 10, 230));
  EXPECT_EQ(bob.Predict(predict).status().code(), absl::StatusCode::kPermissionDenied);

  // The application predicts with it; the admin sees everything.
  auto predicted = app.Predict(predict);
  ASSERT_TRUE(predicted.ok()) << predicted.status();
  EXPECT_EQ(predicted->results(0).predictions(0).top(0).label(), "red");
  EXPECT_EQ(app.ListModels()->models_size(), 1);
  EXPECT_EQ(app.ListDatasets().status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 2);
  EXPECT_EQ(admin_->GetModel(model)->owner(), "alice");
  ASSERT_TRUE(alice.DeleteModel(model).ok());
}

TEST_F(SecurityTest, LongListsComeInPages) {
  const std::string archive = TinyDataset(dir_.path());
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(admin_->UploadDataset(archive, name).ok());
  auto stub = v1::Datasets::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  const auto list = [&](int size, const std::string& token, v1::ListDatasetsResponse* out) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + admin_token_);
    v1::ListDatasetsRequest request;
    request.set_page_size(size);
    request.set_page_token(token);
    return stub->ListDatasets(&ctx, request, out);
  };
  v1::ListDatasetsResponse first, second, bad;
  ASSERT_TRUE(list(2, "", &first).ok());
  ASSERT_EQ(first.datasets_size(), 2);
  ASSERT_FALSE(first.next_page_token().empty());
  ASSERT_TRUE(list(2, first.next_page_token(), &second).ok());
  ASSERT_EQ(second.datasets_size(), 1);
  EXPECT_EQ(second.datasets(0).name(), "c");
  EXPECT_TRUE(second.next_page_token().empty());
  const grpc::Status refused = list(2, "not-a-token", &bad);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("page_token"), std::string::npos);
  // The client library follows the pages.
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 3);
}

TEST_F(SecurityTest, UploadsAreHeldToTheirDeclaredSizeAndAnswerBoundedLists) {
  // total_bytes says 10; the client sends a megabyte.
  v1::UploadHeader liar;
  liar.set_name("liar");
  liar.set_total_bytes(10);
  const grpc::Status status = RawUpload(liar, std::string(1 << 20, 'x'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("header.total_bytes declared"), std::string::npos) << status.error_message();
  // 1,500 files with 600-character names beside a good dataset: each is
  // rejected, the answer lists 1,000 and counts all.
  std::vector<testing::ArchiveEntry> entries;
  for (int i = 0; i < 6; ++i) {
    entries.push_back({"train/red/" + std::to_string(i) + ".png", testing::EncodeImage("png", 32, 32, i, 10, 230), ""});
    entries.push_back({"train/blue/" + std::to_string(i) + ".png", testing::EncodeImage("png", 32, 32, 230, 10, i), ""});
  }
  const std::string junk = testing::EncodeImage("png", 8, 8, 1, 1, 1);
  for (int i = 0; i < 1500; ++i) entries.push_back({"train/red/" + std::string(600, 'n') + std::to_string(i), junk, ""});
  ASSERT_TRUE(testing::WriteArchive(dir_.Join("long.tar.gz"), "tar.gz", entries));
  auto uploaded = admin_->UploadDataset(dir_.Join("long.tar.gz"), "long");
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  EXPECT_EQ(uploaded->rejected_size(), 1000);
  EXPECT_EQ(uploaded->dataset().rejected_count(), 1500);
  EXPECT_NE(uploaded->rejected(0).reason().find("path longer than 512"), std::string::npos)
      << uploaded->rejected(0).reason();
  EXPECT_LE(uploaded->rejected(0).path().size(), 260u);
}

TEST_F(SecurityTest, NamesCanNeverTakeTheFormOfAnId) {
  auto refused = admin_->UploadDataset(TinyDataset(dir_.path()), "ds-0123456789ab");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("form of an id"), std::string::npos) << refused.status();
}

TEST_F(SecurityTest, UnknownEnumValuesAndAMismatchedUploadFormatAreRefusedByField) {
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("whatever");
  auto* stage = spec.add_stages();
  stage->set_epochs(1);
  stage->mutable_optimizer()->set_kind(static_cast<v1::OptimizerKind>(99));
  auto job = admin_->CreateJob(spec);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(job.status().message().find("spec.stages[0].optimizer.kind: unknown value 99"), std::string::npos)
      << job.status();

  // A tar.gz declared as a zip.
  v1::UploadHeader header;
  header.set_name("mislabelled");
  header.set_format(v1::UPLOAD_FORMAT_ZIP);
  const grpc::Status status = RawUpload(header, core::ReadFile(TinyDataset(dir_.path())).value());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("header.format: declared UPLOAD_FORMAT_ZIP but the data is a gzip stream"),
            std::string::npos)
      << status.error_message();
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 0);
}

TEST_F(SecurityTest, APngTorchScriptPolyglotInADatasetCannotBeRegistered) {
  // A valid PNG with a real TorchScript archive appended: image decoders
  // read the PNG, zip readers find the archive from the end.
  const std::string scripts = dir_.Join("scripts");
  ASSERT_EQ(std::system((testing::Python() + " " + testing::SourceDir() + "/tests/integration/make_torchscript.py " +
                         scripts + " " + testing::WeightsDir() + " >/dev/null 2>&1").c_str()),
            0);
  const std::string polyglot =
      testing::EncodeImage("png", 48, 48, 10, 10, 230) + core::ReadFile(scripts + "/tiny_pooled.pt").value();
  std::vector<testing::ArchiveEntry> entries = {{"train/red/evil.png", polyglot, ""}};
  for (int i = 0; i < 3; ++i) {
    entries.push_back({"train/red/" + std::to_string(i) + ".png", testing::EncodeImage("png", 48, 48, i, 10, 230), ""});
    entries.push_back({"train/blue/" + std::to_string(i) + ".png", testing::EncodeImage("png", 48, 48, 230, 10, i), ""});
  }
  ASSERT_TRUE(testing::WriteArchive(dir_.Join("evil.tar.gz"), "tar.gz", entries));
  auto uploaded = admin_->UploadDataset(dir_.Join("evil.tar.gz"), "colours");
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  ASSERT_EQ(uploaded->rejected_size(), 0) << "the polyglot is a valid PNG";
  const std::string blob = dir_.Join("data") + "/datasets/blobs/" + core::Sha256Hex(polyglot).substr(0, 2) + "/" +
                           core::Sha256Hex(polyglot);
  ASSERT_TRUE(fs::exists(blob));
  v1::RegisterBackboneRequest request;
  request.set_name("evil");
  request.set_feature_dim(16);
  request.set_torchscript_path(blob);
  auto refused = admin_->RegisterBackbone(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("--backbone_import_dir"), std::string::npos) << refused.status();
  // Not by a train principal either, whatever the path; and nothing was registered.
  client::GraftClient trainer(Target(), WithToken(NewToken("trainer", v1::ROLE_TRAIN)));
  EXPECT_EQ(trainer.RegisterBackbone(request).status().code(), absl::StatusCode::kPermissionDenied);
  request.clear_torchscript_path();
  request.set_torchscript(polyglot);
  EXPECT_EQ(trainer.RegisterBackbone(request).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(admin_->GetBackbone("evil").status().code(), absl::StatusCode::kNotFound);
}

class ImportDirTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override {
    fs::create_directories(dir_.Join("import"));
    options.backbone_import_dir = dir_.Join("import");
  }
};

TEST_F(ImportDirTest, PathsMustResolveUnderTheImportDirectory) {
  ASSERT_TRUE(admin_->UploadDataset(TinyDataset(dir_.path()), "colours").ok());
  std::string blob;
  for (const auto& e : fs::recursive_directory_iterator(dir_.Join("data") + "/datasets/blobs")) {
    if (e.is_regular_file()) blob = e.path().string();
  }
  // A symbolic link in the import directory to the client's blob, and a ".." escape.
  fs::create_symlink(blob, dir_.Join("import") + "/link.pt");
  v1::RegisterBackboneRequest request;
  request.set_name("evil");
  request.set_feature_dim(16);
  for (const std::string& path : {dir_.Join("import") + "/link.pt", dir_.Join("import") + "/../data/graft.db"}) {
    request.set_torchscript_path(path);
    auto refused = admin_->RegisterBackbone(request);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << path << ": " << refused.status();
    EXPECT_NE(refused.status().message().find("is not under --backbone_import_dir"), std::string::npos)
        << refused.status();
  }
}

class NoAuthTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override { options.auth = "none"; }
};

TEST_F(NoAuthTest, AuthNoneMakesEveryCallerTheAnonymousAdmin) {
  EXPECT_FALSE(fs::exists(GraftServer::AdminTokenPath(dir_.Join("data"))));
  client::GraftClient anyone(Target());
  auto me = anyone.WhoAmI();
  ASSERT_TRUE(me.ok()) << me.status();
  EXPECT_EQ(me->name(), "anonymous");
  EXPECT_EQ(me->role(), v1::ROLE_ADMIN);
  EXPECT_TRUE(anyone.ListDatasets().ok());
  EXPECT_EQ(anyone.CreateToken("x", v1::ROLE_TRAIN).status().code(), absl::StatusCode::kFailedPrecondition);
}

// A zip as torch.jit.save writes it, with `pickle` as its data.pkl.
std::string TorchZip(const std::string& path, const std::string& pickle) {
  EXPECT_TRUE(testing::WriteArchive(path, "zip",
                                    {{"archive/data.pkl", pickle, ""}, {"archive/version", "3\n", ""}}));
  return path;
}

// 1M nested tuples: (((...),),)
std::string DeepTuplePickle(int depth) {
  std::string p = "\x80\x02)";
  for (int i = 0; i < depth; ++i) p += '\x85';
  return p + ".";
}

TEST_F(SecurityTest, DeeplyNestedPicklesAreRefusedAndGraftdLives) {
  v1::RegisterBackboneRequest request;
  request.set_name("bomb");
  request.set_feature_dim(16);
  request.set_torchscript(core::ReadFile(TorchZip(dir_.Join("bomb.pt"), DeepTuplePickle(1'000'000))).value());
  auto refused = admin_->RegisterBackbone(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("pickle nests containers 1000001 deep"), std::string::npos)
      << refused.status();
  ASSERT_TRUE(admin_->Health().ok());
  // Nothing of it stays: no staged file, no custom backbone.
  EXPECT_EQ(admin_->GetBackbone("bomb").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(fs::is_empty(dir_.Join("data") + "/cache/register"));

  // The same as a .pth in the zoo: graftd starts, says why, and serves the rest.
  server_.reset();
  TorchZip(dir_.Join("zoo") + "/resnet18-imagenet.pth", DeepTuplePickle(1'000'000));
  ServerOptions options = testing::LocalServerOptions(dir_.Join("data"));
  options.zoo_dir = dir_.Join("zoo");
  auto restarted = GraftServer::Start(options);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  client::GraftClient again("127.0.0.1:" + std::to_string((*restarted)->port()), WithToken(admin_token_));
  auto r18 = again.GetBackbone("resnet18");
  ASSERT_TRUE(r18.ok()) << r18.status();
  EXPECT_NE(r18->weights().error().find("pickle nests containers"), std::string::npos) << r18->weights().error();
  EXPECT_TRUE(again.GetBackbone("squeezenet1_1")->weights().present());
}

TEST_F(SecurityTest, UnknownMethodsDoNotGrowTheMetrics) {
  auto channel = grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials());
  for (int i = 0; i < 300; ++i) {
    const grpc::Status s = RawCall(channel, "graft.v1.Nope/Method" + std::to_string(i), admin_token_);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_EQ(page.find("Nope"), std::string::npos);
  EXPECT_LT(page.size(), 200'000u);
}

TEST_F(SecurityTest, SpecBombsAndQueueFloodsAreRefusedWithTheirEstimate) {
  ASSERT_TRUE(admin_->UploadDataset(TinyDataset(dir_.path()), "colours").ok());
  v1::JobSpec bomb;
  bomb.set_backbone("squeezenet1_1");
  bomb.set_dataset("colours");
  for (int i = 0; i < 16; ++i) bomb.mutable_head()->add_hidden_units(65536);
  bomb.set_batch_size(4096);
  bomb.set_input_size(1024);
  auto* stage = bomb.add_stages();
  stage->set_epochs(10000);
  stage->set_train("all");
  auto refused = admin_->CreateJob(bomb);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("trainable parameters"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("--max_job_memory_bytes"), std::string::npos) << refused.status();
  // So is a batch of 4096 at 1024 px with every block trained, whatever the head.
  bomb.mutable_head()->clear_hidden_units();
  auto activations = admin_->CreateJob(bomb);
  EXPECT_EQ(activations.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(activations.status().message().find("MiB of activations at batch 4096"), std::string::npos)
      << activations.status();
  EXPECT_EQ(admin_->ListJobs()->jobs_size(), 0);

  // A principal floods the queue with long jobs: four wait, the fifth is refused.
  v1::JobSpec longjob;
  longjob.set_backbone("squeezenet1_1");
  longjob.set_dataset("colours");
  longjob.add_stages()->set_epochs(10000);
  client::GraftClient flood(Target(), WithToken(NewToken("flood", v1::ROLE_TRAIN)));
  ASSERT_TRUE(flood.UploadDataset(TinyDataset(dir_.path()), "colours").ok());
  absl::Status last;
  int accepted = 0;
  for (int i = 0; i < 8 && last.ok(); ++i) {
    auto job = flood.CreateJob(longjob);
    last = job.status();
    if (job.ok()) ++accepted;
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(last.message().find("--max_queued_jobs_per_principal"), std::string::npos) << last;
  EXPECT_LE(accepted, 5);  // four queued and at most one running
  // Another principal still gets a place in the queue.
  EXPECT_TRUE(admin_->CreateJob(longjob).ok());
  auto all = admin_->ListJobs();
  ASSERT_TRUE(all.ok());
  for (const auto& j : all->jobs()) (void)admin_->CancelJob(j.id());
}

// A client that opens connections to /metrics and sends its request a byte
// at a time, never finishing.
int SlowConnection(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return -1;
  const char partial[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  (void)::send(fd, partial, sizeof(partial) - 1, MSG_NOSIGNAL);
  return fd;
}

TEST_F(SecurityTest, SlowClientsDoNotDelayAScrape) {
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) slow.push_back(SlowConnection(server_->metrics_port()));
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    while (!stop) {
      for (int fd : slow) (void)::send(fd, "a", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_NE(page.find("graft_build_info"), std::string::npos);
    EXPECT_LT(took, std::chrono::milliseconds(500));
  }
  stop = true;
  drip.join();
  for (int fd : slow) ::close(fd);
}

TEST_F(SecurityTest, TooManyImagesInOneRequestAreRefusedNamingTheFlag) {
  v1::PredictRequest request;
  request.set_backbone("squeezenet1_1");
  const std::string png = testing::EncodeImage("png", 8, 8, 1, 2, 3);
  for (int i = 0; i < 65; ++i) request.add_images()->set_encoded(png);
  auto refused = admin_->Predict(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("--max_images_per_request"), std::string::npos) << refused.status();
}

int64_t StatusKb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size()));
  }
  return -1;
}

double CpuSeconds() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Decoding on the callers' threads: every concurrent request decodes at once
// unless the budget holds them back.
class DecodeBombTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override {
    options.decode_on = "callers";
    options.max_decode_bytes = 600LL << 20;
  }
  // A 36-megapixel PNG of one colour: a few hundred KB that decode to 108 MB.
  static std::string Bomb() {
    std::vector<uchar> buf;
    cv::imencode(".png", cv::Mat(6000, 6000, CV_8UC3, cv::Scalar(0, 128, 255)), buf);
    return std::string(buf.begin(), buf.end());
  }
};

TEST_F(DecodeBombTest, ConcurrentDecodeBombsStayInsideTheBudget) {
  const std::string bomb = Bomb();
  ASSERT_LT(bomb.size(), 2u << 20);
  std::ofstream("/proc/self/clear_refs") << "5";  // restart the peak (VmHWM) from here
  const int64_t before_kb = StatusKb("VmRSS:");
  std::vector<absl::Status> results(16);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < results.size(); ++i) {
    clients.emplace_back([&, i] {
      client::GraftClient c(Target(), WithToken(admin_token_));
      v1::PredictRequest request;
      request.set_backbone("squeezenet1_1");
      request.add_images()->set_encoded(bomb);
      results[i] = c.Predict(request).status();
    });
  }
  for (auto& t : clients) t.join();
  const int64_t peak_growth_mb = (StatusKb("VmHWM:") - before_kb) / 1024;
  int served = 0, refused = 0;
  for (const absl::Status& r : results) {
    if (r.ok()) ++served;
    if (absl::IsResourceExhausted(r)) {
      ++refused;
      EXPECT_NE(r.message().find("--max_decode_bytes"), std::string::npos) << r;
    }
    if (!r.ok() && !absl::IsResourceExhausted(r)) ADD_FAILURE() << r;
  }
  EXPECT_GT(served, 0);
  EXPECT_GT(refused, 0);
  EXPECT_EQ(served + refused, 16);
  // Unbounded, 16 decodes of 2 x 108 MB each would have held ~3.4 GB at once.
  EXPECT_LT(peak_growth_mb, 1000) << served << " served, " << refused << " refused";
  std::cout << "decode bombs: " << served << " served, " << refused << " refused, peak RSS growth " << peak_growth_mb
            << " MB\n";

  // Three of them in one request hold too many pixels for one request.
  v1::PredictRequest three;
  three.set_backbone("squeezenet1_1");
  for (int i = 0; i < 3; ++i) three.add_images()->set_encoded(bomb);
  auto refused_whole = admin_->Predict(three);
  EXPECT_EQ(refused_whole.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused_whole.status().message().find("--max_request_pixels"), std::string::npos) << refused_whole.status();
}

class ArchiveBombTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override { options.max_dataset_bytes = 1LL << 40; }
};

TEST_F(ArchiveBombTest, ACancelledArchiveBombStopsConsumingCpu) {
  // 40 entries of 1 GiB of zeros each, ~41 MB compressed: minutes of inflating.
  const std::string bomb = dir_.Join("bomb.tar.gz");
  ASSERT_EQ(std::system((testing::Python() + " " + testing::SourceDir() + "/tests/integration/make_archive_bomb.py " +
                         bomb + " 40 1").c_str()),
            0);
  v1::UploadHeader header;
  header.set_name("bomb");
  double cpu_sent = 0, cpu_cancel = 0;
  // graftd inflates; the client gives up after 1.5 s.
  const grpc::Status status = RawUpload(header, core::ReadFile(bomb).value(), [&](grpc::ClientContext* ctx) {
    cpu_sent = CpuSeconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    cpu_cancel = CpuSeconds();
    ctx->TryCancel();
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double cpu_settled = CpuSeconds();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double cpu_after = CpuSeconds();
  EXPECT_GT(cpu_cancel - cpu_sent, 0.5) << "graftd was not inflating the archive";
  EXPECT_LT(cpu_after - cpu_settled, 0.2) << "graftd kept inflating after the client left";
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 0);
  EXPECT_TRUE(fs::is_empty(dir_.Join("data") + "/datasets/staging"));
}

// TLS: a CA and certificates made with openssl for this test.
class TlsTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override {
    ASSERT_EQ(testing::MakeTestCertificates(dir_.path()), "");
    options.tls_cert = dir_.path() + "/server.pem";
    options.tls_key = dir_.path() + "/server.key";
    options.tls_client_ca = dir_.path() + "/ca.pem";
  }
  void SetUp() override {
    ServerOptions options = testing::LocalServerOptions(dir_.Join("data"));
    Customize(options);
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    admin_token_ = testing::ReadToken(GraftServer::AdminTokenPath(dir_.Join("data")));
  }
  // The name the server's certificate holds.
  std::string TlsTarget() const { return "localhost:" + std::to_string(server_->port()); }
  client::ClientOptions Tls(const std::string& ca, bool with_client_cert) {
    client::ClientOptions o = WithToken(admin_token_);
    o.tls = true;
    o.tls_ca = core::ReadFile(dir_.path() + "/" + ca).value();
    if (with_client_cert) {
      o.tls_cert = core::ReadFile(dir_.path() + "/client.pem").value();
      o.tls_key = core::ReadFile(dir_.path() + "/client.key").value();
    }
    return o;
  }
};

TEST_F(TlsTest, MutualTlsWithATokenIsTheOnlyWayIn) {
  client::GraftClient good(TlsTarget(), Tls("ca.pem", true));
  auto me = good.WhoAmI();
  ASSERT_TRUE(me.ok()) << me.status();
  EXPECT_EQ(me->name(), "admin");
  // Plaintext, a client that does not trust the CA, and one without a certificate.
  EXPECT_EQ(client::GraftClient(Target(), WithToken(admin_token_)).WhoAmI().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(client::GraftClient(TlsTarget(), Tls("other.pem", true)).WhoAmI().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(client::GraftClient(TlsTarget(), Tls("ca.pem", false)).WhoAmI().status().code(),
            absl::StatusCode::kUnavailable);
  // TLS does not replace the token.
  client::ClientOptions no_token = Tls("ca.pem", true);
  no_token.token.clear();
  EXPECT_EQ(client::GraftClient(TlsTarget(), no_token).WhoAmI().status().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace graft
