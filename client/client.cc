#include "client/client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace graft::client {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

}  // namespace

absl::Status FromGrpc(const grpc::Status& status, const std::string& target) {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    message = absl::StrCat("graftd at ", target, " is unavailable: ", message);
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

std::unique_ptr<grpc::ClientContext> GraftClient::NewContext(int seconds) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  return ctx;
}

GraftClient::GraftClient(const std::string& target, ClientOptions options)
    : target_(target), token_(std::move(options.token)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca;
    ssl.pem_cert_chain = options.tls_cert;
    ssl.pem_private_key = options.tls_key;
    credentials = grpc::SslCredentials(ssl);
  }
  channel_ = grpc::CreateCustomChannel(target, credentials, args);
  backbones_ = v1::Backbones::NewStub(channel_);
  inference_ = v1::Inference::NewStub(channel_);
  health_ = ::grpc::health::v1::Health::NewStub(channel_);
  datasets_ = v1::Datasets::NewStub(channel_);
  training_ = v1::Training::NewStub(channel_);
  models_ = v1::Models::NewStub(channel_);
  predictions_ = v1::Predictions::NewStub(channel_);
  tokens_ = v1::Tokens::NewStub(channel_);
}

// Unary calls share one shape: a deadline, the call, the status mapping.
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> Call(const GraftClient& client, Stub* stub,
                              grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                              const Request& request, int seconds = 60) {
  Response response;
  auto ctx = client.NewContext(seconds);
  const grpc::Status s = (stub->*method)(ctx.get(), request, &response);
  if (!s.ok()) return FromGrpc(s, client.target());
  return response;
}

// Follows next_page_token until the listing ends; one response holds all.
template <typename Request, typename Response, typename Fetch, typename Merge>
absl::StatusOr<Response> AllPages(Request request, const Fetch& fetch, const Merge& merge) {
  Response all;
  while (true) {
    absl::StatusOr<Response> page = fetch(request);
    if (!page.ok()) return page.status();
    merge(*page, &all);
    if (page->next_page_token().empty()) return all;
    request.set_page_token(page->next_page_token());
  }
}

absl::StatusOr<v1::ListBackbonesResponse> GraftClient::ListBackbones() {
  return AllPages<v1::ListBackbonesRequest, v1::ListBackbonesResponse>(
      v1::ListBackbonesRequest(),
      [&](const v1::ListBackbonesRequest& r) {
        return Call(*this, backbones_.get(), &v1::Backbones::Stub::ListBackbones, r, 30);
      },
      [](v1::ListBackbonesResponse& page, v1::ListBackbonesResponse* all) {
        for (auto& b : *page.mutable_backbones()) all->add_backbones()->Swap(&b);
        *all->mutable_memory() = page.memory();
      });
}

absl::StatusOr<v1::Backbone> GraftClient::GetBackbone(const std::string& name) {
  v1::GetBackboneRequest request;
  request.set_name(name);
  return Call(*this, backbones_.get(), &v1::Backbones::Stub::GetBackbone, request, 30);
}

absl::StatusOr<v1::Backbone> GraftClient::RegisterBackbone(const v1::RegisterBackboneRequest& request) {
  // The server loads, checks and optimises the module: seconds for a large one.
  return Call(*this, backbones_.get(), &v1::Backbones::Stub::RegisterBackbone, request, 300);
}

absl::Status GraftClient::UnregisterBackbone(const std::string& name) {
  v1::UnregisterBackboneRequest request;
  request.set_name(name);
  return Call(*this, backbones_.get(), &v1::Backbones::Stub::UnregisterBackbone, request, 30).status();
}

absl::StatusOr<v1::Backbone> GraftClient::LoadBackbone(const std::string& name) {
  v1::LoadBackboneRequest request;
  request.set_name(name);
  // Loading a large backbone, or waiting for room under the memory budget.
  return Call(*this, backbones_.get(), &v1::Backbones::Stub::LoadBackbone, request, 300);
}

absl::StatusOr<v1::Backbone> GraftClient::UnloadBackbone(const std::string& name) {
  v1::UnloadBackboneRequest request;
  request.set_name(name);
  return Call(*this, backbones_.get(), &v1::Backbones::Stub::UnloadBackbone, request, 30);
}

