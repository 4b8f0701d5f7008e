#pragma once

// Proto <-> core conversions for published models and what is measured of them.

#include "absl/status/statusor.h"
#include "core/serve/model_store.h"
#include "graft/v1/models.pb.h"

namespace graft::server {

void ToProto(const core::ModelInfo& in, v1::Model* out);
void ToProto(const core::EvaluationReport& in, v1::EvaluationReport* out);
void ToProto(const core::PrecisionCheck& in, v1::PrecisionCheck* out);
v1::Precision ToProto(core::Precision in);
// Unspecified is float32; INVALID_ARGUMENT for a value this server does not know.
absl::StatusOr<core::Precision> FromProto(v1::Precision in);

}  // namespace graft::server
