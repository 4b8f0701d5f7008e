// Hostile files against graft's own parsers: TIFF headers that decoders
// would read differently, pickles that nest through the memo or refer to
// themselves, and the decode memory budget. The last tests keep what the fuzz
// harnesses (tests/fuzz) found, as plain tests.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <cstring>
#include <opencv2/imgcodecs.hpp>
#include <thread>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/data/decode_budget.h"
#include "core/data/image_codec.h"
#include "core/serve/model_store.h"
#include "core/train/job_spec.h"
#include "core/util/files.h"
#include "core/zoo/torchscript_backbone.h"
#include "core/zoo/archive_check.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

std::string Le16(uint16_t v) { return std::string{static_cast<char>(v & 0xff), static_cast<char>(v >> 8)}; }
std::string Le32(uint32_t v) { return Le16(static_cast<uint16_t>(v & 0xffff)) + Le16(static_cast<uint16_t>(v >> 16)); }

// A little-endian TIFF header and one IFD of (tag, value) SHORT entries.
std::string Tiff(const std::vector<std::pair<uint16_t, uint16_t>>& tags, uint32_t next_ifd = 0) {
  std::string t = std::string("II*\0", 4) + Le32(8) + Le16(static_cast<uint16_t>(tags.size()));
  for (const auto& [tag, value] : tags) t += Le16(tag) + Le16(3) + Le32(1) + Le16(value) + Le16(0);
  return t + Le32(next_ifd) + std::string(64, '\0');
}

TEST(HostileTiffTest, RepeatedOrUnorderedTagsAreRefusedNotReadOneWay) {
  // Width twice: libtiff reads the first, a last-wins reader the last.
  auto twice = ProbeImage(Tiff({{256, 1000}, {256, 10}, {257, 1000}}));
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(twice.status().message().find("out of order or repeated"), std::string::npos) << twice.status();
  EXPECT_FALSE(ProbeImage(Tiff({{257, 10}, {256, 10}})).ok());
  auto pages = ProbeImage(Tiff({{256, 10}, {257, 10}}, /*next_ifd=*/8));
  EXPECT_NE(pages.status().message().find("multi-page TIFF"), std::string::npos) << pages.status();
  auto ok = ProbeImage(Tiff({{256, 30}, {257, 20}}));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->width, 30);
  EXPECT_EQ(ok->height, 20);
}

TEST(HostileTiffTest, TiffsOpenCvWritesStillDecode) {
  cv::Mat img(20, 30, CV_8UC3, cv::Scalar(10, 20, 30));
  std::vector<uchar> buf;
  ASSERT_TRUE(cv::imencode(".tiff", img, buf));
  auto decoded = DecodeImage(std::string(buf.begin(), buf.end()), {});
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->cols, 30);
  EXPECT_EQ(decoded->at<cv::Vec3b>(0, 0), cv::Vec3b(30, 20, 10));
}

std::string Put(uint32_t i) { return i < 256 ? std::string{'q', static_cast<char>(i)} : "r" + Le32(i); }
std::string Get(uint32_t i) { return i < 256 ? std::string{'h', static_cast<char>(i)} : "j" + Le32(i); }

TEST(HostilePickleTest, NestingBuiltThroughTheMemoIsMeasuredWhole) {
  // n empty lists in the memo, then list i gets list i+1 appended, after it
  // was stored: the nesting is n deep although no APPEND sees more than 1.
  const uint32_t n = 5000;
  std::string p = "\x80\x02";
  for (uint32_t i = 0; i < n; ++i) p += "]" + Put(i) + "0";
  for (uint32_t i = 0; i + 1 < n; ++i) p += Get(i) + Get(i + 1) + "a0";
  p += Get(0) + ".";
  const absl::Status s = CheckPickle(p, 200);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("nests containers 5000 deep"), std::string::npos) << s;
  // A list appended to itself.
  const std::string cycle{'\x80', '\x02', ']', 'q', '\0', 'h', '\0', 'a', '.'};
  EXPECT_NE(CheckPickle(cycle, 200).message().find("reference cycle"), std::string::npos) << CheckPickle(cycle, 200);
  // Ordinary shapes pass: a dict of 3 tuples, and a truncated pickle fails.
  EXPECT_TRUE(CheckPickle("\x80\x02}(K\x01K\x02\x86K\x03K\x04\x86u.", 200).ok());
  EXPECT_NE(CheckPickle("\x80\x02}(K\x01", 200).message().find("malformed pickle"), std::string::npos);
  EXPECT_NE(CheckPickle("\x80\x02\xff.", 200).message().find("unknown opcode"), std::string::npos);
}

