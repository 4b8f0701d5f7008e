#include "server/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace graft::server {

const std::map<std::string, core::Role>& MethodRoles() {
  using core::Role;
  static const auto* roles = new std::map<std::string, Role>{
      {"graft.v1.Tokens/CreateToken", Role::kAdmin},
      {"graft.v1.Tokens/ListTokens", Role::kAdmin},
      {"graft.v1.Tokens/RevokeToken", Role::kAdmin},
      {"graft.v1.Tokens/WhoAmI", Role::kInference},
      {"graft.v1.Backbones/ListBackbones", Role::kInference},
      {"graft.v1.Backbones/GetBackbone", Role::kInference},
      {"graft.v1.Backbones/RegisterBackbone", Role::kAdmin},
      {"graft.v1.Backbones/UnregisterBackbone", Role::kAdmin},
      {"graft.v1.Backbones/PullBackbone", Role::kAdmin},
      {"graft.v1.Backbones/LoadBackbone", Role::kAdmin},
      {"graft.v1.Backbones/UnloadBackbone", Role::kAdmin},
      {"graft.v1.Backbones/PinBackbone", Role::kAdmin},
      {"graft.v1.Inference/Predict", Role::kInference},
      {"graft.v1.Inference/Embed", Role::kInference},
      {"graft.v1.Datasets/UploadDataset", Role::kTrain},
      {"graft.v1.Datasets/ListDatasets", Role::kTrain},
      {"graft.v1.Datasets/GetDataset", Role::kTrain},
      {"graft.v1.Datasets/DeleteDataset", Role::kTrain},
      {"graft.v1.Training/CreateJob", Role::kTrain},
      {"graft.v1.Training/GetJob", Role::kTrain},
      {"graft.v1.Training/ListJobs", Role::kTrain},
      {"graft.v1.Training/CancelJob", Role::kTrain},
      {"graft.v1.Training/WatchJob", Role::kTrain},
      {"graft.v1.Training/FindLearningRate", Role::kTrain},
      {"graft.v1.Training/Retrain", Role::kTrain},
      {"graft.v1.Models/ListModels", Role::kInference},
      {"graft.v1.Models/GetModel", Role::kInference},
      {"graft.v1.Models/DeleteModel", Role::kTrain},
      {"graft.v1.Models/ExportModel", Role::kTrain},
      {"graft.v1.Models/Evaluate", Role::kTrain},
      {"graft.v1.Models/PredictDataset", Role::kTrain},
      {"graft.v1.Models/SetModelAlias", Role::kTrain},
      {"graft.v1.Models/DeleteModelAlias", Role::kTrain},
      {"graft.v1.Models/OptimizeModel", Role::kTrain},
      {"graft.v1.Predictions/SetRecordPolicy", Role::kTrain},
      {"graft.v1.Predictions/GetRecordPolicy", Role::kTrain},
      {"graft.v1.Predictions/ListPredictions", Role::kTrain},
      {"graft.v1.Predictions/GetPrediction", Role::kInference},
      {"graft.v1.Predictions/Feedback", Role::kInference},
      {"graft.v1.Predictions/CreateDatasetFromPredictions", Role::kTrain},
      {"graft.v1.Predictions/PurgePredictions", Role::kTrain},
      {"inference.GRPCInferenceService/ServerMetadata", Role::kInference},
      {"inference.GRPCInferenceService/ModelReady", Role::kInference},
      {"inference.GRPCInferenceService/ModelMetadata", Role::kInference},
      {"inference.GRPCInferenceService/ModelInfer", Role::kInference},
  };
  return *roles;
}

absl::StatusOr<core::Principal> Auth::Authorize(const grpc::ServerContext& context, const std::string& method) const {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find("authorization");
  if (found == metadata.end()) return AuthorizeHeader(nullptr, method);
  const std::string value(found->second.data(), found->second.size());
  return AuthorizeHeader(&value, method);
}

absl::StatusOr<core::Principal> Auth::AuthorizeHeader(const std::string* authorization,
                                                      const std::string& full_method) const {
  // Messages name the method as callers know it ("Predict").
  const std::string method = full_method.substr(full_method.rfind('/') + 1);
  const auto role = MethodRoles().find(full_method);
  if (role == MethodRoles().end()) {
    return absl::PermissionDeniedError(absl::StrCat(full_method, ": no role is set for this method; refused"));
  }
  const core::Role min = role->second;
  if (tokens_ == nullptr) return core::Principal{"anonymous", core::Role::kAdmin};
  if (authorization == nullptr) {
    return absl::UnauthenticatedError(absl::StrCat(
        method, ": no token; send 'authorization: Bearer <token>' (graft --token, $GRAFT_TOKEN or "
        "--token_file; graftd wrote the first admin token to <data_dir>/admin.token)"));
  }
  absl::string_view value(*authorization);
  if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer ")) {
    return absl::UnauthenticatedError(
        absl::StrCat(method, ": the authorization must be 'Bearer <token>'"));
  }
  const std::optional<core::Principal> principal = tokens_->Authenticate(std::string_view(value.data(), value.size()));
  if (!principal) return absl::UnauthenticatedError(absl::StrCat(method, ": unknown or revoked token"));
  if (static_cast<int>(principal->role) < static_cast<int>(min)) {
    return absl::PermissionDeniedError(absl::StrCat(method, " needs the role ", core::RoleName(min), "; '",
                                                    principal->name, "' has the role ",
                                                    core::RoleName(principal->role)));
  }
  return *principal;
}

absl::Status CheckOwner(const core::Principal& p, const std::string& owner, const std::string& what) {
  if (core::Owns(p, owner)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(what, " belongs to another principal; '", p.name,
                                                  "' may only use its own"));
}

}  // namespace graft::server
