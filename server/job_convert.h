#pragma once

// Proto <-> core conversions for datasets, jobs and events (models:
// model_convert.h).

#include "core/data/dataset.h"
#include "core/jobs/job_store.h"
#include "graft/v1/datasets.pb.h"
#include "graft/v1/training.pb.h"

namespace graft::server {

// INVALID_ARGUMENT naming the field for enum values this server does not know.
absl::StatusOr<core::JobSpec> FromProto(const v1::JobSpec& in);
void ToProto(const core::JobSpec& in, v1::JobSpec* out);
void ToProto(const core::EpochMetrics& in, v1::EpochMetrics* out);
void ToProto(const core::JobRecord& in, v1::Job* out);
void ToProto(const core::JobEvent& in, v1::JobEvent* out);
void ToProto(const core::TrialResult& in, v1::Trial* out);
void ToProto(const core::LrCurve& in, v1::LearningRateCurve* out);
void ToProto(const core::PromotionResult& in, v1::Promotion* out);
// `*has` set; INVALID_ARGUMENT for an unknown metric.
absl::StatusOr<core::PromotionSpec> FromProto(const v1::PromotionSpec& in, bool* has);
// What a job's events add to GetJob: a search's progress and leaderboard,
// the learning rate a range test found.
void AddEventsOf(const core::JobRecord& job, const std::vector<core::JobEvent>& events, v1::Job* out);
void ToProto(const core::DatasetInfo& in, v1::Dataset* out);
v1::JobState ToProto(core::JobState state);
absl::StatusOr<std::optional<core::JobState>> FromProto(v1::JobState state);

}  // namespace graft::server
