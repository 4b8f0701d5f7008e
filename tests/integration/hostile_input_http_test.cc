// The hostile re-probe's findings (issue 33), each as a regression test that
// builds its own hostile input, scaled down through the limit flags: HTTP
// bodies bounded while they are read (chunked, gzip, headers, bodies sent
// where none is taken), slow and idle clients, the connection cap, a JSON
// parse linear in the body, classes per dataset, search heads costed, and
// models per Predict.

#include <google/protobuf/message.h>
#include <zlib.h>

#include "server/open_inference_http.h"
#include "tests/integration/security_fixture.h"

namespace graft::security_testing {
namespace {

int64_t RssMb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) / 1024;
  }
  return -1;
}

// A connection to 127.0.0.1:port whose sends and receives give up after
// `seconds`; -1 when it cannot connect.
int Connect(int port, int seconds = 5) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  for (size_t at = 0; at < data.size();) {
    const ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes (or the receive times out).
std::string ReadAll(int fd) {
  std::string out;
  char buf[16384];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

// One request on a fresh connection; the whole answer.
std::string Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return "";
  (void)SendAll(fd, request);
  std::string answer = ReadAll(fd);
  ::close(fd);
  return answer;
}

std::string Chunk(const std::string& data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return size + data + "\r\n";
}

std::string Gzip(const std::string& data) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

class HostileHttpTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override {
    options.http_port = 0;
    options.max_message_bytes = 1 << 20;
    options.max_http_body_budget_bytes = 4 << 20;
    options.max_http_connections = 8;
    options.http_request_timeout_s = 2;
    options.http_idle_timeout_s = 1;
    options.max_dataset_classes = 3;
    options.max_models_per_predict = 4;
  }
  int Rest() const { return server_->http_port(); }
  static constexpr char kInfer[] = "/v2/models/squeezenet1_1/infer";
};

// Finding 1: a body streamed without end, with no token, to the infer route,
// to a GET-only route, to no route and to /metrics: the server stops reading
// it near the limit and its memory stays where it was.
TEST_F(HostileHttpTest, EndlessChunkedBodiesAreCutOffWhileTheyAreRead) {
  const int64_t before = RssMb();
  const std::string block(64 << 10, 'x');
  struct Target {
    int port;
    std::string path;
  };
  for (const Target& t : {Target{Rest(), kInfer}, Target{Rest(), "/v2/health/live"}, Target{Rest(), "/nowhere"},
                          Target{server_->metrics_port(), "/metrics"}}) {
    const int fd = Connect(t.port);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, "POST " + t.path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
    int64_t sent = 0;
    while (sent < (256LL << 20) && SendAll(fd, Chunk(block))) sent += static_cast<int64_t>(block.size());
    ::close(fd);
    // The limit (1 MiB), what is drained after the answer (1 MiB) and the
    // sockets' buffers: never the 256 MiB offered.
    EXPECT_LT(sent, 48LL << 20) << t.path << " read on past its limit";
  }
  EXPECT_LT(RssMb() - before, 64) << "MiB grown while refusing endless bodies";
  // The server still answers.
  EXPECT_NE(Exchange(Rest(), "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n").find("200 OK"), std::string::npos);
}

