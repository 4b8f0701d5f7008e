#pragma once

// Static int8 quantization of a backbone's frozen trunk (README, Precision).
// A family that supports it describes each block's computation as a small
// graph of convolutions (batch norm folded, ReLU or ReLU6 fused), additions
// and max pools (BackboneImpl::LowerBlock). The graph runs in float32 to
// calibrate (each value's range over a few hundred images), then with
// per-channel int8 weights and uint8 activations through LibTorch's
// quantized operators: tensors stay quantized from block to block, and
// only the trunk's input and the stops a caller reads are converted.

#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/ivalue.h>
#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/zoo/backbone.h"

namespace graft::core {

enum class Activation;

// Each graph value's range [lo, hi] seen over `images` calibration images,
// in the order the graph makes its values.
struct Int8Calibration {
  std::vector<std::pair<float, float>> ranges;
  int64_t images = 0;
  std::string dataset, split;  // where the images came from
  // Identifies the ranges (two calibrations with one fingerprint quantize alike).
  std::string Fingerprint() const;
};

nlohmann::json Int8CalibrationToJson(const Int8Calibration& c);
absl::StatusOr<Int8Calibration> Int8CalibrationFromJson(const nlohmann::json& j);

// What a family's LowerBlock writes: operations on values (ints), each
// operation making a new value.
class Int8Graph {
 public:
  // Block i's input; the ops added until EndBlock belong to it.
  int BeginBlock();
  void EndBlock(int output);
  // A folded convolution (weight and bias read now) followed by `act`;
  // -1 when the activation has no int8 form (then the block is refused).
  int Conv(int input, const torch::nn::Conv2d& conv, Activation act);
  // The same from a convolution's tensors (a bare one: VGG, SqueezeNet).
  int Conv(int input, const torch::Tensor& weight, const torch::Tensor& bias, int64_t stride, int64_t padding,
           Activation act);
  int Add(int a, int b, bool relu);
  int MaxPool(int input, int64_t kernel, int64_t stride, int64_t padding, bool ceil_mode = false);
  int Relu(int input);
  // Concatenation along channels.
  int Cat(std::vector<int> inputs);

  size_t blocks() const { return blocks_.size(); }
  size_t values() const { return static_cast<size_t>(next_value_); }

  // Float32 forward of blocks [begin, end), widening `ranges` (one per
  // value, [+inf, -inf] to start) with every value it computes.
  torch::Tensor RunFloat(torch::Tensor x, size_t begin, size_t end, std::vector<std::pair<float, float>>* ranges) const;
  // The same, showing `observe` every value computed.
  using ObserveFn = std::function<void(int value, const torch::Tensor& t)>;
  torch::Tensor RunFloat(torch::Tensor x, size_t begin, size_t end, const ObserveFn& observe) const;

  // Quantizes the graph for `calibration` (FAILED_PRECONDITION when its
  // ranges are not this graph's): weights per channel to int8 and packed
  // for the quantized engine; the float weights are released.
  absl::Status Quantize(const Int8Calibration& calibration);
  // Quantized forward of blocks [begin, end): `x` float32 (quantized at the
  // block's input range) or the quantized output of block begin-1; returns
  // the quantized output of block end-1.
  torch::Tensor RunInt8(torch::Tensor x, size_t begin, size_t end) const;
  // Bytes of the packed weights (the quantized weights and float biases).
  int64_t bytes() const { return bytes_; }

 private:
  struct Op {
    enum class Kind { kConv, kAdd, kMaxPool, kRelu, kCat } kind;
    int a = -1, b = -1, out = -1;
    torch::Tensor weight, bias;
    std::vector<int64_t> stride, padding, dilation;
    int64_t groups = 1;
    int act = 0;  // 0 none, 1 relu, 2 relu6
    bool relu = false;
    int64_t kernel = 0, pool_stride = 0, pool_padding = 0;
    bool ceil_mode = false;
    std::vector<int> inputs;  // kCat
    torch::Tensor qweight;  // per-channel int8, kept to pack again
    mutable c10::IValue packed;  // guarded by pack_mu_ once quantized
  };
  struct Block {
    int input = -1, output = -1;
    size_t first_op = 0, end_op = 0;
  };
  int NewValue() { return next_value_++; }
  // Adds `op` making a new value: its id.
  int Append(Op op);
  // One quantized convolution; packs `op`'s weights again once where
  // LibTorch 1.13's oneDNN path cannot reorder the packed weights for a new
  // input shape (pytorch/pytorch#86876, fixed in 2.0).
  torch::Tensor RunConv(const Op& op, const torch::Tensor& x, double scale, int64_t zero_point) const;
  c10::IValue Pack(const Op& op) const;

  mutable absl::Mutex pack_mu_;
  std::vector<Op> ops_;
  std::vector<Block> blocks_;
  int next_value_ = 0;
  // Per value after Quantize: scale and zero point of its uint8 form.
  std::vector<double> scale_;
  std::vector<int64_t> zero_point_;
  int64_t bytes_ = 0;
};

// The graph of `folded`'s whole trunk (FoldBatchNorm done, dense layout);
// FAILED_PRECONDITION naming the backbone when a block has no int8 form.
absl::StatusOr<std::unique_ptr<Int8Graph>> LowerTrunk(BackboneImpl& folded, const std::string& name);

// Calibrates `graph` on `batches` (preprocessed images [N, 3, H, W]): a
// first float32 pass finds each value's extent, a second its histogram, and
// each range is the part of the extent uint8 represents with the least
// squared error (outliers clipped), as PyTorch's HistogramObserver chooses.
absl::StatusOr<Int8Calibration> CalibrateGraph(const Int8Graph& graph, const std::vector<torch::Tensor>& batches);

// OK when LibTorch here has a quantized engine for int8 convolutions on x86
// (onednn, x86 or fbgemm), which it selects; else FAILED_PRECONDITION.
absl::Status SelectInt8Engine();

// A trunk that runs an int8 graph: ForwardTrunk as BackboneImpl's, blocks
// named as the source's. Outputs are quantized tensors (dequantize() them).
class Int8TrunkImpl : public BackboneImpl {
 public:
  Int8TrunkImpl(std::vector<BlockInfo> blocks, std::unique_ptr<Int8Graph> graph);
  torch::Tensor ForwardHead(const torch::Tensor&) override;
  int64_t StateBytes() const override { return graph_->bytes(); }
  int64_t ParameterCount() const override { return 0; }

 protected:
  torch::Tensor ForwardBlock(size_t index, const torch::Tensor& x) override {
    return graph_->RunInt8(x, index, index + 1);
  }

 private:
  std::unique_ptr<Int8Graph> graph_;
};

}  // namespace graft::core
