#pragma once

// Images unlike any photo: gratings of random frequency, orientation and
// colour under noise, PNG-encoded, drawn from a fixed seed (the drift tests'
// "clearly different" inputs).

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace graft::testing {

inline std::vector<std::string> Textures(int n, int side = 224, unsigned seed = 5) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    cv::Mat image(side, side, CV_8UC3);
    const double f = 0.05 + 0.4 * u(gen), angle = u(gen) * CV_PI, phase = u(gen) * 6.28;
    const cv::Vec3d colour(255 * u(gen), 255 * u(gen), 255 * u(gen));
    for (int y = 0; y < image.rows; ++y) {
      for (int x = 0; x < image.cols; ++x) {
        const double v = 0.5 + 0.5 * std::sin(f * (x * std::cos(angle) + y * std::sin(angle)) + phase);
        for (int c = 0; c < 3; ++c) {
          image.at<cv::Vec3b>(y, x)[c] = cv::saturate_cast<uchar>(colour[c] * v + 40 * (u(gen) - 0.5));
        }
      }
    }
    std::vector<uchar> png;
    cv::imencode(".png", image, png);
    out.emplace_back(png.begin(), png.end());
  }
  return out;
}

}  // namespace graft::testing
