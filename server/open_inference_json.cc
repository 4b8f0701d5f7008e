// The Open Inference Protocol's JSON bodies: a request's JSON (and binary
// tail) to a ModelInferRequest, a response to JSON, and the linear measure of a
// JSON text (depth and parsed memory). The REST routes are open_inference_http.cc.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/util/json.h"
#include "core/util/status_macros.h"
#include "server/little_endian.h"
#include "server/open_inference_http.h"

namespace graft::server {
namespace {
using nlohmann::json;

constexpr int kMaxJsonDepth = 16;  // the protocol's bodies nest 6 deep with 4-d data
constexpr int kMaxDataDepth = 8;
// What a parsed JSON document holds besides its text, measured on
// nlohmann::json 3.11 with glibc's allocator: a value is a 16-byte json in its
// parent's vector (which may be up to twice its size) or a std::map node
// (~80 bytes with its key); strings are their bytes plus a heap block.
constexpr int64_t kJsonValueBytes = 48;
constexpr int64_t kJsonMemberBytes = 96;

absl::Status ToParameter(const json& v, const std::string& what, inference::InferParameter* out) {
  if (v.is_boolean()) {
    out->set_bool_param(v.get<bool>());
  } else if (v.is_number_integer()) {
    out->set_int64_param(core::JsonInt<int64_t>(v));
  } else if (v.is_number_float()) {
    out->set_double_param(v.get<double>());
  } else if (v.is_string()) {
    out->set_string_param(v.get<std::string>());
  } else {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be a boolean, number or string"));
  }
  return absl::OkStatus();
}

absl::Status ToParameters(const json& v, const std::string& what,
                          google::protobuf::Map<std::string, inference::InferParameter>* out) {
  if (!v.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, " must be an object"));
  for (const auto& [key, value] : v.items()) {
    RETURN_IF_ERROR(ToParameter(value, absl::StrCat(what, ".", key), &(*out)[key]));
  }
  return absl::OkStatus();
}

// Calls `leaf` on each element of a (possibly nested) data array, row-major.
absl::Status Flatten(const json& v, int depth, const std::string& what,
                     const std::function<absl::Status(const json&)>& leaf) {
  if (!v.is_array()) return leaf(v);
  if (depth >= kMaxDataDepth) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": data nests deeper than ", kMaxDataDepth, " arrays"));
  }
  for (const json& e : v) RETURN_IF_ERROR(Flatten(e, depth + 1, what, leaf));
  return absl::OkStatus();
}

const json* Member(const json& object, const char* key) {
  const auto found = object.find(key);
  return found == object.end() ? nullptr : &*found;
}

absl::StatusOr<std::string> StringMember(const json& object, const char* key, const std::string& what, bool required) {
  const json* v = Member(object, key);
  if (v == nullptr) {
    if (required) return absl::InvalidArgumentError(absl::StrCat(what, " has no \"", key, "\""));
    return std::string();
  }
  if (!v->is_string()) return absl::InvalidArgumentError(absl::StrCat(what, ".", key, " must be a string"));
  return v->get<std::string>();
}

}  // namespace

absl::StatusOr<int64_t> JsonMemoryEstimate(std::string_view text) {
  // One pass over the text: nesting depth, values, object members and string
  // bytes, so that neither the depth limit nor the estimate costs more than
  // reading the body once (a callback parse re-walks its stack per event).
  int depth = 0;
  int64_t values = 1;
  int64_t members = 0;
  int64_t string_bytes = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      ++string_bytes;
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '{':
      case '[':
        if (++depth > kMaxJsonDepth) {
          return absl::InvalidArgumentError(
              absl::StrCat("the request's JSON nests deeper than ", kMaxJsonDepth, " levels"));
        }
        ++values;
        break;
      case '}':
      case ']':
        --depth;
        break;
      case ',':
        ++values;
        break;
      case ':':
        ++members;
        break;
      default:
        break;
    }
  }
  return static_cast<int64_t>(text.size()) + values * kJsonValueBytes + members * kJsonMemberBytes + string_bytes;
}

