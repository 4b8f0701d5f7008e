#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "core/util/files.h"
#include "core/zoo/densenet.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

TEST(Safetensors, RoundTripsTensorsAndDtypes) {
  StateDict in = {{"a", torch::randn({2, 3})},
                  {"b", torch::arange(5, torch::kInt64)},
                  {"c", torch::randn({4}).to(torch::kFloat16)}};
  const auto bytes = SerializeSafetensors(in, {{"k", "v"}});
  ASSERT_TRUE(bytes.ok());
  const auto out = ParseSafetensors(*bytes, "test");
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*out)[i].first, in[i].first);
    EXPECT_TRUE(torch::equal((*out)[i].second, in[i].second));
  }
}

TEST(Safetensors, RejectsTruncatedFile) {
  const auto bytes = SerializeSafetensors({{"w", torch::randn({64, 64})}});
  ASSERT_TRUE(bytes.ok());
  const auto out = ParseSafetensors(bytes->substr(0, bytes->size() - 100), "cut.safetensors");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("'w'"), std::string::npos) << out.status();
}

TEST(Safetensors, RejectsGarbageHeader) {
  std::string bad(8, '\0');
  bad[0] = 4;
  bad += "nope";
  EXPECT_EQ(ParseSafetensors(bad, "bad").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSafetensors("xx", "tiny").status().code(), absl::StatusCode::kInvalidArgument);
}

// A header as a hostile file would write it: `header` is the JSON text.
std::string SafetensorsWithHeader(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

TEST(Safetensors, RejectsOffsetsAndShapesNoFileCouldHold) {
  struct Case {
    const char* header;
    const char* message;
  };
  const Case cases[] = {
      // Found by the fuzzer: a float end offset must not reach an integer conversion.
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,2.2e29]}})", "no valid data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", "no valid data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", "too many elements"},
      {R"({"w":{"dtype":"F32","shape":[9223372036854775807,9223372036854775807,0],"data_offsets":[0,0]}})",
       "too many elements"},
      {R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", "too many elements"},
      {R"({"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4]}})", "more elements than the file holds"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "does not match its shape"},
  };
  for (const Case& c : cases) {
    const auto out = ParseSafetensors(SafetensorsWithHeader(c.header, 4), "hostile.safetensors");
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << c.header;
    EXPECT_NE(out.status().message().find(c.message), std::string::npos) << c.header << ": " << out.status();
  }
  // Empty tensors are legal in any dimension order.
  const auto empty = ParseSafetensors(
      SafetensorsWithHeader(R"({"e":{"dtype":"F32","shape":[0,7],"data_offsets":[0,0]},)"
                            R"("f":{"dtype":"F32","shape":[7,0],"data_offsets":[0,0]}})",
                            0),
      "empty.safetensors");
  ASSERT_TRUE(empty.ok()) << empty.status();
  ASSERT_EQ(empty->size(), 2u);
  EXPECT_EQ((*empty)[1].second.sizes(), (std::vector<int64_t>{7, 0}));
}

TEST(Pth, RejectsFilesThatAreNotZipArchives) {
  graft::testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Join("legacy.pth"), "\x80\x02garbage").ok());
  const auto r = ReadPth(dir.Join("legacy.pth"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not a zip archive"), std::string::npos) << r.status();
  EXPECT_EQ(ReadPth(dir.Join("missing.pth")).status().code(), absl::StatusCode::kNotFound);
}

TEST(Pth, RejectsTruncatedArchive) {
  graft::testing::TempDir dir;
  const auto full = ReadFile(graft::testing::WeightsDir() + "/squeezenet1_1-imagenet.pth");
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE(WriteFileAtomic(dir.Join("cut.pth"), full->substr(0, full->size() / 2)).ok());
  EXPECT_EQ(ReadPth(dir.Join("cut.pth")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoadStateDict, IsStrictAndNamesTheKeys) {
  BackbonePtr model = Registry::BuiltIn().Find("squeezenet1_1")->make();
  StateDict good = ModuleStateDict(*model);
  StateDict weights;
  for (const auto& [k, v] : good) weights.emplace_back(k, v.clone());

  StateDict missing(weights.begin() + 1, weights.end());
  auto s = LoadStateDict(*model, missing);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("missing: " + weights[0].first), std::string::npos) << s;

  StateDict extra = weights;
  extra.emplace_back("features.99.weight", torch::zeros({1}));
  s = LoadStateDict(*model, extra);
  EXPECT_NE(s.message().find("unexpected: features.99.weight"), std::string::npos) << s;

  StateDict misshaped = weights;
  misshaped[0].second = torch::zeros({1, 2, 3});
  s = LoadStateDict(*model, misshaped);
  EXPECT_NE(s.message().find("mis-shaped: " + weights[0].first), std::string::npos) << s;

  // The module is unchanged by a refused load, then takes a good one.
  weights[0].second.fill_(0.5);
  ASSERT_TRUE(LoadStateDict(*model, weights).ok());
  EXPECT_TRUE(torch::all(model->named_parameters()[weights[0].first] == 0.5).item<bool>());
}

}  // namespace
}  // namespace graft::core

namespace graft::core {
namespace {

TEST(DenseNetKeys, PublishedOldNamesMapOntoTheModule) {
  EXPECT_EQ(DenseNetKey("features.denseblock1.denselayer1.norm.1.weight"),
            "features.denseblock1.denselayer1.norm1.weight");
  EXPECT_EQ(DenseNetKey("features.denseblock4.denselayer16.conv.2.weight"),
            "features.denseblock4.denselayer16.conv2.weight");
  EXPECT_EQ(DenseNetKey("features.denseblock2.denselayer3.norm.2.running_var"),
            "features.denseblock2.denselayer3.norm2.running_var");
  // Current names and everything else pass unchanged.
  EXPECT_EQ(DenseNetKey("features.denseblock1.denselayer1.norm1.weight"),
            "features.denseblock1.denselayer1.norm1.weight");
  EXPECT_EQ(DenseNetKey("features.transition1.norm.weight"), "features.transition1.norm.weight");
  EXPECT_EQ(DenseNetKey("classifier.bias"), "classifier.bias");
}

}  // namespace
}  // namespace graft::core
