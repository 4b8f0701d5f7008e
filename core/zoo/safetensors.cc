// The safetensors format: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then the raw little-endian data.

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"
#include "core/zoo/state_dict.h"

namespace graft::core {
namespace {

struct DtypeName {
  const char* name;
  torch::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
    {"F64", torch::kFloat64}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
    {"I16", torch::kInt16},   {"I8", torch::kInt8},     {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

absl::StatusOr<torch::ScalarType> DtypeFromName(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported safetensors dtype '", name, "'"));
}

absl::StatusOr<std::string> NameFromDtype(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) return std::string(d.name);
  }
  return absl::InvalidArgumentError(absl::StrCat("cannot store dtype ", c10::toString(type)));
}

absl::StatusOr<StateDict> ParseUnguarded(const std::string& bytes, const std::string& what) {
  if (bytes.size() < 8) return absl::InvalidArgumentError(absl::StrCat(what, ": too short for safetensors"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > bytes.size() - 8) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": safetensors header length ", header_len,
                                                   " exceeds the file size ", bytes.size()));
  }
  const nlohmann::json header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_len,
                                                      nullptr, /*allow_exceptions=*/false);
  if (!header.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": safetensors header is not a JSON object"));
  const size_t data_start = 8 + header_len;
  const size_t data_len = bytes.size() - data_start;

  // Keep the file's order of data offsets, which is how writers lay tensors out.
  std::vector<std::pair<size_t, std::string>> order;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& e = it.value();
    if (!e.is_object() || !e.contains("data_offsets") || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2 || !e["data_offsets"][0].is_number_unsigned() ||
        !e["data_offsets"][1].is_number_unsigned()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": tensor '", it.key(), "' has no valid data_offsets"));
    }
    order.emplace_back(e["data_offsets"][0].get<size_t>(), it.key());
  }
  std::sort(order.begin(), order.end());

  StateDict out;
  for (const auto& [offset, name] : order) {
    const auto& e = header[name];
    if (!e.contains("dtype") || !e["dtype"].is_string() || !e.contains("shape") || !e["shape"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": tensor '", name, "' lacks dtype or shape"));
    }
    ASSIGN_OR_RETURN(const torch::ScalarType type, DtypeFromName(e["dtype"].get<std::string>()));
    // Dimensions are client-chosen: their product (zeros aside) must fit in
    // int64, as LibTorch computes sizes, before anything multiplies it.
    std::vector<int64_t> shape;
    uint64_t product = 1;
    bool empty = false;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned() || shape.size() >= 64) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": tensor '", name, "' has a bad shape"));
      }
      const uint64_t dim = d.get<uint64_t>();
      constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      if (dim == 0) {
        empty = true;
      } else if (product > kMax / dim) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": tensor '", name, "' shape has too many elements"));
      } else {
        product *= dim;
      }
      shape.push_back(static_cast<int64_t>(dim));
    }
    const uint64_t numel = empty ? 0 : product;
    if (numel > data_len) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": tensor '", name, "' shape has more elements than the file holds"));
    }
    const uint64_t begin = e["data_offsets"][0].get<uint64_t>();
    const uint64_t end = e["data_offsets"][1].get<uint64_t>();
    const uint64_t expected = numel * c10::elementSize(type);
    if (end < begin || end > data_len || end - begin != expected) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": tensor '", name, "' data [", begin, ", ", end,
                                                     ") does not match its shape or the file size"));
    }
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(type));
    if (expected > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, expected);
    out.emplace_back(name, std::move(t));
  }
  return out;
}

}  // namespace

absl::StatusOr<StateDict> ParseSafetensors(const std::string& bytes, const std::string& what) {
  return GuardExceptions(absl::StatusCode::kInvalidArgument, what,
                         [&]() { return ParseUnguarded(bytes, what); });
}

absl::StatusOr<StateDict> ReadSafetensors(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  return ParseSafetensors(bytes, path);
}

absl::StatusOr<std::string> SerializeSafetensors(const StateDict& tensors,
                                                 const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  size_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    ASSIGN_OR_RETURN(const std::string dtype, NameFromDtype(t.scalar_type()));
    const size_t n = t.numel() * t.element_size();
    header[name] = {{"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    contiguous.push_back(std::move(t));
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // align the data to 8 bytes
  std::string out(8, '\0');
  uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  out += json;
  out.reserve(out.size() + offset);
  for (const torch::Tensor& t : contiguous) {
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return out;
}

}  // namespace graft::core
