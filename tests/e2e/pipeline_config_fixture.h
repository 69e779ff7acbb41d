// Shared pieces of the crm-pipeline-config end-to-end tests: a fixture that
// starts the real binary on a temp data dir, and a client with the stubs of
// the three services and an administrator token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "common/testing/temp_dir.h"
#include "tests/e2e/service_process.h"

namespace crm::testing {

namespace v1 = ::crm::pipelines::v1;

// The secret the tests start the server with.
inline constexpr char kE2eJwtSecret[] = "e2e-test-secret-0123456789";
inline constexpr absl::Duration kStartTimeout = absl::Seconds(30);
// "Exits within a few seconds" of SIGTERM, when no client connection is
// idle at that moment. Tests close their channels before the signal: the
// server's graceful GOAWAY waits for each connection to ack a PING, and an
// idle gRPC C-core client only reads from its backup poller (every 5 s, one
// connection per round), so idle connections delay the exit by ~5 s each, up
// to the shutdown grace (see ShutdownTest.IdleClientConnections*).
inline constexpr absl::Duration kShutdownTimeout = absl::Seconds(5);
// The server's default --shutdown_grace_seconds.
inline constexpr absl::Duration kShutdownGrace = absl::Seconds(10);
inline constexpr absl::Duration kCallTimeout = absl::Seconds(10);

// A token of `user_id` signed with kE2eJwtSecret, valid for an hour.
std::string UserToken(int64_t user_id, bool admin = false);

// gtest-friendly check of a gRPC status: ASSERT_TRUE(IsOk(status)).
::testing::AssertionResult IsOk(const grpc::Status& status);

// The version inside an etag ("\"<version>\""); 0 if it is not one.
int64_t EtagVersion(const std::string& etag);

// Stubs of PipelinesService, DealFieldsService and AccessService on one
// channel; every call carries `authorization: Bearer <token>` and a deadline.
class Client {
 public:
  // Default token: user 1, an administrator by the server's --admin_users
  // default.
  explicit Client(const std::shared_ptr<grpc::Channel>& channel,
                  std::string token = UserToken(1));

  // Fills authorization and deadline.
  void Prepare(grpc::ClientContext* context,
               absl::Duration timeout = kCallTimeout) const;

  // One unary call through the stub the method belongs to:
  //   client.Call(&v1::PipelinesService::Stub::GetPipeline, request, &pipeline)
  template <typename Stub, typename Request, typename Response>
  grpc::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Request&, Response*),
                    const Request& request, Response* response) const {
    grpc::ClientContext context;
    Prepare(&context);
    return (GetStub<Stub>()->*method)(&context, request, response);
  }

  v1::PipelinesService::Stub& pipelines() const { return *pipelines_; }

  // Every pipeline (all pages, include_stages as given).
  grpc::Status ListAllPipelines(bool include_stages,
                                std::vector<v1::Pipeline>* out) const;
  grpc::Status ListAllFields(std::vector<v1::FieldDefinition>* out) const;
  grpc::Status ListAllAssignments(std::vector<v1::RoleAssignment>* out) const;
  grpc::Status ConfigVersion(int64_t* version) const;

 private:
  template <typename Stub>
  Stub* GetStub() const {
    if constexpr (std::is_same_v<Stub, v1::PipelinesService::Stub>) {
      return pipelines_.get();
    } else if constexpr (std::is_same_v<Stub, v1::DealFieldsService::Stub>) {
      return fields_.get();
    } else {
      static_assert(std::is_same_v<Stub, v1::AccessService::Stub>,
                    "unknown stub");
      return access_.get();
    }
  }

  std::string token_;
  std::unique_ptr<v1::PipelinesService::Stub> pipelines_;
  std::unique_ptr<v1::DealFieldsService::Stub> fields_;
  std::unique_ptr<v1::AccessService::Stub> access_;
};

// Fixture: a temp dir with data/ for the store; StartServer runs the binary
// on it with --jwt_secret=kE2eJwtSecret.
class PipelineConfigTest : public ::testing::Test {
 protected:
  const std::string& data_dir() const { return data_dir_; }
  const std::string& work_dir() const { return temp_.path(); }

  // Starts crm-pipeline-config on data_dir() (or `data_dir` when given) and
  // waits until it is SERVING.
  std::unique_ptr<ServiceProcess> StartServer(
      std::vector<std::string> extra_args = {},
      const std::string& data_dir = "");

  // The arguments StartServer passes besides the port flags.
  std::vector<std::string> ServerArgs(const std::string& data_dir) const;

 private:
  TempDir temp_;
  std::string data_dir_ = temp_.path() + "/data";
};

}  // namespace crm::testing
