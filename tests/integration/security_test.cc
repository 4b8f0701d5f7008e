// graftd as a hostile or careless client meets it: tokens and roles on every
// RPC, owners, TLS, and code that must never load from client data.

#include "server/auth.h"
#include "tests/integration/security_fixture.h"

namespace graft::security_testing {
namespace {

// The smallest role each method needs: graftd's own table (server/auth.h),
// which every handler and REST route authorizes from. A method graftd serves
// that is missing there fails EveryRpcRefusesMissingUnknownAndTooSmallTokens
// (and graftd refuses it to everyone): a new RPC must be given its role on
// purpose.
using server::MethodRoles;

v1::Role MinimumRole(core::Role r) {
  return r == core::Role::kAdmin ? v1::ROLE_ADMIN : r == core::Role::kTrain ? v1::ROLE_TRAIN : v1::ROLE_INFERENCE;
}

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
      if (method == "inference.GRPCInferenceService/ServerLive" ||
          method == "inference.GRPCInferenceService/ServerReady") {
        EXPECT_TRUE(RawCall(channel, method, "").ok()) << method << ": the protocol's probes need no token";
        continue;
      }
      ++methods;
      const auto found = MethodRoles().find(method);
      ASSERT_NE(found, MethodRoles().end()) << method << " has no role in server/auth.cc's MethodRoles";
      const v1::Role role = MinimumRole(found->second);
      // Its own role passes authorization (the handler asks for its own method's role, not a larger one).
      const std::string exact = role == v1::ROLE_ADMIN ? admin_token_ : role == v1::ROLE_TRAIN ? train : inference;
      const grpc::Status allowed = RawCall(channel, method, exact);
      EXPECT_NE(allowed.error_code(), grpc::StatusCode::PERMISSION_DENIED) << method << ": " << allowed.error_message();
      EXPECT_NE(allowed.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method << ": " << allowed.error_message();
      const grpc::Status none = RawCall(channel, method, "");
      EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method << ": " << none.error_message();
      EXPECT_NE(none.error_message().find("no token"), std::string::npos) << none.error_message();
      const grpc::Status unknown = RawCall(channel, method, "graft_not-a-real-token");
      EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
      EXPECT_NE(unknown.error_message().find("unknown or revoked token"), std::string::npos);
      if (role == v1::ROLE_INFERENCE) continue;
      const std::string smaller = role == v1::ROLE_ADMIN ? train : inference;
      const grpc::Status denied = RawCall(channel, method, smaller);
      EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << method << ": " << denied.error_message();
      EXPECT_NE(denied.error_message().find(role == v1::ROLE_ADMIN ? "needs the role admin" : "needs the role train"),
                std::string::npos)
          << denied.error_message();
    }
  }
  EXPECT_EQ(methods, static_cast<int>(MethodRoles().size())) << "MethodRoles names a method graftd does not serve";
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
  // Token listings come in pages too; the client follows them to the end.
  for (int i = 0; i < 12; ++i) NewToken("page" + std::to_string(i), v1::ROLE_INFERENCE);
  auto listed = admin_->ListTokens();
  ASSERT_TRUE(listed.ok()) << listed.status();
  int made = 0;
  for (const auto& t : listed->tokens()) made += t.name().rfind("page", 0) == 0;
  EXPECT_EQ(made, 12);
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
  v1::FindLearningRateRequest range_test;
  *range_test.mutable_spec() = spec;
  EXPECT_EQ(bob.FindLearningRate(range_test).status().code(), absl::StatusCode::kPermissionDenied)
      << "a range test on another principal's dataset";

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

TEST_F(SecurityTest, NamesCanNeverTakeTheFormOfAnId) {
  auto refused = admin_->UploadDataset(TinyDataset(dir_.path()), "ds-0123456789ab");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("form of an id"), std::string::npos) << refused.status();
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
  // Loaded at first use: refused with the reason, which the listing keeps.
  v1::PredictRequest on_r18;
  on_r18.set_backbone("resnet18");
  on_r18.add_images()->set_encoded(testing::EncodeImage("png", 48, 48, 10, 10, 230));
  const auto used = again.Predict(on_r18);
  EXPECT_EQ(used.status().code(), absl::StatusCode::kFailedPrecondition) << used.status();
  EXPECT_NE(used.status().message().find("pickle nests containers"), std::string::npos) << used.status();
  auto r18 = again.GetBackbone("resnet18");
  ASSERT_TRUE(r18.ok()) << r18.status();
  EXPECT_NE(r18->weights().error().find("pickle nests containers"), std::string::npos) << r18->weights().error();
  EXPECT_TRUE(again.GetBackbone("squeezenet1_1")->weights().present());
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
}  // namespace graft::security_testing
