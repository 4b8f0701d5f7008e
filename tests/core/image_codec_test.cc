#include "core/data/image_codec.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "core/data/resize.h"
#include "core/data/transforms.h"
#include "core/util/files.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

std::string Encode(const std::string& ext, int w, int h) {
  cv::Mat img(h, w, CV_8UC3, cv::Scalar(10, 120, 240));
  std::vector<uchar> buf;
  EXPECT_TRUE(cv::imencode(ext, img, buf));
  return std::string(buf.begin(), buf.end());
}

TEST(ProbeImage, ReadsDimensionsOfEveryFormat) {
  for (const std::string ext : {".jpg", ".png", ".bmp", ".webp", ".tiff"}) {
    const auto header = ProbeImage(Encode(ext, 37, 23));
    ASSERT_TRUE(header.ok()) << ext << ": " << header.status();
    EXPECT_EQ(header->width, 37) << ext;
    EXPECT_EQ(header->height, 23) << ext;
  }
}

TEST(DecodeImage, DecodesEveryFormatToRgb) {
  for (const std::string ext : {".jpg", ".png", ".bmp", ".webp", ".tiff"}) {
    const auto img = DecodeImage(Encode(ext, 16, 8), DecodeLimits{});
    ASSERT_TRUE(img.ok()) << ext << ": " << img.status();
    EXPECT_EQ(img->cols, 16);
    EXPECT_EQ(img->rows, 8);
    const cv::Vec3b px = img->at<cv::Vec3b>(4, 8);
    // Encoded as BGR (10, 120, 240): red channel first after decoding.
    EXPECT_NEAR(px[0], 240, 6) << ext;
    EXPECT_NEAR(px[2], 10, 6) << ext;
  }
}

TEST(DecodeImage, RejectsEmptyBytes) {
  const auto r = DecodeImage("", DecodeLimits{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("empty"), std::string::npos);
}

TEST(DecodeImage, RejectsText) {
  const auto r = DecodeImage("this is a text file, not a photo", DecodeLimits{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not an image"), std::string::npos) << r.status();
}

TEST(DecodeImage, RejectsTruncatedJpeg) {
  const auto dog = ReadFile(graft::testing::ImagesDir() + "/dog.jpg");
  ASSERT_TRUE(dog.ok());
  const auto r = DecodeImage(dog->substr(0, dog->size() / 2), DecodeLimits{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status();
}

TEST(DecodeImage, RejectsTruncatedPng) {
  const std::string png = Encode(".png", 64, 64);
  const auto r = DecodeImage(png.substr(0, png.size() - 30), DecodeLimits{});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DecodeImage, ChecksPixelLimitFromHeaderBeforeDecoding) {
  // A PNG header claiming 1 x 100000 pixels with no image data behind it: the
  // limit must trip on the header alone.
  std::string png = Encode(".png", 1, 1);
  png[16] = 0; png[17] = 0; png[18] = 0; png[19] = 1;                         // width 1
  png[20] = 0; png[21] = 1; png[22] = static_cast<char>(0x86); png[23] = static_cast<char>(0xA0);  // height 100000
  const auto r = DecodeImage(png, DecodeLimits{50'000});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("exceeds the limit of 50000 pixels"), std::string::npos) << r.status();
}

TEST(PreprocessImage, ResizesCropsAndNormalises) {
  cv::Mat rgb(300, 400, CV_8UC3, cv::Scalar(255, 0, 128));
  Preprocessing p;
  const auto t = PreprocessImage(rgb, p);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->sizes(), (std::vector<int64_t>{3, 224, 224}));
  EXPECT_NEAR((*t)[0][100][100].item<float>(), (1.0f - 0.485f) / 0.229f, 1e-3);
  EXPECT_NEAR((*t)[1][100][100].item<float>(), (0.0f - 0.456f) / 0.224f, 1e-3);
}

TEST(PreprocessImage, NormalisesEveryValueAsTorchvisionDoesInFloat32) {
  // Every 8-bit value in every channel, against ToTensor + Normalize computed
  // with torch ops: (v / 255 - mean) / std in float32, bit for bit.
  cv::Mat rgb(16, 16, CV_8UC3);
  for (int i = 0; i < 256; ++i) {
    rgb.at<cv::Vec3b>(i / 16, i % 16) = cv::Vec3b(static_cast<uint8_t>(i), static_cast<uint8_t>(255 - i),
                                                  static_cast<uint8_t>((i * 7) % 256));
  }
  Preprocessing p;
  p.mean = {0.5f, 0.25f, 0.125f};
  p.std = {0.229f, 0.3f, 0.7f};
  const torch::Tensor got = NormalizeToTensor(rgb, p);
  const torch::Tensor u8 = torch::from_blob(rgb.data, {16, 16, 3}, torch::kUInt8).permute({2, 0, 1});
  const torch::Tensor mean = torch::tensor({p.mean[0], p.mean[1], p.mean[2]}).view({3, 1, 1});
  const torch::Tensor std = torch::tensor({p.std[0], p.std[1], p.std[2]}).view({3, 1, 1});
  const torch::Tensor want = (u8.to(torch::kFloat32) / 255).sub(mean).div(std);
  EXPECT_EQ(got.sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_TRUE(torch::equal(got, want)) << (got - want).abs().max().item<float>();
}

TEST(PreprocessImage, IsTheCentreCropNormalised) {
  cv::Mat rgb(300, 451, CV_8UC3);
  cv::randu(rgb, 0, 256);
  Preprocessing p;
  const auto t = PreprocessImage(rgb, p);
  ASSERT_TRUE(t.ok());
  const cv::Mat crop = ResizeCenterCrop(rgb, p);
  EXPECT_EQ(crop.rows, 224);
  EXPECT_EQ(crop.cols, 224);
  EXPECT_TRUE(torch::equal(*t, NormalizeToTensor(crop, p)));
  // The crop is the middle of the resized image (256 x 384, offsets 16 and 80).
  const cv::Mat resized = ResizeLikePil(rgb, cv::Size(384, 256));
  EXPECT_EQ(cv::norm(crop, resized(cv::Rect(80, 16, 224, 224)), cv::NORM_INF), 0);
}

}  // namespace
}  // namespace graft::core
