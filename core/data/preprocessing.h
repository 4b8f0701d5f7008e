#pragma once

#include <array>
#include <string>

namespace graft::core {

// How images are turned into a backbone's input: decode to RGB, resize the
// shorter side to `resize_size`, centre-crop height x width, scale to [0, 1],
// normalise per channel.
struct Preprocessing {
  int height = 224;
  int width = 224;
  int resize_size = 256;
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  std::string interpolation = "bilinear";

  bool operator==(const Preprocessing& o) const {
    return height == o.height && width == o.width && resize_size == o.resize_size && mean == o.mean &&
           std == o.std && interpolation == o.interpolation;
  }
  bool operator!=(const Preprocessing& o) const { return !(*this == o); }
};

}  // namespace graft::core
