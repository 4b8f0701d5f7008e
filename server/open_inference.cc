#include "server/open_inference.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"
#include "server/auth.h"
#include "server/little_endian.h"
#include "server/models_service.h"
#include "server/prediction_recording.h"
#include "graft_version.h"

namespace graft::server {
namespace {

constexpr int64_t kMaxDimension = int64_t{1} << 20;
constexpr int64_t kMaxElements = int64_t{1} << 31;

// Elements in contents fields other than `allowed` (a field number of InferTensorContents).
int64_t ElementsOutside(const inference::InferTensorContents& c, int allowed) {
  const int64_t sizes[] = {0,
                           c.bool_contents_size(),
                           c.int_contents_size(),
                           c.int64_contents_size(),
                           c.uint_contents_size(),
                           c.uint64_contents_size(),
                           c.fp32_contents_size(),
                           c.fp64_contents_size(),
                           c.bytes_contents_size()};
  int64_t n = 0;
  for (int field = 1; field <= 8; ++field) {
    if (field != allowed) n += sizes[field];
  }
  return n;
}

// Typed contents of a BYTES or FP32 input: all in its datatype's field, as
// many as its shape holds.
absl::Status CheckTypedContents(const inference::ModelInferRequest::InferInputTensor& in, const std::string& what,
                                int64_t elements) {
  const bool bytes = in.datatype() == "BYTES";
  const char* field = bytes ? "bytes_contents" : "fp32_contents";
  const int64_t have = bytes ? in.contents().bytes_contents_size() : in.contents().fp32_contents_size();
  if (ElementsOutside(in.contents(), bytes ? 8 : 6) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", in.datatype(), " but has contents in another datatype's field; use ", field));
  }
  if (have != elements) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has ", have, " ", field, "; its shape holds ", elements));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Elements(const google::protobuf::RepeatedField<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 1 || d > kMaxDimension) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": shape [", absl::StrJoin(shape, ","),
                                                     "] has a dimension outside [1, ", kMaxDimension, "]"));
    }
    n *= d;
    if (n > kMaxElements) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": shape [", absl::StrJoin(shape, ","), "] is too large"));
    }
  }
  return n;
}

std::string Usage() {
  return absl::StrCat("ModelInfer takes one input: '", OpenInference::kImageInput,
                      "' (BYTES [N] or [N,1], encoded images) or '", OpenInference::kTensorInput,
                      "' (FP32 [N,3,H,W], preprocessed images)");
}

// The classification parameter of a requested output: k, or nullopt.
absl::StatusOr<std::optional<int64_t>> ClassificationOf(
    const inference::ModelInferRequest::InferRequestedOutputTensor& o) {
  const auto found = o.parameters().find("classification");
  if (found == o.parameters().end()) return std::optional<int64_t>();
  const inference::InferParameter& p = found->second;
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kInt64Param:
      return std::optional<int64_t>(p.int64_param());
    case inference::InferParameter::kUint64Param:
      return std::optional<int64_t>(static_cast<int64_t>(std::min<uint64_t>(p.uint64_param(), kMaxElements)));
    default:
      return absl::InvalidArgumentError("output parameter 'classification' must be an integer (the number of classes)");
  }
}

}  // namespace

inference::ServerMetadataResponse OpenInference::ServerMetadata() const {
  inference::ServerMetadataResponse out;
  out.set_name("graft");
  out.set_version(kGraftVersion);
  out.add_extensions("classification");
  out.add_extensions("binary_tensor_data");
  return out;
}

