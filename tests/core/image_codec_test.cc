#include "core/data/image_codec.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

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

}  // namespace
}  // namespace graft::core