TEST(DecodeBudgetTest, DecodesWaitForRoomThenAreRefusedNamingTheFlag) {
  DecodeBudget budget(100, std::chrono::milliseconds(100));
  auto a = budget.Reserve(60, "a");
  ASSERT_TRUE(a.ok());
  const auto start = std::chrono::steady_clock::now();
  auto b = budget.Reserve(60, "b");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(90));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(b.status().message().find("--max_decode_bytes"), std::string::npos) << b.status();
  EXPECT_EQ(budget.Reserve(101, "huge").status().code(), absl::StatusCode::kResourceExhausted);
  // Freed room is taken by a waiting decode.
  std::thread release([r = std::move(*a)]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    DecodeBudget::Reservation gone = std::move(r);
  });
  auto c = budget.Reserve(60, "c");
  release.join();
  EXPECT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(budget.in_use(), 60);
}

TEST(DecodeBudgetTest, DecodeImageHoldsItsEstimateWhileItDecodes) {
  cv::Mat img(100, 100, CV_8UC3, cv::Scalar(1, 2, 3));
  std::vector<uchar> buf;
  ASSERT_TRUE(cv::imencode(".png", img, buf));
  const std::string png(buf.begin(), buf.end());
  DecodeBudget small(100 * 100 * 10 - 1, std::chrono::milliseconds(10));
  auto refused = DecodeImage(png, DecodeLimits{40'000'000, &small});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  DecodeBudget enough(100 * 100 * 10, std::chrono::milliseconds(10));
  EXPECT_TRUE(DecodeImage(png, DecodeLimits{40'000'000, &enough}).ok());
  EXPECT_EQ(enough.in_use(), 0);
}

std::string Be32(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 8) & 0xff),
                     static_cast<char>(v & 0xff)};
}