absl::StatusOr<v1::Backbone> GraftClient::PinBackbone(const std::string& name, bool pinned) {
  v1::PinBackboneRequest request;
  request.set_name(name);
  request.set_pinned(pinned);
  return Call(*this, backbones_.get(), &v1::Backbones::Stub::PinBackbone, request, 300);
}

absl::StatusOr<v1::PredictResponse> GraftClient::Predict(const v1::PredictRequest& request) {
  return Call(*this, inference_.get(), &v1::Inference::Stub::Predict, request, 300);
}

absl::StatusOr<v1::EmbedResponse> GraftClient::Embed(const v1::EmbedRequest& request) {
  return Call(*this, inference_.get(), &v1::Inference::Stub::Embed, request, 300);
}

absl::StatusOr<::grpc::health::v1::HealthCheckResponse> GraftClient::Health(const std::string& service) {
  ::grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  return Call(*this, health_.get(), &::grpc::health::v1::Health::Stub::Check, request, 10);
}

absl::StatusOr<v1::UploadDatasetResponse> GraftClient::UploadDataset(
    const std::string& path, const std::string& name, float split_fraction, uint64_t split_seed,
    const std::function<void(const UploadProgress&)>& progress) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool folder = fs::is_directory(path, ec);
  if (!folder && !fs::is_regular_file(path, ec)) return absl::NotFoundError("no such file or folder: " + path);
  std::vector<std::pair<std::string, std::string>> files;  // relative, absolute
  if (folder) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file() && !it->is_symlink()) {
        files.emplace_back(fs::relative(it->path(), path).generic_string(), it->path().string());
      }
    }
    std::sort(files.begin(), files.end());
  } else {
    files.emplace_back(fs::path(path).filename().string(), path);
  }
  UploadProgress p;
  p.files_total = static_cast<int>(files.size());
  for (const auto& f : files) p.bytes_total += static_cast<int64_t>(fs::file_size(f.second, ec));

  v1::UploadDatasetResponse response;
  grpc::ClientContext ctx;
  if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  auto writer = datasets_->UploadDataset(&ctx, &response);
  v1::UploadDatasetRequest header;
  header.mutable_header()->set_name(name);
  header.mutable_header()->set_format(folder ? v1::UPLOAD_FORMAT_FOLDER : v1::UPLOAD_FORMAT_UNSPECIFIED);
  header.mutable_header()->mutable_split()->set_fraction(split_fraction);
  header.mutable_header()->mutable_split()->set_seed(split_seed);
  header.mutable_header()->set_total_bytes(p.bytes_total);
  bool open = writer->Write(header);
  constexpr size_t kChunk = 1 << 20;
  std::vector<char> buf(kChunk);
  for (size_t i = 0; open && i < files.size(); ++i) {
    std::ifstream in(files[i].second, std::ios::binary);
    bool first = true;
    while (open) {
      in.read(buf.data(), static_cast<std::streamsize>(kChunk));
      const auto n = static_cast<size_t>(in.gcount());
      const bool last = in.eof() || n < kChunk;
      if (n == 0 && !first && last) break;
      v1::UploadDatasetRequest msg;
      auto* chunk = msg.mutable_chunk();
      if (folder && first) chunk->set_path(files[i].first);
      chunk->set_data(buf.data(), n);
      chunk->set_last(folder && last);
      open = writer->Write(msg);
      p.bytes_sent += static_cast<int64_t>(n);
      if (progress) progress(p);
      first = false;
      if (last) break;
    }
    ++p.files_sent;
    if (progress) progress(p);
  }
  writer->WritesDone();
  const grpc::Status s = writer->Finish();
  if (!s.ok()) return FromGrpc(s, target_);
  return response;
}

absl::StatusOr<v1::ListDatasetsResponse> GraftClient::ListDatasets() {
  return AllPages<v1::ListDatasetsRequest, v1::ListDatasetsResponse>(
      v1::ListDatasetsRequest(),
      [&](const v1::ListDatasetsRequest& r) {
        return Call(*this, datasets_.get(), &v1::Datasets::Stub::ListDatasets, r);
      },
      [](v1::ListDatasetsResponse& page, v1::ListDatasetsResponse* all) {
        for (auto& d : *page.mutable_datasets()) all->add_datasets()->Swap(&d);
      });
}