absl::StatusOr<JsonInferRequest> ParseJsonInferRequest(const std::string& body, size_t json_bytes) {
  if (json_bytes > body.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kInferenceHeaderLength, " is ", json_bytes, " but the body has ", body.size(), " bytes"));
  }
  // The depth limit first, in one linear pass; then a parse without a
  // callback (linear too).
  RETURN_IF_ERROR(JsonMemoryEstimate(std::string_view(body).substr(0, json_bytes)).status());
  json j;
  try {
    j = json::parse(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(json_bytes));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the request body is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  JsonInferRequest out;
  inference::ModelInferRequest& r = out.request;
  try {
    ASSIGN_OR_RETURN(const std::string id, StringMember(j, "id", "the request", false));
    r.set_id(id);
    bool binary_all = false;
    if (const json* p = Member(j, "parameters")) {
      RETURN_IF_ERROR(ToParameters(*p, "parameters", r.mutable_parameters()));
      const auto b = r.parameters().find("binary_data_output");
      binary_all = b != r.parameters().end() && b->second.bool_param();
    }
    const json* inputs = Member(j, "inputs");
    if (inputs == nullptr || !inputs->is_array()) {
      return absl::InvalidArgumentError("the request needs \"inputs\", an array of tensors");
    }
    size_t offset = json_bytes;
    bool any_binary = false;
    bool any_json = false;
    for (size_t i = 0; i < inputs->size(); ++i) {
      const json& t = (*inputs)[i];
      const std::string what = absl::StrCat("inputs[", i, "]");
      if (!t.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, " must be an object"));
      auto* in = r.add_inputs();
      ASSIGN_OR_RETURN(const std::string name, StringMember(t, "name", what, true));
      ASSIGN_OR_RETURN(const std::string datatype, StringMember(t, "datatype", what, true));
      in->set_name(name);
      in->set_datatype(datatype);
      const json* shape = Member(t, "shape");
      if (shape == nullptr || !shape->is_array() || shape->size() > 8) {
        return absl::InvalidArgumentError(absl::StrCat(what, " needs \"shape\", an array of at most 8 integers"));
      }
      for (const json& d : *shape) {
        if (!d.is_number_integer()) return absl::InvalidArgumentError(absl::StrCat(what, ".shape holds a non-integer"));
        in->add_shape(core::JsonInt<int64_t>(d));
      }
      if (const json* p = Member(t, "parameters")) {
        RETURN_IF_ERROR(ToParameters(*p, what + ".parameters", in->mutable_parameters()));
      }
      const auto size = in->parameters().find("binary_data_size");
      if (size != in->parameters().end()) {
        const int64_t n = size->second.int64_param();
        if (size->second.parameter_choice_case() != inference::InferParameter::kInt64Param || n < 0 ||
            static_cast<uint64_t>(n) > body.size() - offset) {
          return absl::InvalidArgumentError(absl::StrCat(what,
                                                         ".parameters.binary_data_size must be an integer within "
                                                         "the ",
                                                         body.size() - offset, " bytes of binary data left"));
        }
        r.add_raw_input_contents(body.substr(offset, static_cast<size_t>(n)));
        offset += static_cast<size_t>(n);
        any_binary = true;
        continue;
      }
      any_json = true;
      const json* data = Member(t, "data");
      if (data == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(what, " has neither \"data\" nor parameters.binary_data_size"));
      }
      int64_t k = 0;
      if (datatype == "BYTES") {
        RETURN_IF_ERROR(Flatten(*data, 0, what, [&](const json& e) -> absl::Status {
          std::string decoded;
          if (!e.is_string() || !absl::Base64Unescape(e.get_ref<const std::string&>(), &decoded)) {
            return absl::InvalidArgumentError(
                absl::StrCat(what, ".data[", k, "] is not a base64 string (BYTES elements are base64 in JSON)"));
          }
          ++k;
          in->mutable_contents()->add_bytes_contents(std::move(decoded));
          return absl::OkStatus();
        }));
      } else if (datatype == "FP32") {
        RETURN_IF_ERROR(Flatten(*data, 0, what, [&](const json& e) -> absl::Status {
          const double v = e.is_number() ? e.get<double>() : 0;
          if (!e.is_number() || std::abs(v) > std::numeric_limits<float>::max()) {
            return absl::InvalidArgumentError(absl::StrCat(what, ".data[", k, "] is not a float32 number"));
          }
          ++k;
          in->mutable_contents()->add_fp32_contents(static_cast<float>(v));
          return absl::OkStatus();
        }));
      }
      // Other datatypes are refused by name when the request runs.
    }
    if (any_binary && any_json) {
      return absl::InvalidArgumentError("inputs mix binary data and JSON data; send every input one way");
    }
    if (offset != body.size()) {
      return absl::InvalidArgumentError(absl::StrCat("the body holds ", body.size() - offset,
                                                     " bytes of binary data beyond the inputs' binary_data_size"));
    }
    if (const json* outputs = Member(j, "outputs")) {
      if (!outputs->is_array()) return absl::InvalidArgumentError("\"outputs\" must be an array");
      for (size_t i = 0; i < outputs->size(); ++i) {
        const json& o = (*outputs)[i];
        const std::string what = absl::StrCat("outputs[", i, "]");
        if (!o.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, " must be an object"));
        auto* requested = r.add_outputs();
        ASSIGN_OR_RETURN(const std::string name, StringMember(o, "name", what, true));
        requested->set_name(name);
        bool binary = binary_all;
        if (const json* p = Member(o, "parameters")) {
          RETURN_IF_ERROR(ToParameters(*p, what + ".parameters", requested->mutable_parameters()));
          const auto b = requested->parameters().find("binary_data");
          if (b != requested->parameters().end()) binary = b->second.bool_param();
        }
        if (binary) out.binary_outputs.push_back(name);
      }
    } else if (binary_all) {
      out.binary_outputs.push_back("*");
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the request's JSON: ", e.what()));
  }
  return out;
}

