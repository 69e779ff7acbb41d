// RunUnary over real gRPC on loopback: a health service whose Check runs
// through it, inline or on a one-thread pool the test can block.
#include "common/grpc/unary_call.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace crm::common {
namespace {

namespace health = ::grpc::health::v1;

// Check answers `answer`; `runs` counts the work that started.
class CheckService final : public health::Health::CallbackService {
 public:
  explicit CheckService(WorkerPool* pool) : pool_(pool) {}

  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* context,
      const health::HealthCheckRequest* request,
      health::HealthCheckResponse* response) override {
    return RunUnary(context, pool_, "checks", [=]() -> absl::Status {
      runs.fetch_add(1);
      if (request->service() == "missing")
        return absl::NotFoundError("service missing: not here");
      if (request->service() == "broken")
        return absl::InternalError("disk on fire at /var/lib/x");
      response->set_status(health::HealthCheckResponse::SERVING);
      return absl::OkStatus();
    });
  }

  std::atomic<int> runs{0};

 private:
  WorkerPool* pool_;
};

class UnaryCallTest : public ::testing::Test {
 protected:
  void Start(WorkerPool* pool) {
    service_ = std::make_unique<CheckService>(pool);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = health::Health::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                            grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::Status Check(
      const std::string& service,
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    health::HealthCheckRequest request;
    request.set_service(service);
    health::HealthCheckResponse response;
    return stub_->Check(&context, request, &response);
  }

  std::unique_ptr<CheckService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<health::Health::Stub> stub_;
};

TEST_F(UnaryCallTest, InlineWorkAnswersItsStatus) {
  Start(nullptr);
  EXPECT_TRUE(Check("").ok());
  const grpc::Status missing = Check("missing");
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_message(), "service missing: not here");
}

TEST_F(UnaryCallTest, PooledWorkAnswersOnceAndHidesInternalDetails) {
  WorkerPool pool(WorkerPoolOptions{2, 16});
  Start(&pool);
  EXPECT_TRUE(Check("").ok());
  const grpc::Status broken = Check("broken");
  EXPECT_EQ(broken.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(broken.error_message().find("disk on fire"), std::string::npos);
  EXPECT_NE(broken.error_message().find("internal error (ref "),
            std::string::npos);
  EXPECT_EQ(service_->runs.load(), 2);
  server_->Shutdown();
  pool.Shutdown();
}

TEST_F(UnaryCallTest, QueuedWorkWhoseCallerGaveUpIsNotStarted) {
  WorkerPool pool(WorkerPoolOptions{1, 16});
  Start(&pool);
  absl::Notification release;
  const bool blocked =
      pool.TrySubmit([&release] { release.WaitForNotification(); });
  const grpc::Status late = Check("", std::chrono::milliseconds(200));
  // The server's deadline counts from when the call reached it: let it pass
  // there too before the queued work is let go.
  absl::SleepFor(absl::Milliseconds(500));
  release.Notify();
  ASSERT_TRUE(blocked);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  absl::Notification drained;
  ASSERT_TRUE(pool.TrySubmit([&drained] { drained.Notify(); }));
  drained.WaitForNotification();
  EXPECT_EQ(service_->runs.load(), 0);
  EXPECT_TRUE(Check("").ok());  // and the pool still serves
  EXPECT_EQ(service_->runs.load(), 1);
  server_->Shutdown();
  pool.Shutdown();
}

TEST_F(UnaryCallTest, AFullQueueAnswersResourceExhaustedNamingTheService) {
  WorkerPool pool(WorkerPoolOptions{1, 1});
  Start(&pool);
  absl::Notification started, release;
  ASSERT_TRUE(pool.TrySubmit([&started, &release] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();  // the thread is busy, the queue empty
  const bool queued = pool.TrySubmit([] {});  // the queue's one place
  const grpc::Status refused = Check("");
  release.Notify();
  ASSERT_TRUE(queued);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.error_message(),
            "checks is overloaded; retry with backoff");
  EXPECT_EQ(service_->runs.load(), 0);
  server_->Shutdown();
  pool.Shutdown();
}

}  // namespace
}  // namespace crm::common
