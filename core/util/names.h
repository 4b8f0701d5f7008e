#pragma once

// The rules for the names users give models and aliases: below the job spec
// (which checks a job's model_name) and the model store alike.

#include <string>

#include "absl/status/status.h"

namespace graft::core {

// Names and aliases: 1 to 64 of [A-Za-z0-9._-], starting with a letter or
// digit, not starting with "model-" (ids do). INVALID_ARGUMENT names `field`.
absl::Status ValidateModelName(const std::string& name, const std::string& field);
absl::Status ValidateAliasName(const std::string& alias, const std::string& field);

}  // namespace graft::core
