// The job specs the README shows (deploy/jobs/*.json) parse and validate.

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/train/job_spec.h"
#include "core/util/files.h"
#include "core/zoo/registry.h"
#include "server/job_convert.h"
#include "tests/testing/paths.h"

namespace graft::server {
namespace {

TEST(JobExamples, EveryReadmeSpecIsValid) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(graft::testing::SourceDir() + "/deploy/jobs")) {
    const auto text = core::ReadFile(entry.path().string());
    ASSERT_TRUE(text.ok());
    v1::JobSpec spec;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*text, &spec).ok()) << entry.path();
    auto converted = FromProto(spec);
    ASSERT_TRUE(converted.ok()) << converted.status();
    core::JobSpec core_spec = *converted;
    const core::BackboneSpec* backbone = core::Registry::BuiltIn().Find(core_spec.backbone);
    ASSERT_NE(backbone, nullptr) << entry.path();
    const int blocks = static_cast<int>(backbone->make()->blocks().size());
    EXPECT_TRUE(core::NormalizeJobSpec(core_spec, blocks).ok()) << entry.path();
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

}  // namespace
}  // namespace graft::server
