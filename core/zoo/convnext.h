#pragma once

#include <array>

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision's ConvNeXt: stage widths and depths.
struct ConvNeXtConfig {
  std::array<int64_t, 4> dims;
  std::array<int64_t, 4> depths;
};

// tiny, small, base, large.
ConvNeXtConfig ConvNeXtSize(const std::string& size);

// Blocks: "features.0" (stem), every CNBlock ("features.1.0" …), each
// downsampling layer ("features.2", "features.4", "features.6").
BackbonePtr MakeConvNeXt(const ConvNeXtConfig& config, int64_t num_classes = 1000);

}  // namespace graft::core