// Finding 1: the answer names the limit; a body with a Content-Length above
// it is refused before a byte of it is read; a GET route takes no body.
TEST_F(HostileHttpTest, OversizedBodiesAreAnsweredWithTheLimitsFlag) {
  std::string request = std::string("POST ") + kInfer + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 24; ++i) request += Chunk(std::string(64 << 10, 'x'));  // 1.5 MiB
  request += "0\r\n\r\n";
  std::string answer = Exchange(Rest(), request);
  EXPECT_NE(answer.find("413"), std::string::npos) << answer.substr(0, 200);
  EXPECT_NE(answer.find("larger than 1048576 bytes (--max_message_bytes)"), std::string::npos) << answer;

  answer = Exchange(Rest(), std::string("POST ") + kInfer + " HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n");
  EXPECT_NE(answer.find("413"), std::string::npos) << answer;
  EXPECT_NE(answer.find("(999999999999 bytes) is larger than 1048576 bytes (--max_message_bytes)"), std::string::npos)
      << answer;

  answer = Exchange(Rest(), "PUT /v2/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_NE(answer.find("405"), std::string::npos) << answer;
  answer = Exchange(server_->metrics_port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_NE(answer.find("413"), std::string::npos) << answer;
  EXPECT_NE(answer.find("takes no body"), std::string::npos) << answer;
}

// Finding 1: a gzip bomb (64 KiB that inflate to 64 MiB) is refused at the
// limit as it is decoded; an honest gzip body is decoded and served.
TEST_F(HostileHttpTest, CompressedBodiesAreDecodedWithinTheLimit) {
  const std::string bomb = Gzip(std::string(64 << 20, '\0'));
  ASSERT_LT(bomb.size(), 256u << 10);
  const int64_t before = RssMb();
  std::string answer = Exchange(Rest(), std::string("POST ") + kInfer +
                                            " HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: " +
                                            std::to_string(bomb.size()) + "\r\n\r\n" + bomb);
  EXPECT_NE(answer.find("413"), std::string::npos) << answer.substr(0, 300);
  EXPECT_NE(answer.find("decompresses to more than 1048576 bytes (--max_message_bytes)"), std::string::npos)
      << answer;
  EXPECT_LT(RssMb() - before, 32);

  const std::string honest = Gzip("{\"inputs\": []}");
  answer = Exchange(Rest(), std::string("POST ") + kInfer +
                                " HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nAuthorization: Bearer " +
                                admin_token_ + "\r\nContent-Length: " + std::to_string(honest.size()) + "\r\n\r\n" +
                                honest);
  EXPECT_NE(answer.find("takes one input"), std::string::npos) << answer;  // the JSON was read
  answer = Exchange(Rest(), std::string("POST ") + kInfer +
                                " HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_NE(answer.find("415"), std::string::npos) << answer;
}

// Finding 1: headers without end (cpp-httplib counted only each line).
TEST_F(HostileHttpTest, AHeaderFloodIsRefused) {
  std::string request = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 5000; ++i) request += "X-Filler-" + std::to_string(i) + ": " + std::string(40, 'a') + "\r\n";
  request += "\r\n";
  for (int port : {Rest(), server_->metrics_port()}) {
    const std::string answer = Exchange(port, request);
    EXPECT_NE(answer.find("431"), std::string::npos) << answer.substr(0, 200);
  }
}

// Finding 6 (HTTP part): idle connections fill the cap only until their
// deadline; the one over the cap is told why; slow senders hold no worker.
TEST_F(HostileHttpTest, IdleAndSlowClientsHoldNoWorkerAndTheCapIsNamed) {
  std::vector<int> idle;
  for (int i = 0; i < 8; ++i) idle.push_back(Connect(Rest()));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::string answer = Exchange(Rest(), "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(answer.find("503"), std::string::npos) << answer;
  EXPECT_NE(answer.find("(--max_http_connections)"), std::string::npos) << answer;
  // --http_request_timeout_s (2 s) closes them.
  std::this_thread::sleep_for(std::chrono::milliseconds(2600));
  answer = Exchange(Rest(), "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  for (int fd : idle) ::close(fd);

  // Slow senders, a byte at a time, on both ports: answers elsewhere stay prompt.
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) slow.push_back(Connect(Rest()));
  for (int i = 0; i < 64; ++i) slow.push_back(Connect(server_->metrics_port()));
  for (int fd : slow) (void)SendAll(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    while (!stop) {
      for (int fd : slow) (void)::send(fd, "a", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_NE(Exchange(Rest(), "GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").find("200 OK"),
              std::string::npos);
    EXPECT_NE(testing::HttpGet(server_->metrics_port(), "/metrics").find("graft_build_info"), std::string::npos);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  }
  stop = true;
  drip.join();
  for (int fd : slow) ::close(fd);
}

// Finding 2: bodies of many sibling empty objects, within the depth limit,
// parse in time linear in their size (a callback parse took 12 s for 800 KB).
TEST(JsonBodies, ParseInLinearTimeWithTheDepthLimit) {
  std::string siblings = "{\"inputs\": [";
  for (int i = 0; i < 200'000; ++i) siblings += "{\"a\":{\"b\":{}}},";
  siblings += "{}]}";
  std::string nested = "{\"x\": [";
  for (int i = 0; i < 50'000; ++i) nested += "{\"a\":{\"a\":{\"a\":{\"a\":{}}}}},";
  nested += "{}]}";
  for (const std::string& body : {siblings, nested}) {
    const auto start = std::chrono::steady_clock::now();
    const auto parsed = server::ParseJsonInferRequest(body, body.size());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_FALSE(parsed.ok());
    EXPECT_LT(seconds, 3.0) << body.size() << " bytes";
    const auto estimate = server::JsonMemoryEstimate(body);
    ASSERT_TRUE(estimate.ok());
    EXPECT_GT(*estimate, static_cast<int64_t>(body.size()) * 4) << "every value counted";
  }
  const std::string deep = std::string(17, '[') + std::string(17, ']');
  EXPECT_NE(server::JsonMemoryEstimate(deep).status().message().find("deeper than 16"), std::string::npos);
  EXPECT_TRUE(server::JsonMemoryEstimate(std::string(16, '[') + std::string(16, ']')).ok());
  // Brackets inside strings are text.
  EXPECT_TRUE(server::JsonMemoryEstimate("[\"" + std::string(100, '[') + "\\\"\"]").ok());
}

// Finding 3: classes per dataset are a flag (the crash loop began with
// 36,000 one-image classes).
TEST_F(HostileHttpTest, DatasetsWithMoreClassesThanTheFlagAreRefused) {
  std::vector<testing::ArchiveEntry> entries;
  for (const char* cls : {"a", "b", "c", "d"}) {
    entries.push_back({std::string("train/") + cls + "/0.png", testing::EncodeImage("png", 16, 16, 1, 2, 3), ""});
    entries.push_back({std::string("val/") + cls + "/0.png", testing::EncodeImage("png", 16, 16, 3, 2, 1), ""});
  }
  const std::string path = dir_.Join("four.tar.gz");
  ASSERT_TRUE(testing::WriteArchive(path, "tar.gz", entries));
  auto refused = admin_->UploadDataset(path, "four");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("4 class folders; at most 3 are allowed (--max_dataset_classes)"),
            std::string::npos)
      << refused.status();
  EXPECT_FALSE(admin_->GetDataset("four").ok());
  EXPECT_TRUE(admin_->UploadDataset(TinyDataset(dir_.path()), "two").ok());
}

// Finding 7: folder names become class names clients print: terminal
// control sequences and broken UTF-8 are refused per file, with the reason.
TEST_F(HostileHttpTest, ClassNamesWithControlCharactersOrBrokenUtf8AreRefused) {
  std::vector<testing::ArchiveEntry> entries;
  for (const char* split : {"train", "val"}) {
    for (const char* cls : {"red", "blue", "\x1b[2Jwiped", "bad\xc0\xafutf8"}) {
      entries.push_back({std::string(split) + "/" + cls + "/0.png", testing::EncodeImage("png", 16, 16, 1, 2, 3), ""});
    }
  }
  const std::string path = dir_.Join("escapes.tar.gz");
  ASSERT_TRUE(testing::WriteArchive(path, "tar.gz", entries));
  auto up = admin_->UploadDataset(path, "escapes");
  ASSERT_TRUE(up.ok()) << up.status();
  std::vector<std::string> classes;
  for (const auto& c : up->dataset().classes()) classes.push_back(c.name());
  EXPECT_EQ(classes, (std::vector<std::string>{"blue", "red"}));
  std::string reasons;
  for (const auto& r : up->rejected()) reasons += r.reason() + "\n";
  EXPECT_NE(reasons.find("path contains a control character (0x1b)"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("path is not valid UTF-8"), std::string::npos) << reasons;
}

// Finding 4: a search head is costed like a job's head (a 16 x 65,536 head
// was accepted and queued as a search).
TEST_F(HostileHttpTest, SearchHeadsAreCostedLikeJobHeads) {
  ASSERT_TRUE(admin_->UploadDataset(TinyDataset(dir_.path()), "colours").ok());
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("colours");
  spec.add_stages()->set_epochs(1);
  auto* search = spec.mutable_search();
  search->add_heads();                          // a linear head: fine
  search->add_heads()->add_hidden_units(64);    // fine
  auto* bomb = search->add_heads();
  for (int i = 0; i < 16; ++i) bomb->add_hidden_units(65536);
  auto refused = admin_->CreateJob(spec);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("spec.search.heads[2]"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("--max_job_memory_bytes"), std::string::npos) << refused.status();
  EXPECT_EQ(admin_->ListJobs()->jobs_size(), 0);
}

// Finding 5: one Predict naming a model 40,000 times; refused by count before
// any name is looked up.
TEST_F(HostileHttpTest, APredictNamingTooManyModelsIsRefusedBeforeAnyLookup) {
  client::GraftClient inference(Target(), WithToken(NewToken("app", v1::ROLE_INFERENCE)));
  v1::PredictRequest request;
  for (int i = 0; i < 40'000; ++i) request.add_models("no-such-model");
  request.add_images()->set_encoded(testing::EncodeImage("png", 8, 8, 1, 2, 3));
  const auto start = std::chrono::steady_clock::now();
  auto refused = inference.Predict(request);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("names 40000 models; at most 4 (--max_models_per_predict)"),
            std::string::npos)
      << refused.status();
  // Within the count, the names are looked up as before.
  request.clear_models();
  request.add_models("no-such-model");
  EXPECT_EQ(inference.Predict(request).status().code(), absl::StatusCode::kNotFound);
}

// Every string field of `type` (map keys and values, repeated elements,
// nested messages up to 3 deep), as the dotted path CheckStringFields names
// and a setter that fills it with `value` in a fresh message.
struct StringField {
  std::string path;
  std::function<void(google::protobuf::Message*, const std::string&)> set;
};
void StringFieldsOf(const google::protobuf::Descriptor* type, const std::string& prefix, int depth,
                    std::function<google::protobuf::Message*(google::protobuf::Message*)> reach,
                    std::vector<StringField>* out) {
  using google::protobuf::FieldDescriptor;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    const std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      out->push_back({f->is_repeated() ? path + "[0]" : path,
                      [reach, f](google::protobuf::Message* m, const std::string& v) {
                        google::protobuf::Message* at = reach(m);
                        if (f->is_repeated()) {
                          at->GetReflection()->AddString(at, f, v);
                        } else {
                          at->GetReflection()->SetString(at, f, v);
                        }
                      }});
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth < 3) {
      if (f->is_map()) {
        const FieldDescriptor* key = f->message_type()->FindFieldByName("key");
        if (key->type() == FieldDescriptor::TYPE_STRING) {
          out->push_back({path + " key", [reach, f, key](google::protobuf::Message* m, const std::string& v) {
                            google::protobuf::Message* at = reach(m);
                            auto* entry = at->GetReflection()->AddMessage(at, f);
                            entry->GetReflection()->SetString(entry, key, v);
                          }});
        }
        continue;
      }
      const std::string child = f->is_repeated() ? path + "[0]" : path;
      StringFieldsOf(f->message_type(), child, depth + 1,
                     [reach, f](google::protobuf::Message* m) {
                       google::protobuf::Message* at = reach(m);
                       if (!f->is_repeated()) return at->GetReflection()->MutableMessage(at, f);
                       if (at->GetReflection()->FieldSize(*at, f) == 0) return at->GetReflection()->AddMessage(at, f);
                       return at->GetReflection()->MutableRepeatedMessage(at, f, 0);
                     },
                     out);
    }
  }
}

// Finding 6 (a 4 MB JobSpec.name wrote gigabytes of events): every string
// field of every request message of every method is refused past
// --max_string_field_bytes, naming its path, before the handler uses it.
TEST_F(HostileHttpTest, EveryStringFieldOfEveryRequestIsBounded) {
  auto channel = grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials());
  const std::string long_value(8192, 'n');
  int checked = 0;
  for (const std::string& service_name : server_->service_names()) {
    if (service_name == "grpc.health.v1.Health") continue;
    const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_name);
    ASSERT_NE(service, nullptr);
    for (int i = 0; i < service->method_count(); ++i) {
      const auto* method = service->method(i);
      if (method->client_streaming()) continue;  // UploadDataset: its header, below
      std::vector<StringField> fields;
      StringFieldsOf(method->input_type(), "", 0, [](google::protobuf::Message* m) { return m; }, &fields);
      const auto* prototype = google::protobuf::MessageFactory::generated_factory()->GetPrototype(method->input_type());
      for (const StringField& field : fields) {
        std::unique_ptr<google::protobuf::Message> request(prototype->New());
        field.set(request.get(), long_value);
        const std::string name = service_name + "/" + method->name();
        const grpc::Status status = RawCall(channel, name, admin_token_, request->SerializeAsString());
        EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name << " " << field.path;
        EXPECT_NE(status.error_message().find(field.path + " is 8192 bytes long"), std::string::npos)
            << name << " " << field.path << ": " << status.error_message();
        EXPECT_NE(status.error_message().find("(--max_string_field_bytes)"), std::string::npos);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 60);
  v1::UploadHeader header;
  header.set_name(long_value);
  const grpc::Status upload = RawUpload(header, "");
  EXPECT_EQ(upload.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(upload.error_message().find("header.name is 8192 bytes long"), std::string::npos) << upload.error_message();
  // REST's JSON strings too.
  const std::string body = "{\"id\": \"" + long_value + "\", \"inputs\": []}";
  const std::string answer = Exchange(Rest(), std::string("POST ") + kInfer + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                                  admin_token_ + "\r\nContent-Length: " + std::to_string(body.size()) +
                                                  "\r\n\r\n" + body);
  EXPECT_NE(answer.find("id is 8192 bytes long"), std::string::npos) << answer.substr(0, 300);
}

}  // namespace
}  // namespace graft::security_testing
