#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace graft::core {

class Int8Graph;

// One freezable unit of a backbone's trunk. Blocks run in order; block i's
// parameters are those whose names start with one of `param_prefixes`.
struct BlockInfo {
  std::string name;
  std::vector<std::string> param_prefixes;
};

// A pretrained image backbone as a native LibTorch module with torchvision's
// parameter names. The trunk is an ordered list of blocks (input side first)
// that maps an image batch to a feature map; the ImageNet head maps the
// feature map to logits; Pool maps it to the embedding vector.
class BackboneImpl : public torch::nn::Module {
 public:
  const std::vector<BlockInfo>& blocks() const { return blocks_; }

  // Runs blocks [begin, end) on x.
  torch::Tensor ForwardTrunk(torch::Tensor x, size_t begin, size_t end);
  torch::Tensor ForwardTrunk(torch::Tensor x) { return ForwardTrunk(std::move(x), 0, blocks_.size()); }

  // The pretrained classifier: feature map -> logits.
  virtual torch::Tensor ForwardHead(const torch::Tensor& feature_map) = 0;

  // Global average pooling of a feature map [N, C, H, W] (or of tokens
  // [N, L, C]) to [N, C].
  static torch::Tensor Pool(const torch::Tensor& feature_map);

  // Full network: image batch [N, 3, H, W] -> logits [N, classes].
  torch::Tensor forward(const torch::Tensor& x) { return ForwardHead(ForwardTrunk(x)); }

  // Folds every eval-mode batch norm into the convolution before it, for the
  // inference path only: the module computes the same function in eval mode
  // with fewer ops, but its state dict is no longer torchvision's and it must
  // not be trained.
  void FoldBatchNorm();

  // CPU inference only, after FoldBatchNorm: reorders every convolution's
  // weight into oneDNN's blocked layout once, and from then on ForwardTrunk
  // runs in that layout (input converted on entry, output back to a dense
  // tensor on exit), as torch.utils.mkldnn does for scripted models. Only
  // for families whose every op has a oneDNN kernel (ResNet: conv, relu,
  // add, max pool).
  void UseOneDnnLayout();
  bool uses_onednn_layout() const { return onednn_; }

  // Freezes all but the last `n` blocks: exactly their parameters require
  // gradients and exactly their modules are in train mode (the rest stay in
  // eval mode: frozen batch norms keep their statistics). Without
  // `train_batch_norm` the batch norms of those blocks stay frozen too: eval
  // mode (the running statistics normalize and are never updated) and no
  // gradient for their scale and shift, as Keras fine-tunes.
  void SetTrainableBlocks(int n, bool train_batch_norm = false);

  // After FoldBatchNorm: writes block `index`'s computation from value
  // `input` into `graph` (core/zoo/int8.h) and sets `*output`; false where
  // the block has no int8 form.
  virtual bool LowerBlock(size_t index, Int8Graph& graph, int input, int* output) { return false; }

  virtual int64_t ParameterCount() const;
  // Bytes of parameters and buffers.
  virtual int64_t StateBytes() const;

 protected:
  virtual torch::Tensor ForwardBlock(size_t index, const torch::Tensor& x) = 0;
  // Folds batch norms held directly by the backbone (not in a block module).
  virtual void FoldOwn() {}

  std::vector<BlockInfo> blocks_;
  bool onednn_ = false;
};

using BackbonePtr = std::shared_ptr<BackboneImpl>;

}  // namespace graft::core