// Found by fuzz_image: a PNG header's sides (up to 2^32 - 1 each) multiplied
// past int64 before the pixel limit was checked.
TEST(FuzzFoundTest, ImageSidesBeyondAnyDecoderAreRefusedBeforeTheirProduct) {
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + Be32(13) + "IHDR" + Be32(0xFFFFFFF7u) + Be32(0xFFFF0006u) +
                          std::string("\x08\x02\x00\x00\x00", 5) + std::string(64, '\0');
  const auto probed = ProbeImage(png);
  ASSERT_EQ(probed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(probed.status().message().find("a side may be at most 16777216"), std::string::npos) << probed.status();
  EXPECT_EQ(DecodeImage(png, DecodeLimits{}).status().code(), absl::StatusCode::kInvalidArgument);
  // The largest side still allowed probes, and the pixel limit refuses it.
  const std::string wide = std::string("\x89PNG\r\n\x1a\n", 8) + Be32(13) + "IHDR" + Be32(1u << 24) + Be32(1u << 24) +
                           std::string(69, '\0');
  ASSERT_TRUE(ProbeImage(wide).ok());
  const auto decoded = DecodeImage(wide, DecodeLimits{});
  EXPECT_NE(decoded.status().message().find("--max_image_pixels"), std::string::npos) << decoded.status();
}

// Found by fuzz_job_spec: NaN passed every range check written as
// `x < lo || x > hi`, and a NaN validation_fraction was stored.
TEST(FuzzFoundTest, JobSpecRealsMustBeFinite) {
  const auto check = [](const std::function<void(JobSpec&)>& set) {
    JobSpec spec;
    spec.backbone = "mobilenet_v2";
    spec.dataset = "d";
    spec.stages.push_back(StageSpec{});
    set(spec);
    return NormalizeJobSpec(spec, 17);
  };
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const auto fraction = check([&](JobSpec& s) { s.validation_fraction = nan; });
  EXPECT_EQ(fraction.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fraction.message(), "spec.validation_fraction: must be a finite number, got nan");
  EXPECT_NE(check([&](JobSpec& s) { s.stages[0].optimizer.momentum = nan; }).message().find("stages[0].optimizer.momentum"),
            std::string::npos);
  EXPECT_NE(check([&](JobSpec& s) { s.stages[0].optimizer.weight_decay = inf; }).message().find("weight_decay"),
            std::string::npos);
  EXPECT_FALSE(check([&](JobSpec& s) { s.head.dropout = nan; }).ok());
  EXPECT_FALSE(check([&](JobSpec& s) { s.augmentation.crop_scale_min = nan; }).ok());
  EXPECT_FALSE(check([&](JobSpec& s) { s.early_stopping.min_delta = inf; }).ok());
  EXPECT_TRUE(check([&](JobSpec& s) { s.validation_fraction = 0.2; }).ok());
}

// Found by fuzz_pth: archives LibTorch's reader refuses in its constructor
// leaked its zip state (~600 bytes each), so graft refuses them first.
TEST(FuzzFoundTest, TorchArchivesLibTorchWouldRefuseAreRefusedBeforeIt) {
  graft::testing::TempDir dir;
  const std::string pickle("\x80\x02}q\x00.", 6);  // an empty dict
  const auto check = [&](const std::vector<graft::testing::ArchiveEntry>& entries) {
    const std::string path = dir.Join("a.pt");
    EXPECT_TRUE(graft::testing::WriteArchive(path, "zip", entries));
    return CheckTorchArchive(path);
  };
  EXPECT_TRUE(check({{"archive/data.pkl", pickle, ""}, {"archive/version", "3\n", ""}}).ok());
  EXPECT_TRUE(check({{"archive/data.pkl", pickle, ""}, {"archive/.data/version", "3\n", ""}}).ok());
  const auto no_version = check({{"archive/data.pkl", pickle, ""}});
  EXPECT_NE(no_version.message().find("no version record"), std::string::npos) << no_version;
  const auto future = check({{"archive/data.pkl", pickle, ""}, {"archive/version", "99\n", ""}});
  EXPECT_NE(future.message().find("format version '99' is not one this LibTorch reads"), std::string::npos) << future;
  const auto words = check({{"archive/data.pkl", pickle, ""}, {"archive/version", "three", ""}});
  EXPECT_NE(words.message().find("is not one this LibTorch reads"), std::string::npos) << words;
  const auto flat = check({{"data.pkl", pickle, ""}, {"version", "3\n", ""}});
  EXPECT_NE(flat.message().find("is not in a folder"), std::string::npos) << flat;
}

// Found by fuzz_model_json and fuzz_manifest: nlohmann casts a JSON float to
// an integer (or a double to a float) unchecked, undefined out of range.
TEST(FuzzFoundTest, JsonNumbersOutOfRangeAreErrorsNotCasts) {
  graft::testing::TempDir dir;
  const std::string manifest = dir.Join("m.json");
  ASSERT_TRUE(WriteFileAtomic(manifest, R"({"name": "m", "torchscript": "m.pt", "feature_dim": 1e103})").ok());
  const auto def = ReadCustomManifest(manifest);
  EXPECT_EQ(def.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(def.status().message().find("out of range"), std::string::npos) << def.status();
  ASSERT_TRUE(WriteFileAtomic(manifest, R"({"name": "m", "torchscript": "m.pt", "feature_dim": 8,
      "preprocessing": {"mean": [1e300, 0, 0], "std": [1, 1, 1]}})").ok());
  EXPECT_EQ(ReadCustomManifest(manifest).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(WriteFileAtomic(manifest, R"({"name": "m", "torchscript": "m.pt", "feature_dim": 8.0})").ok());
  EXPECT_TRUE(ReadCustomManifest(manifest).ok());

  ModelInfo info;
  info.id = "model-0123456789ab";
  info.backbone = "mobilenet_v2";
  info.class_names = {"a", "b"};
  nlohmann::json j = nlohmann::json::parse(ModelInfoToJson(info));
  ASSERT_TRUE(ModelInfoFromJson(j.dump()).ok());
  j["preprocessing"]["height"] = 2.25e85;
  const auto bad = ModelInfoFromJson(j.dump());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("out of range"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace graft::core