absl::StatusOr<JsonInferResponse> ToJsonInferResponse(const inference::ModelInferResponse& response,
                                                      const std::vector<std::string>& binary_outputs) {
  JsonInferResponse result;
  json out = {{"model_name", response.model_name()}, {"model_version", response.model_version()}};
  if (!response.id().empty()) out["id"] = response.id();
  if (response.parameters_size() > 0) {
    json parameters = json::object();
    for (const auto& [name, p] : response.parameters()) {
      switch (p.parameter_choice_case()) {
        case inference::InferParameter::kBoolParam: parameters[name] = p.bool_param(); break;
        case inference::InferParameter::kInt64Param: parameters[name] = p.int64_param(); break;
        case inference::InferParameter::kStringParam: parameters[name] = p.string_param(); break;
        default: break;
      }
    }
    out["parameters"] = std::move(parameters);
  }
  out["outputs"] = json::array();
  const bool raw = response.raw_output_contents_size() > 0;
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& o = response.outputs(i);
    json t = {{"name", o.name()},
              {"datatype", o.datatype()},
              {"shape", std::vector<int64_t>(o.shape().begin(), o.shape().end())}};
    int64_t elements = 1;
    for (int64_t d : o.shape()) elements *= d;
    const bool binary = std::count(binary_outputs.begin(), binary_outputs.end(), "*") > 0 ||
                        std::count(binary_outputs.begin(), binary_outputs.end(), o.name()) > 0;
    if (raw && i >= response.raw_output_contents_size()) return absl::InternalError("an output has no raw contents");
    if (binary) {
      std::string bytes;
      if (raw) {
        bytes = response.raw_output_contents(i);
      } else if (o.datatype() == "FP32") {
        for (float f : o.contents().fp32_contents()) AppendLittleEndianFloat(f, &bytes);
      } else {
        for (const std::string& e : o.contents().bytes_contents()) AppendRawBytes(e, &bytes);
      }
      t["parameters"] = {{"binary_data_size", bytes.size()}};
      result.binary += bytes;
    } else {
      json data = json::array();
      if (o.datatype() == "FP32") {
        if (raw) {
          const std::string& bytes = response.raw_output_contents(i);
          for (size_t k = 0; k + 4 <= bytes.size(); k += 4) data.push_back(LoadLittleEndianFloat(bytes.data() + k));
        } else {
          for (float f : o.contents().fp32_contents()) data.push_back(f);
        }
      } else if (raw) {
        ASSIGN_OR_RETURN(const std::vector<std::string> elements_of,
                         SplitRawBytes(response.raw_output_contents(i), elements, o.name()));
        for (const std::string& e : elements_of) data.push_back(e);
      } else {
        for (const std::string& e : o.contents().bytes_contents()) data.push_back(e);
      }
      t["data"] = std::move(data);
    }
    out["outputs"].push_back(std::move(t));
  }
  result.json = core::DumpJson(out);
  return result;
}

}  // namespace graft::server
