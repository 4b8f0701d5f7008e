#pragma once

#include <array>

#include "core/zoo/backbone.h"

namespace graft::core {

struct DenseNetConfig {
  int64_t growth_rate = 32;
  std::array<int64_t, 4> block_config{6, 12, 24, 16};
  int64_t num_init_features = 64;
  int64_t bn_size = 4;
  int64_t num_classes = 1000;
};

// torchvision.models.DenseNet. Blocks: "stem" (conv0, norm0, relu, pool0),
// every dense layer ("denseblock1.denselayer1" ...), each transition
// ("transition1" ...) and "norm5" (the final norm and ReLU). The trunk carries
// the concatenated features from layer to layer, as the dense block does.
BackbonePtr MakeDenseNet(const DenseNetConfig& config);

// torchvision's published DenseNet weights predate its current names
// ("denselayer1.norm.1.weight" for "denselayer1.norm1.weight"); this maps
// the old names onto the new, as torchvision does when it loads them.
std::string DenseNetKey(const std::string& key);

}  // namespace graft::core
