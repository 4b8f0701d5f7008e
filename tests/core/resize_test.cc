// graft resizes the way torchvision's Resize does on PIL images (antialiased
// bilinear/bicubic), checked against PIL itself on the shared photos.

#include "core/data/resize.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/data/transforms.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

// PIL writes the photo as a lossless PNG (so both sides start from the same
// pixels) and its resizes of it.
constexpr char kScript[] = R"(
import sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
im = Image.open(src).convert('RGB')
im.save(out + '/original.png')
w, h = im.size
s = 256
size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
im.resize(size, Image.BILINEAR).save(out + '/bilinear.png')
im.resize(size, Image.BICUBIC).save(out + '/bicubic.png')
im.resize((w * 2, h + 7), Image.BILINEAR).save(out + '/up.png')
)";

class ResizeTest : public ::testing::TestWithParam<std::string> {};

cv::Mat ReadRgb(const std::string& path) {
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  cv::Mat rgb;
  if (!bgr.empty()) cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

TEST_P(ResizeTest, MatchesPil) {
  graft::testing::TempDir dir;
  const std::string script = dir.Join("resize.py");
  {
    FILE* f = std::fopen(script.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(kScript, f);
    std::fclose(f);
  }
  const std::string cmd = absl::StrCat(GRAFT_PYTHON, " ", script, " ", graft::testing::ImagesDir(), "/", GetParam(),
                                       " ", dir.path());
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const cv::Mat original = ReadRgb(dir.Join("original.png"));
  ASSERT_FALSE(original.empty());
  for (const auto& [name, filter] : {std::pair{"bilinear", ResizeFilter::kBilinear},
                                     std::pair{"bicubic", ResizeFilter::kBicubic},
                                     std::pair{"up", ResizeFilter::kBilinear}}) {
    const cv::Mat expected = ReadRgb(dir.Join(std::string(name) + ".png"));
    ASSERT_FALSE(expected.empty()) << name;
    if (std::string(name) != "up") {
      EXPECT_EQ(ResizeTarget(original.cols, original.rows, 256), expected.size()) << name;
    }
    const cv::Mat got = ResizeLikePil(original, expected.size(), filter);
    ASSERT_EQ(got.size(), expected.size()) << name;
    cv::Mat diff;
    cv::absdiff(got, expected, diff);
    double max_diff = 0;
    cv::minMaxLoc(diff.reshape(1), nullptr, &max_diff);
    // Same fixed-point arithmetic as PIL: equal up to an occasional rounding.
    EXPECT_LE(max_diff, 1) << name;
    EXPECT_LE(cv::mean(diff.reshape(1))[0], 0.01) << name;
  }
}

TEST_P(ResizeTest, ACropOfTheResizeIsTheSamePixelsComputedAlone) {
  const cv::Mat original = ReadRgb(graft::testing::ImagesDir() + "/" + GetParam());
  ASSERT_FALSE(original.empty());
  const cv::Mat gray = [&] {
    cv::Mat g;
    cv::cvtColor(original, g, cv::COLOR_RGB2GRAY);
    return g;
  }();
  // Shrinking both ways, only one way, enlarging, a crop touching the edges,
  // a one-pixel crop; RGB and one channel; both filters.
  const std::vector<std::pair<cv::Size, cv::Rect>> cases = {
      {ResizeTarget(original.cols, original.rows, 256), {16, 16, 224, 224}},
      {{original.cols, 180}, {5, 7, 100, 150}},
      {{300, original.rows}, {0, 0, 300, 40}},
      {{original.cols * 2, original.rows + 3}, {original.cols - 9, 1, 31, original.rows + 1}},
      {{97, 61}, {96, 60, 1, 1}},
  };
  for (const cv::Mat& image : {original, gray}) {
    for (const ResizeFilter filter : {ResizeFilter::kBilinear, ResizeFilter::kBicubic}) {
      for (const auto& [size, rect] : cases) {
        const cv::Mat whole = ResizeLikePil(image, size, filter);
        const cv::Mat part = ResizeLikePil(image, size, filter, rect);
        ASSERT_EQ(part.size(), rect.size());
        ASSERT_EQ(part.type(), image.type());
        EXPECT_EQ(cv::norm(part, whole(rect), cv::NORM_INF), 0)
            << size << " " << rect << " channels " << image.channels() << " bicubic " << (filter == ResizeFilter::kBicubic);
      }
    }
  }
  // The same image size is a copy of the crop.
  const cv::Rect r(3, 4, 50, 60);
  EXPECT_EQ(cv::norm(ResizeLikePil(original, original.size(), ResizeFilter::kBilinear, r), original(r), cv::NORM_INF), 0);
}

TEST(ResizeKernelsTest, Avx2AndBaselineBuildsGiveTheSamePixels) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2: only the baseline kernels run";
#else
  GTEST_SKIP() << "not x86-64: only the baseline kernels exist";
#endif
  cv::RNG rng(7);
  struct Restore {
    ~Restore() { AllowAvx2Resize(true); }
  } restore;
  int checked = 0;
  for (const int channels : {1, 3, 4}) {
    for (const cv::Size in : {cv::Size(224, 224), cv::Size(500, 375), cv::Size(61, 17)}) {
      cv::Mat image(in, CV_8UC(channels));
      rng.fill(image, cv::RNG::UNIFORM, 0, 256);
      for (const cv::Size out : {cv::Size(256, 256), cv::Size(341, 256), cv::Size(224, 150), cv::Size(97, 3)}) {
        for (const ResizeFilter filter : {ResizeFilter::kBilinear, ResizeFilter::kBicubic}) {
          AllowAvx2Resize(true);
          const cv::Mat avx2 = ResizeLikePil(image, out, filter);
          AllowAvx2Resize(false);
          const cv::Mat baseline = ResizeLikePil(image, out, filter);
          ASSERT_EQ(avx2.size(), out);
          EXPECT_EQ(cv::norm(avx2, baseline, cv::NORM_INF), 0)
              << in << " -> " << out << " channels " << channels << " bicubic " << (filter == ResizeFilter::kBicubic);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 72);
}

INSTANTIATE_TEST_SUITE_P(SharedImages, ResizeTest, ::testing::Values("dog.jpg", "eagle.jpg", "person.jpg"),
                         [](const auto& info) { return info.param.substr(0, info.param.find('.')); });

}  // namespace
}  // namespace graft::core
