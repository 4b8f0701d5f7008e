#pragma once

// What a job asks of training-time augmentation: a plain type, below the job
// spec that holds it and the transforms that apply it.

namespace graft::core {

struct AugmentationSpec {
  bool horizontal_flip = false;
  bool random_resized_crop = false;
  double crop_scale_min = 0.08;
  double color_jitter = 0;
  // > 0: K augmented views of every training image go through the frozen
  // prefix once and are cached; each epoch draws one view per image.
  int cached_views = 0;
  bool any() const { return horizontal_flip || random_resized_crop || color_jitter > 0; }
};

}  // namespace graft::core