absl::StatusOr<OpenInference::Target> OpenInference::Find(const core::Principal& who, const std::string& name,
                                                          const std::string& version,
                                                          const std::string* routing_key) const {
  if (name.empty()) return absl::InvalidArgumentError("a model name is required");
  std::string ref = name;
  if (!version.empty()) {
    if (name.find_first_of(":@") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("model '", name, "' already names a version or alias; leave the version empty"));
    }
    ref = absl::StrCat(name, ":", version);
  }
  absl::Status model_error = absl::NotFoundError("no model store");
  if (models_ != nullptr) {
    absl::StatusOr<core::ServingRoute> route = absl::UnknownError("unresolved");
    if (routing_key != nullptr) {
      route = models_->ResolveForServing(ref, who.name, core::UsesAnyOwnersModels(who), *routing_key);
    } else if (auto id = models_->Resolve(ref, who.name, core::UsesAnyOwnersModels(who)); id.ok()) {
      route = core::ServingRoute{*std::move(id), {}};
    } else {
      route = id.status();
    }
    if (route.ok()) {
      auto model = models_->Get(route->id);
      if (model.ok()) {
        const core::ModelInfo& info = (*model)->info();
        if (!MayUseModel(who, info.owner)) return CheckOwner(who, info.owner, absl::StrCat("model '", ref, "'"));
        Target t;
        t.name = name;
        t.version = info.version > 0 ? std::to_string(info.version) : "1";
        t.model = *model;
        t.backbone = info.backbone;
        t.classes = static_cast<int64_t>(info.class_names.size());
        t.preprocessing = info.preprocessing;
        t.ready = true;
        t.shadow = route->shadow;
        return t;
      }
      model_error = model.status();
    } else {
      model_error = route.status();
    }
    if (absl::IsPermissionDenied(model_error)) return model_error;
  }
  const auto backbone = zoo_.Get(name);
  if (backbone.ok()) {
    if (!version.empty() && version != "1") {
      return absl::NotFoundError(
          absl::StrCat("backbone '", name, "' has one version, 1; version '", version, "' does not exist"));
    }
    Target t;
    t.name = name;
    t.version = "1";
    t.backbone = backbone->spec->name;
    t.classes = backbone->spec->num_classes;
    t.preprocessing = backbone->spec->preprocessing;
    t.ready = t.classes > 0 && backbone->weights_present;  // loads at first use; asking starts no fetch
    return t;
  }
  return absl::NotFoundError(absl::StrCat("no model or backbone '", ref, "' (", model_error.message(), ")"));
}

absl::StatusOr<bool> OpenInference::ModelReady(const core::Principal& who, const std::string& name,
                                               const std::string& version) const {
  ASSIGN_OR_RETURN(const Target t, Find(who, name, version));
  return t.ready && Ready();
}

absl::StatusOr<inference::ModelMetadataResponse> OpenInference::ModelMetadata(const core::Principal& who,
                                                                              const std::string& name,
                                                                              const std::string& version) const {
  ASSIGN_OR_RETURN(const Target t, Find(who, name, version));
  inference::ModelMetadataResponse out;
  out.set_name(t.name);
  // Every version of the name, as Triton lists a model's versions; a model
  // without a name (or a backbone) has the one.
  std::vector<int64_t> versions;
  if (t.model != nullptr && models_ != nullptr) versions = models_->Versions(t.model->info());
  if (versions.empty()) out.add_versions(t.version);
  for (const int64_t v : versions) out.add_versions(std::to_string(v));
  out.set_platform("pytorch_libtorch");
  auto* image = out.add_inputs();
  image->set_name(kImageInput);
  image->set_datatype("BYTES");
  image->add_shape(-1);
  auto* tensor = out.add_inputs();
  tensor->set_name(kTensorInput);
  tensor->set_datatype("FP32");
  for (int64_t d : {int64_t{-1}, int64_t{3}, int64_t{t.preprocessing.height}, int64_t{t.preprocessing.width}}) {
    tensor->add_shape(d);
  }
  auto* probabilities = out.add_outputs();
  probabilities->set_name(kOutput);
  probabilities->set_datatype("FP32");
  probabilities->add_shape(-1);
  probabilities->add_shape(t.classes);
  return out;
}