absl::StatusOr<v1::Dataset> GraftClient::GetDataset(const std::string& id) {
  v1::GetDatasetRequest r;
  r.set_id(id);
  return Call(*this, datasets_.get(), &v1::Datasets::Stub::GetDataset, r);
}

absl::Status GraftClient::DeleteDataset(const std::string& id) {
  v1::DeleteDatasetRequest r;
  r.set_id(id);
  return Call(*this, datasets_.get(), &v1::Datasets::Stub::DeleteDataset, r).status();
}

absl::StatusOr<v1::Job> GraftClient::CreateJob(const v1::JobSpec& spec) {
  v1::CreateJobRequest r;
  *r.mutable_spec() = spec;
  return Call(*this, training_.get(), &v1::Training::Stub::CreateJob, r);
}

absl::StatusOr<v1::Job> GraftClient::Retrain(const v1::RetrainRequest& request) {
  return Call(*this, training_.get(), &v1::Training::Stub::Retrain, request);
}

absl::StatusOr<v1::LearningRateCurve> GraftClient::FindLearningRate(const v1::FindLearningRateRequest& request,
                                                                     int seconds) {
  return Call(*this, training_.get(), &v1::Training::Stub::FindLearningRate, request, seconds);
}

absl::StatusOr<v1::Job> GraftClient::GetJob(const std::string& id) {
  v1::GetJobRequest r;
  r.set_id(id);
  return Call(*this, training_.get(), &v1::Training::Stub::GetJob, r);
}

absl::StatusOr<v1::ListJobsResponse> GraftClient::ListJobs(v1::JobState state) {
  v1::ListJobsRequest r;
  r.set_state(state);
  return AllPages<v1::ListJobsRequest, v1::ListJobsResponse>(
      r, [&](const v1::ListJobsRequest& q) { return Call(*this, training_.get(), &v1::Training::Stub::ListJobs, q); },
      [](v1::ListJobsResponse& page, v1::ListJobsResponse* all) {
        for (auto& j : *page.mutable_jobs()) all->add_jobs()->Swap(&j);
      });
}

absl::StatusOr<v1::Job> GraftClient::CancelJob(const std::string& id) {
  v1::CancelJobRequest r;
  r.set_id(id);
  return Call(*this, training_.get(), &v1::Training::Stub::CancelJob, r, 120);
}

absl::Status GraftClient::WatchJob(const std::string& id, bool progress,
                                   const std::function<bool(const v1::JobEvent&)>& on_event, int64_t from_seq) {
  v1::WatchJobRequest r;
  r.set_id(id);
  r.set_progress(progress);
  r.set_from_seq(from_seq);
  grpc::ClientContext ctx;
  if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  auto reader = training_->WatchJob(&ctx, r);
  v1::JobEvent e;
  while (reader->Read(&e)) {
    if (!on_event(e)) {
      ctx.TryCancel();
      break;
    }
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) return FromGrpc(s, target_);
  return absl::OkStatus();
}

absl::StatusOr<v1::ListModelsResponse> GraftClient::ListModels() {
  return AllPages<v1::ListModelsRequest, v1::ListModelsResponse>(
      v1::ListModelsRequest(),
      [&](const v1::ListModelsRequest& r) { return Call(*this, models_.get(), &v1::Models::Stub::ListModels, r); },
      [](v1::ListModelsResponse& page, v1::ListModelsResponse* all) {
        for (auto& m : *page.mutable_models()) all->add_models()->Swap(&m);
      });
}

absl::StatusOr<v1::Model> GraftClient::GetModel(const std::string& id) {
  v1::GetModelRequest r;
  r.set_id(id);
  return Call(*this, models_.get(), &v1::Models::Stub::GetModel, r);
}

absl::Status GraftClient::DeleteModel(const std::string& id) {
  v1::DeleteModelRequest r;
  r.set_id(id);
  return Call(*this, models_.get(), &v1::Models::Stub::DeleteModel, r).status();
}

