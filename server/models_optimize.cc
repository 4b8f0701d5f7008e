// OptimizeModel: serving a model in another precision once it is measured
// against float32 (README, Precision).

#include "absl/strings/str_cat.h"
#include "core/eval/precision_measure.h"
#include "core/util/status_macros.h"
#include "server/model_convert.h"
#include "server/models_service.h"
#include "server/request_check.h"
#include "server/status_util.h"

namespace graft::server {
namespace {

constexpr int64_t kCalibrationImages = 256;
constexpr int64_t kMaxCalibrationImages = 1024;

}  // namespace

grpc::Status ModelsService::OptimizeModel(grpc::ServerContext* context, const v1::OptimizeModelRequest* request,
                                          grpc::ServerWriter<v1::OptimizeModelProgress>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/OptimizeModel");
  GRAFT_CHECK_STRINGS(*request);
  return ToGrpcStatus([&]() -> absl::Status {
    ASSIGN_OR_RETURN(const core::Precision precision, FromProto(request->precision()));
    ASSIGN_OR_RETURN(const std::string id, ResolveFor(who, request->model()));
    ASSIGN_OR_RETURN(const std::shared_ptr<const core::ServingModel> model, store_.Get(id));
    RETURN_IF_ERROR(CheckOwner(who, model->info().owner, absl::StrCat("model '", request->model(), "'")));
    const auto writes = deadlines_.ForWrites(context);
    const auto finish = [&](const core::ModelInfo& info, const core::PrecisionCheck* check) -> absl::Status {
      v1::OptimizeModelProgress last;
      if (check != nullptr) {
        last.set_images_done(2 * check->images);
        last.set_images_total(2 * check->images);
        ToProto(*check, last.mutable_check());
      }
      ToProto(info, last.mutable_model());
      last.mutable_model()->clear_report();  // GetModel has it
      last.mutable_model()->clear_history();
      if (!StreamWatchdog::Write(*writes, writer, last)) {
        return writes->expired() ? writes->Expired("read of the result") : absl::CancelledError("the client went away");
      }
      return absl::OkStatus();
    };
    if (precision == core::Precision::kFp32) {  // back to float32: nothing to measure
      if (request->dry_run()) return finish(model->info(), nullptr);
      ASSIGN_OR_RETURN(const core::ModelInfo info, store_.UpdatePrecision(id, precision, std::nullopt));
      return finish(info, nullptr);
    }
    core::PrecisionGate gate = core::DefaultGate(precision);
    if (request->has_min_agreement()) gate.min_agreement = request->min_agreement();
    if (request->has_max_accuracy_drop()) gate.max_accuracy_drop = request->max_accuracy_drop();
    if (request->has_max_probability_difference()) gate.max_probability_difference = request->max_probability_difference();
    RETURN_IF_ERROR(core::ValidateGate(gate));
    if (predictor_ != nullptr) RETURN_IF_ERROR(core::PrecisionSupported(precision, predictor_->zoo().device()));
    ASSIGN_OR_RETURN(auto slot, passes_.Acquire(who.name));
    const std::string dataset = request->dataset().empty() ? model->info().spec.dataset : request->dataset();
    ASSIGN_OR_RETURN(Pass pass, PreparePass(who, request->model(), dataset, request->split()));
    std::optional<core::Int8Calibration> calibration;
    const core::Caller calibrating([&]() { return context->IsCancelled(); }, who.name);
    if (precision == core::Precision::kInt8) {
      // Calibrated on the model's own training split, measured on `pass`.
      const int64_t images = request->has_calibration_images() ? request->calibration_images() : kCalibrationImages;
      if (images < 1 || images > kMaxCalibrationImages) {
        return absl::InvalidArgumentError(absl::StrCat("calibration_images is ", images, "; it must lie in [1, ",
                                                       kMaxCalibrationImages, "]"));
      }
      ASSIGN_OR_RETURN(const Pass train, PreparePass(who, request->model(), model->info().spec.dataset,
                                                     v1::DATASET_SPLIT_TRAIN));
      ASSIGN_OR_RETURN(calibration, core::CalibrateModel(*predictor_, train.run, images, train.dataset.name,
                                                         train.split, calibrating));
      core::ModelInfo candidate = pass.run.model->info();
      candidate.int8_calibration = calibration;
      pass.run.model = core::ModelStore::WithInfo(*pass.run.model, std::move(candidate));
    }
    bool gone = false;
    auto progress = [&](int64_t done, int64_t total) {
      v1::OptimizeModelProgress p;
      p.set_images_done(done);
      p.set_images_total(total);
      if (!StreamWatchdog::Write(*writes, writer, p)) gone = true;
    };
    const core::Caller caller([&]() { return gone || context->IsCancelled(); }, who.name);
    ASSIGN_OR_RETURN(const core::PrecisionCheck check,
                     core::MeasurePrecision(*predictor_, pass.run, precision, gate, pass.dataset.name, pass.split,
                                            progress, caller));
    if (gone) return writes->expired() ? writes->Expired("read of the progress") : absl::CancelledError("the client went away");
    // The check is kept either way; the model switches only when it passed.
    const bool switched = check.passed && !request->dry_run();
    const core::Precision serve = switched ? precision : model->info().precision;
    // An int8 calibration is kept with the model that serves with it.
    ASSIGN_OR_RETURN(const core::ModelInfo info,
                     store_.UpdatePrecision(id, serve, check,
                                            switched ? calibration : std::nullopt));
    if (!check.passed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", request->model(), "' stays in ", core::PrecisionName(serve), ": ", core::PrecisionName(precision),
          " on ", check.images, " ", check.split, " images of '", check.dataset, "' fails the gate: ",
          core::GateFailures(check)));
    }
    return finish(info, &check);
  }());
}

}  // namespace graft::server
