#include "server/open_inference_http.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/util/json.h"
#include "core/util/status_macros.h"
#include "server/little_endian.h"
#include "server/status_util.h"

namespace graft::server {
namespace {

using nlohmann::json;

constexpr int kMaxJsonDepth = 16;  // the protocol's bodies nest 6 deep with 4-d data
constexpr int kMaxDataDepth = 8;
// A parsed JSON document holds up to this many times its text in memory
// (a number "0," becomes a 16-byte value): reserved in the decode budget
// while the request is parsed and converted.
constexpr int64_t kJsonMemoryFactor = 16;

const char kHeaderLength[] = "Inference-Header-Content-Length";
constexpr int kFetchWaitSeconds = 30;

struct TooDeep {};

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

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

absl::StatusOr<JsonInferRequest> ParseJsonInferRequest(const std::string& body, size_t json_bytes) {
  if (json_bytes > body.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kHeaderLength, " is ", json_bytes, " but the body has ", body.size(), " bytes"));
  }
  json j;
  try {
    j = json::parse(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(json_bytes),
                    [](int depth, json::parse_event_t, json&) {
                      if (depth > kMaxJsonDepth) throw TooDeep{};
                      return true;
                    });
  } catch (const TooDeep&) {
    return absl::InvalidArgumentError(absl::StrCat("the request's JSON nests deeper than ", kMaxJsonDepth, " levels"));
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
  result.json = Dump(out);
  return result;
}

std::vector<std::string> OpenInferenceHttp::MetricLabels() {
  return {"REST /v2",
          "REST /v2/health/live",
          "REST /v2/health/ready",
          "REST /v2/models/{m}",
          "REST /v2/models/{m}/ready",
          "REST /v2/models/{m}/infer"};
}

absl::StatusOr<std::unique_ptr<OpenInferenceHttp>> OpenInferenceHttp::Start(const HttpOptions& options,
                                                                            const OpenInference& oip, const Auth& auth,
                                                                            Metrics& metrics,
                                                                            core::DecodeBudget* budget) {
  std::unique_ptr<OpenInferenceHttp> s(new OpenInferenceHttp());
  if (!options.tls_cert.empty()) {
    auto tls =
        std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str(),
                                             options.tls_client_ca.empty() ? nullptr : options.tls_client_ca.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot serve HTTPS with --tls_cert ", options.tls_cert, " and --tls_key ", options.tls_key));
    }
    s->http_ = std::move(tls);
  } else {
    s->http_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& http = *s->http_;
  const int workers = options.workers;
  http.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  http.set_read_timeout(options.timeout_seconds, 0);
  http.set_write_timeout(options.timeout_seconds, 0);
  http.set_keep_alive_timeout(5);
  http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));

  // Runs `handle`, answers its error as {"error": message}, and counts it.
  using Handler = std::function<absl::Status(const httplib::Request&, httplib::Response&)>;
  const auto route = [&metrics](const std::string& label, Handler handle) {
    return [&metrics, label, handle = std::move(handle)](const httplib::Request& request, httplib::Response& response) {
      const auto start = std::chrono::steady_clock::now();
      absl::Status status;
      try {
        status = handle(request, response);
      } catch (const std::exception& e) {
        status = absl::InternalError(absl::StrCat("internal error: ", e.what()));
      }
      if (!status.ok()) {
        response.status = HttpStatusOf(status.code());
        if (status.code() == absl::StatusCode::kUnauthenticated) response.set_header("WWW-Authenticate", "Bearer");
        response.set_content(Dump(json{{"error", std::string(status.message())}}), "application/json");
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      metrics.ObserveRpc(label, absl::StatusCodeToString(status.code()), seconds, std::string(status.message()));
    };
  };
  const auto who = [&auth](const httplib::Request& request, const char* method) {
    if (!request.has_header("Authorization")) return auth.AuthorizeHeader(nullptr, core::Role::kInference, method);
    const std::string value = request.get_header_value("Authorization");
    return auth.AuthorizeHeader(&value, core::Role::kInference, method);
  };
  const auto version_of = [](const httplib::Request& request) {
    return request.matches.size() > 2 ? std::string(request.matches[2]) : std::string();
  };

  http.Get("/v2/health/live", route("REST /v2/health/live", [](const httplib::Request&, httplib::Response& response) {
             response.status = 200;
             return absl::OkStatus();
           }));
  http.Get("/v2/health/ready",
           route("REST /v2/health/ready", [&oip](const httplib::Request&, httplib::Response& response) {
             response.status = oip.Ready() ? 200 : 400;
             return absl::OkStatus();
           }));
  http.Get("/v2", route("REST /v2", [&oip, who](const httplib::Request& request, httplib::Response& response) {
             RETURN_IF_ERROR(who(request, "ServerMetadata").status());
             const auto m = oip.ServerMetadata();
             response.set_content(
                 Dump(json{{"name", m.name()},
                           {"version", m.version()},
                           {"extensions", std::vector<std::string>(m.extensions().begin(), m.extensions().end())}}),
                 "application/json");
             return absl::OkStatus();
           }));
  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
  http.Get(model, route("REST /v2/models/{m}", [&oip, who, version_of](const httplib::Request& request,
                                                                       httplib::Response& response) {
             ASSIGN_OR_RETURN(const core::Principal p, who(request, "ModelMetadata"));
             ASSIGN_OR_RETURN(const auto m, oip.ModelMetadata(p, request.matches[1], version_of(request)));
             const auto tensors = [](const auto& list) {
               json out = json::array();
               for (const auto& t : list) {
                 out.push_back({{"name", t.name()},
                                {"datatype", t.datatype()},
                                {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}});
               }
               return out;
             };
             response.set_content(
                 Dump(json{{"name", m.name()},
                           {"versions", std::vector<std::string>(m.versions().begin(), m.versions().end())},
                           {"platform", m.platform()},
                           {"inputs", tensors(m.inputs())},
                           {"outputs", tensors(m.outputs())}}),
                 "application/json");
             return absl::OkStatus();
           }));
  http.Get(model + "/ready", route("REST /v2/models/{m}/ready", [&oip, who, version_of](const httplib::Request& request,
                                                                                        httplib::Response& response) {
             ASSIGN_OR_RETURN(const core::Principal p, who(request, "ModelReady"));
             ASSIGN_OR_RETURN(const bool ready, oip.ModelReady(p, request.matches[1], version_of(request)));
             response.status = ready ? 200 : 400;
             return absl::OkStatus();
           }));
  http.Post(model + "/infer",
            route("REST /v2/models/{m}/infer", [&oip, who, version_of, budget](const httplib::Request& request,
                                                                               httplib::Response& response) {
              ASSIGN_OR_RETURN(const core::Principal p, who(request, "ModelInfer"));
              size_t json_bytes = request.body.size();
              if (request.has_header(kHeaderLength)) {
                if (!absl::SimpleAtoi(request.get_header_value(kHeaderLength), &json_bytes)) {
                  return absl::InvalidArgumentError(absl::StrCat(kHeaderLength, " must be a byte count"));
                }
              }
              // The parsed JSON document's memory, held while it is converted.
              std::optional<core::DecodeBudget::Reservation> held;
              if (budget != nullptr && json_bytes > 0) {
                const int64_t bytes =
                    static_cast<int64_t>(std::min(json_bytes, request.body.size())) * kJsonMemoryFactor;
                ASSIGN_OR_RETURN(auto reservation,
                                 budget->Reserve(bytes, absl::StrCat("a JSON request of ", json_bytes,
                                                                     " bytes (send large tensors as binary data)")));
                held.emplace(std::move(reservation));
              }
              ASSIGN_OR_RETURN(JsonInferRequest parsed, ParseJsonInferRequest(request.body, json_bytes));
              held.reset();
              parsed.request.set_model_name(request.matches[1]);
              parsed.request.set_model_version(version_of(request));
              inference::ModelInferResponse answer;
              // HTTP carries no deadline: a first-use weights fetch is waited
              // for as long as an answer may take to write, or until shutdown.
              const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kFetchWaitSeconds);
              const core::CancelledFn cancelled = [&oip, deadline] {
                return !oip.Ready() || std::chrono::steady_clock::now() > deadline;
              };
              RETURN_IF_ERROR(oip.ModelInfer(p, parsed.request, !parsed.binary_outputs.empty(), cancelled, &answer));
              ASSIGN_OR_RETURN(const JsonInferResponse out, ToJsonInferResponse(answer, parsed.binary_outputs));
              if (out.binary.empty()) {
                response.set_content(out.json, "application/json");
              } else {
                response.set_header(kHeaderLength, std::to_string(out.json.size()));
                response.set_content(out.json + out.binary, "application/octet-stream");
              }
              return absl::OkStatus();
            }));
  http.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    if (response.status == 404) {
      response.set_content(Dump(json{{"error", absl::StrCat("no endpoint ", request.method, " ", request.path,
                                                            "; graftd serves the Open Inference Protocol under /v2")}}),
                           "application/json");
    } else if (response.status == 413) {
      // cpp-httplib caps form-encoded bodies (the default type of curl -d
      // and urllib) at 8 KiB whatever the payload limit.
      const bool form = request.get_header_value("Content-Type") == "application/x-www-form-urlencoded";
      response.set_content(
          Dump(json{{"error", form ? "form-encoded bodies are limited to 8 KiB: send Content-Type: application/json "
                                     "(or application/octet-stream with binary data)"
                                   : "the request body is larger than --max_message_bytes"}}),
          "application/json");
    }
  });
  s->port_ = options.port == 0 ? http.bind_to_any_port(options.host)
                               : (http.bind_to_port(options.host, options.port) ? options.port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", options.host, ":", options.port, " (--http_port; -1 turns it off)"));
  }
  s->thread_ = std::thread([server = s.get()] { server->http_->listen_after_bind(); });
  return s;
}

void OpenInferenceHttp::Stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

OpenInferenceHttp::~OpenInferenceHttp() { Stop(); }

}  // namespace graft::server
