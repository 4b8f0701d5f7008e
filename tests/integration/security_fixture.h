#pragma once

// The in-process graftd the security and limits tests attack: tokens on, a
// metrics port, squeezenet1_1 as its only weights; and the raw-client helpers
// they share.

#include <google/protobuf/descriptor.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <iostream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>
#include "client/client.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "server/server.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/http_get.h"
#include "tests/testing/local_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tls_certs.h"

namespace graft::security_testing {

namespace fs = std::filesystem;
using server::GraftServer;
using server::ServerOptions;

// One unary call of any method with `request_bytes` (a serialized request
// message; empty: the empty message): the status graftd answers.
inline grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                            const std::string& token, const std::string& request_bytes = "") {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::CompletionQueue cq;
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  auto call = stub.PrepareUnaryCall(&ctx, "/" + method, request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

inline client::ClientOptions WithToken(const std::string& token) {
  client::ClientOptions o;
  o.token = token;
  return o;
}

// A tiny two-class dataset (red and blue squares) as a tar.gz.
inline std::string TinyDataset(const std::string& dir) {
  std::vector<testing::ArchiveEntry> entries;
  for (const char* split : {"train", "val"}) {
    const int n = std::string(split) == "train" ? 6 : 2;
    for (int i = 0; i < n; ++i) {
      entries.push_back({std::string(split) + "/red/" + std::to_string(i) + ".png",
                         testing::EncodeImage("png", 48, 48, 10 + i, 10, 230), ""});
      entries.push_back({std::string(split) + "/blue/" + std::to_string(i) + ".png",
                         testing::EncodeImage("png", 48, 48, 230, 10 + i, 10), ""});
    }
  }
  const std::string path = dir + "/tiny.tar.gz";
  EXPECT_TRUE(testing::WriteArchive(path, "tar.gz", entries));
  return path;
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options = testing::LocalServerOptions(dir_.Join("data"));
    options.metrics_port = 0;
    options.zoo_dir = dir_.Join("zoo");
    fs::create_directories(options.zoo_dir);
    // squeezenet1_1 only: the smallest real backbone, quick to train on.
    fs::copy_file(testing::WeightsDir() + "/squeezenet1_1-imagenet.safetensors",
                  options.zoo_dir + "/squeezenet1_1-imagenet.safetensors");
    Customize(options);
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    admin_token_ = testing::ReadToken(GraftServer::AdminTokenPath(dir_.Join("data")));
    if (options.auth == "tokens") {
      ASSERT_GE(admin_token_.size(), 22u);
    }
    admin_ = std::make_unique<client::GraftClient>(Target(), WithToken(admin_token_));
  }
  virtual void Customize(ServerOptions&) {}
  // An upload as a raw client sends it: `header`, then `data` in 1 MiB
  // chunks; `after_send` runs before the answer is awaited.
  grpc::Status RawUpload(const v1::UploadHeader& header, const std::string& data,
                         const std::function<void(grpc::ClientContext*)>& after_send = {}) {
    auto stub = v1::Datasets::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + admin_token_);
    v1::UploadDatasetResponse response;
    auto writer = stub->UploadDataset(&ctx, &response);
    v1::UploadDatasetRequest first;
    *first.mutable_header() = header;
    writer->Write(first);
    for (size_t at = 0; at < data.size(); at += 1 << 20) {
      v1::UploadDatasetRequest chunk;
      chunk.mutable_chunk()->set_data(data.substr(at, 1 << 20));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    if (after_send) after_send(&ctx);
    return writer->Finish();
  }
  std::string Target() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  std::string NewToken(const std::string& name, v1::Role role) {
    auto created = admin_->CreateToken(name, role);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->token() : "";
  }

  testing::TempDir dir_;
  std::unique_ptr<GraftServer> server_;
  std::string admin_token_;
  std::unique_ptr<client::GraftClient> admin_;
};

}  // namespace graft::security_testing
