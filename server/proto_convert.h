#pragma once

// Conversions between proto messages and core structs, in one place.

#include <vector>

#include "absl/status/statusor.h"
#include "core/data/preprocessing.h"
#include "core/serve/predictor.h"
#include "core/zoo/zoo.h"
#include <google/protobuf/timestamp.pb.h>
#include "graft/v1/backbones.pb.h"
#include "graft/v1/common.pb.h"
#include "graft/v1/inference.pb.h"

namespace graft::server {

// Unix seconds as a Timestamp; left unset for 0 (never).
void SetTimestamp(double seconds, google::protobuf::Timestamp* out);
void ToProto(const core::Preprocessing& in, v1::Preprocessing* out);
void ToProto(const core::BackboneStatus& in, v1::Backbone* out);
void ToProto(const core::DeviceMemoryUse& in, v1::DeviceMemory* out);
void ToProto(const core::Timing& in, v1::Timing* out);

// Validates shapes and sizes; INVALID_ARGUMENT naming the image otherwise.
absl::StatusOr<std::vector<core::ImageInput>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::ImageInput>& images);

}  // namespace graft::server
