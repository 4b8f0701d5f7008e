// JPEGs decode to the pixels PIL decodes (and so torchvision and Keras): the
// shared photos, a greyscale one, a progressive one and one whose EXIF says
// "rotate 90°", which PIL, and so graft, leaves as stored.

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/data/image_codec.h"
#include "core/util/files.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

// Writes the JPEGs to decode and PIL's decoding of each as a lossless PNG.
constexpr char kScript[] = R"(
import sys
from PIL import Image
images, out = sys.argv[1], sys.argv[2]
names = ['dog', 'eagle', 'giraffe', 'horses', 'kite', 'person']
for n in names:
    Image.open(f'{images}/{n}.jpg').convert('RGB').save(f'{out}/{n}.png')
dog = Image.open(f'{images}/dog.jpg').convert('RGB').resize((301, 207))
dog.convert('L').save(f'{out}/grey.jpg', quality=85)
dog.save(f'{out}/progressive.jpg', quality=80, progressive=True)
dog.save(f'{out}/subsampled444.jpg', quality=95, subsampling=0)
exif = Image.Exif()
exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
dog.save(f'{out}/rotated.jpg', quality=90, exif=exif.tobytes())
dog.convert('CMYK').save(f'{out}/cmyk.jpg', quality=95)
for n in ['grey', 'progressive', 'subsampled444', 'rotated', 'cmyk']:
    Image.open(f'{out}/{n}.jpg').convert('RGB').save(f'{out}/{n}.png')
)";

cv::Mat ReadPngRgb(const std::string& path) {
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  cv::Mat rgb;
  if (!bgr.empty()) cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

class JpegTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new graft::testing::TempDir();
    const std::string script = dir_->Join("decode.py");
    FILE* f = std::fopen(script.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(kScript, f);
    std::fclose(f);
    const std::string cmd =
        absl::StrCat(graft::testing::Python(), " ", script, " ", graft::testing::ImagesDir(), " ", dir_->path());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // Max absolute difference between graft's decode of `jpeg` and PIL's.
  static double MaxDiffFromPil(const std::string& jpeg, const std::string& png) {
    const auto bytes = ReadFile(jpeg);
    EXPECT_TRUE(bytes.ok()) << jpeg;
    if (!bytes.ok()) return 1e9;
    const auto got = DecodeImage(*bytes, DecodeLimits{});
    EXPECT_TRUE(got.ok()) << jpeg << ": " << got.status();
    const cv::Mat want = ReadPngRgb(png);
    EXPECT_FALSE(want.empty()) << png;
    if (!got.ok() || want.empty()) return 1e9;
    EXPECT_EQ(got->size(), want.size()) << jpeg;
    EXPECT_EQ(got->type(), CV_8UC3) << jpeg;
    if (got->size() != want.size()) return 1e9;
    return cv::norm(*got, want, cv::NORM_INF);
  }

  static graft::testing::TempDir* dir_;
};

graft::testing::TempDir* JpegTest::dir_ = nullptr;

TEST_F(JpegTest, SharedPhotosDecodeToPilsPixels) {
  for (const std::string name : {"dog", "eagle", "giraffe", "horses", "kite", "person"}) {
    EXPECT_EQ(MaxDiffFromPil(graft::testing::ImagesDir() + "/" + name + ".jpg", dir_->Join(name + ".png")), 0) << name;
  }
}

TEST_F(JpegTest, GreyProgressiveAndUnsubsampledDecodeToPilsPixels) {
  for (const std::string name : {"grey", "progressive", "subsampled444"}) {
    EXPECT_EQ(MaxDiffFromPil(dir_->Join(name + ".jpg"), dir_->Join(name + ".png")), 0) << name;
  }
}

TEST_F(JpegTest, ExifOrientationIsLeftAsStoredAsPilDoes) {
  EXPECT_EQ(MaxDiffFromPil(dir_->Join("rotated.jpg"), dir_->Join("rotated.png")), 0);
  const auto bytes = ReadFile(dir_->Join("rotated.jpg"));
  ASSERT_TRUE(bytes.ok());
  const auto got = DecodeImage(*bytes, DecodeLimits{});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->cols, 301);
  EXPECT_EQ(got->rows, 207);
}

TEST_F(JpegTest, CmykDecodesToRgb) {
  // libjpeg cannot convert CMYK itself; OpenCV's conversion stands in and
  // agrees with PIL's within a level or two.
  EXPECT_LE(MaxDiffFromPil(dir_->Join("cmyk.jpg"), dir_->Join("cmyk.png")), 2);
}

TEST_F(JpegTest, CorruptDataIsRefusedWithLibjpegsReason) {
  auto bytes = ReadFile(graft::testing::ImagesDir() + "/dog.jpg");
  ASSERT_TRUE(bytes.ok());
  // The frame header (SOF0/SOF2) still gives the size the probe reads, but
  // claims 7-bit samples, which libjpeg refuses.
  std::string broken = *bytes;
  size_t sof = std::string::npos;
  for (size_t i = 2; i + 4 < broken.size(); ++i) {
    if (static_cast<uint8_t>(broken[i]) == 0xFF &&
        (static_cast<uint8_t>(broken[i + 1]) == 0xC0 || static_cast<uint8_t>(broken[i + 1]) == 0xC2)) {
      sof = i;
      break;
    }
  }
  ASSERT_NE(sof, std::string::npos);
  broken[sof + 4] = 7;
  const auto r = DecodeImage(broken, DecodeLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("corrupt jpeg: Unsupported JPEG data precision 7"), std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace graft::core
