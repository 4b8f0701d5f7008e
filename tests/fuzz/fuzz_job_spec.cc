// A job spec as a client sends it: JSON (graft train --spec, the proto's JSON
// mapping) or the binary proto on the wire, through the server's conversion
// and the engine's validation, as CreateJob runs them.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/train/job_spec.h"
#include "core/train/schedule.h"
#include "server/job_convert.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // invalid UTF-8 is refused; no need to say so a million times
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace graft;
  const std::string text(reinterpret_cast<const char*>(data), size);
  v1::JobSpec proto;
  const bool parsed = !text.empty() && text[0] == '{'
                          ? google::protobuf::util::JsonStringToMessage(text, &proto).ok()
                          : proto.ParseFromString(text);
  if (!parsed) return 0;
  auto spec = server::FromProto(proto);
  if (!spec.ok()) return 0;
  constexpr int kBlocks = 17;  // MobileNetV2's
  if (!core::NormalizeJobSpec(*spec, kBlocks).ok()) return 0;
  // A valid spec: each stage trains a known number of blocks, its learning
  // rate is finite at every point of the schedule, and the spec stored in the
  // job table reads back and validates again unchanged.
  for (const auto& stage : spec->stages) {
    const int trainable = core::TrainableBlocks(stage.train, kBlocks);
    GRAFT_FUZZ_ASSERT(trainable >= 0 && trainable <= kBlocks);
    for (int epoch = 0; epoch < 3; ++epoch) {
      for (double progress : {0.0, 0.5, 1.0}) {
        const double lr = core::LearningRate(stage, epoch, progress);
        GRAFT_FUZZ_ASSERT(std::isfinite(lr) && lr >= 0);
      }
    }
  }
  const nlohmann::json stored = *spec;
  core::JobSpec reread = stored.get<core::JobSpec>();
  GRAFT_FUZZ_ASSERT(core::NormalizeJobSpec(reread, kBlocks).ok());
  if (nlohmann::json(reread) != stored) {
    std::fprintf(stderr, "stored:  %s\nre-read: %s\n", stored.dump().c_str(), nlohmann::json(reread).dump().c_str());
  }
  GRAFT_FUZZ_ASSERT(nlohmann::json(reread) == stored);
  return 0;
}