absl::Status OpenInference::ModelInfer(const core::Principal& who, const inference::ModelInferRequest& request,
                                       bool raw_outputs, const core::CancelledFn& cancelled,
                                       inference::ModelInferResponse* response, const std::string& routing_key) const {
  ASSIGN_OR_RETURN(const Target t, Find(who, request.model_name(), request.model_version(), &routing_key));
  if (t.classes <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("backbone '", t.backbone, "' has no classification head; use Embed for its features"));
  }
  if (request.inputs_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(Usage(), "; the request has ", request.inputs_size()));
  }
  const bool raw = request.raw_input_contents_size() > 0;
  if (raw && request.raw_input_contents_size() != request.inputs_size()) {
    return absl::InvalidArgumentError(absl::StrCat("raw_input_contents has ", request.raw_input_contents_size(),
                                                   " entries for ", request.inputs_size(), " inputs"));
  }
  const auto& in = request.inputs(0);
  const std::string what = absl::StrCat("input '", in.name(), "'");
  if (raw && in.has_contents() && in.contents().ByteSizeLong() > 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has both contents and raw_input_contents; send one form"));
  }
  ASSIGN_OR_RETURN(const int64_t elements, Elements(in.shape(), what));
  if (in.shape_size() == 0) return absl::InvalidArgumentError(absl::StrCat(what, " has no shape; ", Usage()));

  RequestSize size;
  std::vector<core::ImageInput> inputs;
  std::vector<std::string> raw_elements;
  if (in.datatype() == "BYTES") {
    if (in.shape_size() > 2 || (in.shape_size() == 2 && in.shape(1) != 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": BYTES shape [", absl::StrJoin(in.shape(), ","), "] is not [N] or [N,1]"));
    }
    if (elements > limits_.max_images) {
      return core::LimitError(absl::StatusCode::kResourceExhausted,
                              absl::StrCat("the request holds ", elements, " images; at most ", limits_.max_images,
                                           " (--max_images_per_request)"),
                              "max_images_per_request");
    }
    if (raw) {
      ASSIGN_OR_RETURN(raw_elements, SplitRawBytes(request.raw_input_contents(0), elements, what));
    } else {
      RETURN_IF_ERROR(CheckTypedContents(in, what, elements));
    }
    const auto element = [&](int64_t i) -> const std::string& {
      return raw ? raw_elements[i] : in.contents().bytes_contents(static_cast<int>(i));
    };
    for (int64_t i = 0; i < elements; ++i) size.AddEncoded(element(i), limits_);
    inputs.resize(elements);
    for (int64_t i = 0; i < elements; ++i) {
      inputs[i].encoded = raw ? std::move(raw_elements[i]) : element(i);
    }
  } else if (in.datatype() == "FP32") {
    if (in.shape_size() != 4) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": FP32 shape [", absl::StrJoin(in.shape(), ","), "] is not [N,3,H,W]"));
    }
    if (raw) {
      if (static_cast<int64_t>(request.raw_input_contents(0).size()) != elements * 4) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": raw contents hold ",
                                                       request.raw_input_contents(0).size(),
                                                       " bytes; its FP32 shape holds ", elements * 4));
      }
    } else {
      RETURN_IF_ERROR(CheckTypedContents(in, what, elements));
    }
    size.AddTensor(in.shape(0), elements);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(what, " has datatype '", in.datatype(), "'; ", Usage()));
  }
  ASSIGN_OR_RETURN(const Admission admitted, Admission::Admit(size, limits_, budget_));

  if (in.datatype() == "FP32") {
    ASSIGN_OR_RETURN(torch::Tensor x, core::GuardInternal("tensor input", [&]() -> absl::StatusOr<torch::Tensor> {
                       torch::Tensor x =
                           torch::empty(std::vector<int64_t>(in.shape().begin(), in.shape().end()), torch::kFloat32);
                       float* out = x.data_ptr<float>();
                       if (raw) {
                         CopyLittleEndianFloats(request.raw_input_contents(0).data(), elements, out);
                       } else {
                         std::memcpy(out, in.contents().fp32_contents().data(), sizeof(float) * elements);
                       }
                       return x;
                     }));
    inputs.push_back(core::ImageInput{std::string(), x});
  }

  std::optional<int64_t> classification;
  bool requested = false;
  for (const auto& o : request.outputs()) {
    if (o.name() != kOutput) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown output '", o.name(), "'; the model has one output, '", kOutput, "'"));
    }
    if (requested) return absl::InvalidArgumentError(absl::StrCat("output '", kOutput, "' requested twice"));
    requested = true;
    ASSIGN_OR_RETURN(classification, ClassificationOf(o));
    if (classification && *classification < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("output parameter 'classification' must be at least 1, got ", *classification));
    }
    // More than the model has: every class, as Triton's classification extension answers.
    if (classification) classification = std::min<int64_t>(*classification, t.classes);
  }

  std::vector<std::vector<core::ClassScore>> rows;
  const int all = static_cast<int>(t.classes);
  core::Precision precision = core::Precision::kFp32;
  if (t.model != nullptr) {
    ASSIGN_OR_RETURN(core::MultiPredictResult result,
                     predictor_.PredictModels({t.model->info().id}, inputs, all, core::Caller(cancelled, who.name),
                                               t.shadow.empty() ? core::ShadowMap{}
                                                                : core::ShadowMap{{t.model->info().id, t.shadow}}));
    rows = std::move(result.models[0].images);
    precision = result.models[0].precision;
    const auto store = request.parameters().find("store");
    if (store != request.parameters().end() &&
        store->second.parameter_choice_case() != inference::InferParameter::kBoolParam) {
      return absl::InvalidArgumentError("request parameter 'store' must be a boolean");
    }
    std::vector<const std::string*> encoded;
    for (const core::ImageInput& input : inputs) encoded.push_back(input.encoded.empty() ? nullptr : &input.encoded);
    const auto recorded = RecordAnswers(records_, metrics_, t.model->info(), who.name, encoded, rows,
                                        store == request.parameters().end() || store->second.bool_param());
    std::string ids, kept;
    for (const RecordedAnswer& r : recorded) {
      absl::StrAppend(&ids, ids.empty() ? "" : ",", r.prediction_id);
      absl::StrAppend(&kept, kept.empty() ? "" : ",", r.recorded ? "1" : "0");
    }
    (*response->mutable_parameters())["prediction_ids"].set_string_param(ids);
    (*response->mutable_parameters())["recorded"].set_string_param(kept);
  } else {
    RETURN_IF_ERROR(MayStartWeightsFetch(who, predictor_.zoo(), t.backbone));
    ASSIGN_OR_RETURN(core::PredictResult result, predictor_.Predict(t.backbone, inputs, all, core::Caller(cancelled, who.name)));
    rows = std::move(result.images);
  }
  metrics_.AddImagesPredicted(t.backbone, core::PrecisionName(precision), static_cast<double>(rows.size()));
  // Which number format served the answer (README, Precision).
  (*response->mutable_parameters())["precision"].set_string_param(core::PrecisionName(precision));

  const int64_t n = static_cast<int64_t>(rows.size());
  response->set_model_name(request.model_name());
  response->set_model_version(t.version);
  response->set_id(request.id());
  auto* out = response->add_outputs();
  out->set_name(kOutput);
  out->add_shape(n);
  if (classification) {
    out->set_datatype("BYTES");
    out->add_shape(*classification);
    std::string* raw_out = raw_outputs ? response->add_raw_output_contents() : nullptr;
    for (const auto& row : rows) {
      for (int64_t k = 0; k < *classification && k < static_cast<int64_t>(row.size()); ++k) {
        const std::string element = absl::StrFormat("%f:%d:%s", row[k].probability, row[k].index, row[k].label);
        if (raw_out != nullptr) {
          AppendRawBytes(element, raw_out);
        } else {
          out->mutable_contents()->add_bytes_contents(element);
        }
      }
    }
    return absl::OkStatus();
  }
  out->set_datatype("FP32");
  out->add_shape(t.classes);
  std::vector<float> probabilities(static_cast<size_t>(n * t.classes), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    for (const core::ClassScore& s : rows[i]) {
      if (s.index >= 0 && s.index < t.classes) probabilities[i * t.classes + s.index] = s.probability;
    }
  }
  if (!raw_outputs) {
    out->mutable_contents()->mutable_fp32_contents()->Add(probabilities.begin(), probabilities.end());
    return absl::OkStatus();
  }
  std::string* raw_out = response->add_raw_output_contents();
  raw_out->reserve(probabilities.size() * 4);
  for (float p : probabilities) AppendLittleEndianFloat(p, raw_out);
  return absl::OkStatus();
}

}  // namespace graft::server