absl::StatusOr<v1::Backbone> GraftClient::PullBackbone(
    const std::string& name, const std::function<void(const v1::PullBackboneProgress&)>& progress) {
  v1::PullBackboneRequest r;
  r.set_name(name);
  grpc::ClientContext ctx;
  if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  auto reader = backbones_->PullBackbone(&ctx, r);
  v1::Backbone result;
  for (v1::PullBackboneProgress p; reader->Read(&p);) {
    if (progress) progress(p);
    if (p.has_backbone()) result = p.backbone();
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s, target_);
  return result;
}

absl::StatusOr<std::string> GraftClient::ExportModel(const std::string& id) {
  v1::ExportModelRequest r;
  r.set_id(id);
  grpc::ClientContext ctx;
  if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  auto reader = models_->ExportModel(&ctx, r);
  std::string out;
  v1::ExportModelChunk chunk;
  while (reader->Read(&chunk)) out += chunk.data();
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s, target_);
  return out;
}

absl::StatusOr<v1::Model> GraftClient::SetModelAlias(const std::string& name, const std::string& alias,
                                                     int64_t version,
                                                     const std::vector<std::pair<int64_t, double>>& canaries,
                                                     int64_t shadow) {
  v1::SetModelAliasRequest r;
  r.set_name(name);
  r.set_alias(alias);
  r.set_version(version);
  r.set_shadow(shadow);
  for (const auto& [canary, percent] : canaries) {
    v1::CanaryVersion* c = r.add_canaries();
    c->set_version(canary);
    c->set_percent(percent);
  }
  return Call(*this, models_.get(), &v1::Models::Stub::SetModelAlias, r, 30);
}

absl::StatusOr<v1::RecordPolicy> GraftClient::SetRecordPolicy(const std::string& model,
                                                              const v1::RecordPolicy& policy) {
  v1::SetRecordPolicyRequest r;
  r.set_model(model);
  *r.mutable_policy() = policy;
  return Call(*this, predictions_.get(), &v1::Predictions::Stub::SetRecordPolicy, r, 30);
}

absl::StatusOr<v1::RecordPolicy> GraftClient::GetRecordPolicy(const std::string& model) {
  v1::GetRecordPolicyRequest r;
  r.set_model(model);
  return Call(*this, predictions_.get(), &v1::Predictions::Stub::GetRecordPolicy, r, 30);
}

absl::StatusOr<v1::ListPredictionsResponse> GraftClient::ListPredictions(const v1::ListPredictionsRequest& request) {
  return Call(*this, predictions_.get(), &v1::Predictions::Stub::ListPredictions, request, 60);
}

absl::StatusOr<v1::PredictionRecord> GraftClient::GetPrediction(const std::string& prediction_id,
                                                               bool include_image) {
  v1::GetPredictionRequest r;
  r.set_prediction_id(prediction_id);
  r.set_include_image(include_image);
  return Call(*this, predictions_.get(), &v1::Predictions::Stub::GetPrediction, r, 60);
}

absl::StatusOr<v1::PredictionRecord> GraftClient::Feedback(const std::string& prediction_id, const std::string& label) {
  v1::FeedbackRequest r;
  r.set_prediction_id(prediction_id);
  r.set_label(label);
  return Call(*this, predictions_.get(), &v1::Predictions::Stub::Feedback, r, 30);
}

absl::StatusOr<v1::CreateDatasetFromPredictionsResponse> GraftClient::CreateDatasetFromPredictions(
    const v1::CreateDatasetFromPredictionsRequest& request) {
  return Call(*this, predictions_.get(), &v1::Predictions::Stub::CreateDatasetFromPredictions, request, 600);
}

absl::StatusOr<int64_t> GraftClient::PurgePredictions(const std::string& model) {
  v1::PurgePredictionsRequest r;
  r.set_model(model);
  auto out = Call(*this, predictions_.get(), &v1::Predictions::Stub::PurgePredictions, r, 120);
  if (!out.ok()) return out.status();
  return out->deleted();
}

absl::Status GraftClient::DeleteModelAlias(const std::string& name, const std::string& alias) {
  v1::DeleteModelAliasRequest r;
  r.set_name(name);
  r.set_alias(alias);
  return Call(*this, models_.get(), &v1::Models::Stub::DeleteModelAlias, r, 30).status();
}

absl::Status GraftClient::PredictDataset(const v1::PredictDatasetRequest& request,
                                         const std::function<bool(const v1::PredictDatasetResponse&)>& on_batch) {
  grpc::ClientContext ctx;
  if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  auto reader = models_->PredictDataset(&ctx, request);
  v1::PredictDatasetResponse batch;
  bool stopped = false;
  while (reader->Read(&batch)) {
    if (!on_batch(batch)) {
      stopped = true;
      ctx.TryCancel();
      break;
    }
  }
  const grpc::Status s = reader->Finish();
  if (stopped) return absl::CancelledError("stopped by the caller");
  if (!s.ok()) return FromGrpc(s, target_);
  return absl::OkStatus();
}

namespace {

// A server stream of progress messages whose last one holds the result
// (`has_result` says which): each message goes to `progress`; the result.
template <typename Stub, typename Request, typename Progress>
absl::StatusOr<Progress> ReadToLast(const std::string& token, const std::string& target, Stub* stub,
                                    std::unique_ptr<grpc::ClientReader<Progress>> (Stub::*call)(grpc::ClientContext*,
                                                                                                const Request&),
                                    const Request& request, const std::function<void(const Progress&)>& progress,
                                    const std::function<bool(const Progress&)>& has_result, const char* what) {
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  auto reader = (stub->*call)(&ctx, request);
  Progress p, last;
  bool got = false;
  while (reader->Read(&p)) {
    if (progress) progress(p);
    if (has_result(p)) {
      last = p;
      got = true;
    }
  }
  const grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s, target);
  if (!got) return absl::InternalError(absl::StrCat("graftd ended the ", what, " without a result"));
  return last;
}

}  // namespace

absl::StatusOr<v1::EvaluationReport> GraftClient::Evaluate(
    const v1::EvaluateRequest& request, const std::function<void(const v1::EvaluateProgress&)>& progress) {
  auto last = ReadToLast<v1::Models::Stub, v1::EvaluateRequest, v1::EvaluateProgress>(
      token_, target_, models_.get(), &v1::Models::Stub::Evaluate, request, progress,
      [](const v1::EvaluateProgress& p) { return p.has_report(); }, "evaluation");
  if (!last.ok()) return last.status();
  return last->report();
}

absl::StatusOr<v1::OptimizeModelProgress> GraftClient::OptimizeModel(
    const v1::OptimizeModelRequest& request, const std::function<void(const v1::OptimizeModelProgress&)>& progress) {
  return ReadToLast<v1::Models::Stub, v1::OptimizeModelRequest, v1::OptimizeModelProgress>(
      token_, target_, models_.get(), &v1::Models::Stub::OptimizeModel, request, progress,
      [](const v1::OptimizeModelProgress& p) { return p.has_model(); }, "optimization");
}

}  // namespace graft::client

namespace graft::client {

absl::StatusOr<v1::CreateTokenResponse> GraftClient::CreateToken(const std::string& name, v1::Role role) {
  v1::CreateTokenRequest request;
  request.set_name(name);
  request.set_role(role);
  return Call(*this, tokens_.get(), &v1::Tokens::Stub::CreateToken, request, 30);
}

absl::StatusOr<v1::ListTokensResponse> GraftClient::ListTokens() {
  return AllPages<v1::ListTokensRequest, v1::ListTokensResponse>(
      v1::ListTokensRequest(),
      [&](const v1::ListTokensRequest& r) { return Call(*this, tokens_.get(), &v1::Tokens::Stub::ListTokens, r, 30); },
      [](v1::ListTokensResponse& page, v1::ListTokensResponse* all) {
        for (auto& t : *page.mutable_tokens()) all->add_tokens()->Swap(&t);
      });
}

absl::Status GraftClient::RevokeToken(const std::string& name) {
  v1::RevokeTokenRequest request;
  request.set_name(name);
  return Call(*this, tokens_.get(), &v1::Tokens::Stub::RevokeToken, request, 30).status();
}

absl::StatusOr<v1::TokenInfo> GraftClient::WhoAmI() {
  return Call(*this, tokens_.get(), &v1::Tokens::Stub::WhoAmI, v1::WhoAmIRequest(), 30);
}

}  // namespace graft::client
