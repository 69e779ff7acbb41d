// crm-test-event-sink: a real crm.deals.v1.DealEventSink subscriber for the
// end-to-end tests, as strict as a production consumer should be, so that
// the tests can check what the deals relay really delivered.
//
//   crm-test-event-sink --port=0 --port_file=F --out_file=OUT [--dup_file=D]
//                       [--reject_file=R] [--jwt_secret=S] [--first_sequence=1]
//
// Every applied event is one line of OUT,
//   event_id \t sequence \t type \t deal_id \t to_stage_id
// (type without its DEAL_EVENT_TYPE_ prefix), fsynced before DeliverEvents
// answers: what the relay's cursor moves past is on disk, as it must be for a
// subscriber that acknowledges "durably applied". On start OUT is read back,
// so a restarted sink still knows every event id and the last sequence of
// each shard, and a redelivered event is recorded as "dup \t event_id" in D
// instead of being applied twice.
//
// A request is checked as a whole before anything is applied:
//   - INVALID_ARGUMENT: events of several shards, an event_id that is not
//     "<shard>-<sequence>", or sequences that are not consecutive;
//   - FAILED_PRECONDITION: a new event whose sequence is not the one after
//     the shard's last applied sequence (a gap or a reordering). The first
//     event of a shard must have --first_sequence (0 accepts any start).
// Refused requests are recorded in R ("code \t first event id \t message"),
// so a test can tell "nothing arrived" from "the relay broke the order".
//
// Ping answers OK. With --jwt_secret, DeliverEvents needs a valid token of a
// service identity, as the deals relay sends.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"

#include "crm/deals/v1/deal_events.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/grpc/server_runner.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"

ABSL_FLAG(int, port, 0, "gRPC port on 127.0.0.1, 0 = any free port");
ABSL_FLAG(int, http_port, -1,
          "HTTP port for /metrics and /healthz, 0 = any, -1 = off");
ABSL_FLAG(std::string, port_file, "",
          "Write \"<grpc port>\\n<http port>\\n\" here once serving");
ABSL_FLAG(std::string, out_file, "", "Applied events, one line each; required");
ABSL_FLAG(std::string, dup_file, "",
          "Redelivered events, \"dup\\t<event_id>\" each; optional");
ABSL_FLAG(std::string, reject_file, "", "Refused requests; optional");
ABSL_FLAG(std::string, jwt_secret, "",
          "When set, DeliverEvents needs a service token signed with it");
ABSL_FLAG(int64_t, first_sequence, 1,
          "Sequence the first event of a shard must have; 0 = any");

namespace {

namespace v1 = ::crm::deals::v1;

constexpr char kTypePrefix[] = "DEAL_EVENT_TYPE_";

// Appends to a file opened once; each Append is one write(2), optionally
// followed by fsync.
class AppendFile {
 public:
  AppendFile() = default;
  ~AppendFile() {
    if (fd_ >= 0) close(fd_);
  }
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  absl::Status Open(const std::string& path) {
    fd_ = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return absl::UnavailableError(
          absl::StrCat("open ", path, ": ", strerror(errno)));
    }
    path_ = path;
    return absl::OkStatus();
  }
  bool is_open() const { return fd_ >= 0; }

  absl::Status Append(const std::string& data, bool sync) {
    size_t written = 0;
    while (written < data.size()) {
      const ssize_t n =
          write(fd_, data.data() + written, data.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::DataLossError(
            absl::StrCat("write ", path_, ": ", strerror(errno)));
      }
      written += static_cast<size_t>(n);
    }
    if (sync && fsync(fd_) != 0) {
      return absl::DataLossError(
          absl::StrCat("fsync ", path_, ": ", strerror(errno)));
    }
    return absl::OkStatus();
  }

 private:
  int fd_ = -1;
  std::string path_;
};

std::string ReadWholeFile(const std::string& path) {
  std::string content;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return content;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return content;
}

class EventSink final : public v1::DealEventSink::Service {
 public:
  EventSink(std::string jwt_secret, int64_t first_sequence)
      : first_sequence_(first_sequence) {
    if (!jwt_secret.empty()) {
      authenticator_ = std::make_unique<crm::common::Authenticator>(
          std::move(jwt_secret), /*insecure_dev_auth=*/false);
    }
  }

  // Reads back what an earlier run applied, then opens the files for
  // appending.
  absl::Status Open(const std::string& out_file, const std::string& dup_file,
                    const std::string& reject_file) {
    absl::MutexLock lock(&mu_);
    std::string content = ReadWholeFile(out_file);
    // A line without its newline was cut by a crash in the middle of a write
    // that was never acknowledged: drop it, or the next line would be glued
    // to it.
    const size_t complete = content.rfind('\n') + 1;  // 0 when none
    if (complete < content.size()) {
      CRM_LOG(kWarning, "dropping a partial last line",
              {{"file", out_file}, {"line", content.substr(complete)}});
      if (truncate(out_file.c_str(), static_cast<off_t>(complete)) != 0) {
        return absl::DataLossError(
            absl::StrCat("truncate ", out_file, ": ", strerror(errno)));
      }
      content.resize(complete);
    }
    int64_t lines = 0;
    for (absl::string_view line :
         absl::StrSplit(content, '\n', absl::SkipEmpty())) {
      const std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
      const std::pair<absl::string_view, absl::string_view> id =
          absl::StrSplit(fields[0], absl::MaxSplits('-', 1));
      int32_t shard = 0;
      int64_t sequence = 0;
      if (fields.size() != 5 || !absl::SimpleAtoi(id.first, &shard) ||
          !absl::SimpleAtoi(fields[1], &sequence)) {
        return absl::DataLossError(absl::StrCat(
            "bad line in ", out_file, ": \"", std::string(line), "\""));
      }
      seen_.insert(std::string(fields[0]));
      int64_t& last = last_applied_[shard];
      last = std::max(last, sequence);
      ++lines;
    }
    CRM_LOG(kInfo, "reloaded applied events",
            {{"file", out_file}, {"events", absl::StrCat(lines)}});
    if (absl::Status opened = out_.Open(out_file); !opened.ok()) return opened;
    if (!dup_file.empty()) {
      if (absl::Status opened = dups_.Open(dup_file); !opened.ok())
        return opened;
    }
    if (!reject_file.empty()) {
      if (absl::Status opened = rejects_.Open(reject_file); !opened.ok())
        return opened;
    }
    return absl::OkStatus();
  }

  grpc::Status DeliverEvents(grpc::ServerContext* context,
                             const v1::DeliverEventsRequest* request,
                             v1::DeliverEventsResponse* response) override {
    if (authenticator_ != nullptr) {
      absl::StatusOr<crm::common::Principal> caller =
          authenticator_->Authenticate(*context);
      if (!caller.ok()) {
        return Refuse(*request, grpc::StatusCode::UNAUTHENTICATED,
                      std::string(caller.status().message()));
      }
      if (!caller->IsService()) {
        return Refuse(*request, grpc::StatusCode::PERMISSION_DENIED,
                      "only a service identity may deliver events");
      }
    }
    absl::MutexLock lock(&mu_);
    if (request->events().empty()) {
      response->set_applied_sequence(0);
      return grpc::Status::OK;
    }
    const int32_t shard = request->events(0).shard();
    for (int i = 0; i < request->events_size(); ++i) {
      const v1::DealEvent& event = request->events(i);
      if (event.shard() != shard) {
        return Refuse(*request, grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("events of shards ", shard, " and ",
                                   event.shard(), " in one request"));
      }
      if (event.event_id() != absl::StrCat(shard, "-", event.sequence())) {
        return Refuse(*request, grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("event_id \"", event.event_id(),
                                   "\" is not <shard>-<sequence> of shard ",
                                   shard, " sequence ", event.sequence()));
      }
      if (i > 0 && event.sequence() != request->events(i - 1).sequence() + 1) {
        return Refuse(
            *request, grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("sequence ", event.sequence(), " follows ",
                         request->events(i - 1).sequence(), " in one request"));
      }
    }

    // Check the whole request before applying any of it.
    const auto known = last_applied_.find(shard);
    int64_t expected = 0;  // 0: the shard's first event, any sequence
    if (known != last_applied_.end()) {
      expected = known->second + 1;
    } else if (first_sequence_ > 0) {
      expected = first_sequence_;
    }
    std::string applied_lines;
    std::string dup_lines;
    std::vector<const v1::DealEvent*> applied;
    for (const v1::DealEvent& event : request->events()) {
      if (seen_.contains(event.event_id())) {
        absl::StrAppend(&dup_lines, "dup\t", event.event_id(), "\n");
        continue;
      }
      if (expected != 0 && event.sequence() != expected) {
        return Refuse(*request, grpc::StatusCode::FAILED_PRECONDITION,
                      absl::StrCat("shard ", shard, ": got sequence ",
                                   event.sequence(), " (", event.event_id(),
                                   ") but the next to apply is ", expected));
      }
      expected = event.sequence() + 1;
      absl::string_view type = v1::DealEventType_Name(event.type());
      absl::ConsumePrefix(&type, kTypePrefix);
      absl::StrAppend(&applied_lines, event.event_id(), "\t", event.sequence(),
                      "\t", std::string(type), "\t", event.deal_id(), "\t",
                      event.to_stage_id(), "\n");
      applied.push_back(&event);
    }

    // Durable before acknowledged. A failed write leaves the file in an
    // unknown state, and a test sink has nothing better to do than stop.
    if (!applied_lines.empty()) Must(out_.Append(applied_lines, true));
    if (!dup_lines.empty() && dups_.is_open())
      Must(dups_.Append(dup_lines, true));
    for (const v1::DealEvent* event : applied) {
      seen_.insert(event->event_id());
      last_applied_[shard] = event->sequence();
    }
    // Every event was applied now or earlier (a duplicate is a seen id), so
    // the shard has a last applied sequence.
    response->set_applied_sequence(last_applied_[shard]);
    return grpc::Status::OK;
  }

  grpc::Status Ping(grpc::ServerContext* /*context*/,
                    const google::protobuf::Empty* /*request*/,
                    google::protobuf::Empty* /*response*/) override {
    return grpc::Status::OK;
  }

 private:
  static void Must(const absl::Status& status) {
    if (status.ok()) return;
    CRM_LOG(kError, "cannot record events", {{"error", status.ToString()}});
    std::abort();
  }

  grpc::Status Refuse(const v1::DeliverEventsRequest& request,
                      grpc::StatusCode code, const std::string& message) {
    const std::string first =
        request.events().empty() ? "" : request.events(0).event_id();
    CRM_LOG(kWarning, "refused a delivery",
            {{"code", absl::StrCat(static_cast<int>(code))},
             {"first_event", first},
             {"error", message}});
    if (rejects_.is_open()) {
      // Best effort: the log line above has it too.
      static_cast<void>(
          rejects_.Append(absl::StrCat(static_cast<int>(code), "\t", first,
                                       "\t", message, "\n"),
                          false));
    }
    return grpc::Status(code, message);
  }

  const int64_t first_sequence_;
  std::unique_ptr<crm::common::Authenticator> authenticator_;

  absl::Mutex mu_;
  AppendFile out_;
  AppendFile dups_;
  // Written with or without mu_ held; one write(2) per line keeps lines
  // whole.
  AppendFile rejects_;
  absl::flat_hash_set<std::string> seen_ ABSL_GUARDED_BY(mu_);
  // Shard -> highest applied sequence.
  std::map<int32_t, int64_t> last_applied_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main(int argc, char** argv) {
  crm::common::BlockShutdownSignals();
  absl::ParseCommandLine(argc, argv);
  crm::common::SetLogService("test-event-sink");
  const std::string out_file = absl::GetFlag(FLAGS_out_file);
  if (out_file.empty()) {
    return crm::common::FailStartup(
        absl::InvalidArgumentError("--out_file: required"), "bad flag");
  }

  EventSink sink(absl::GetFlag(FLAGS_jwt_secret),
                 absl::GetFlag(FLAGS_first_sequence));
  if (absl::Status opened = sink.Open(out_file, absl::GetFlag(FLAGS_dup_file),
                                      absl::GetFlag(FLAGS_reject_file));
      !opened.ok()) {
    return crm::common::FailStartup(opened, "cannot open files");
  }

  crm::common::MetricsRegistry metrics;
  crm::common::ServerOptions options;
  options.service_name = "test-event-sink";
  options.grpc_port = absl::GetFlag(FLAGS_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  options.shutdown_grace = absl::Seconds(5);
  crm::common::ServerRunner runner(options, metrics);
  runner.AddService(&sink, v1::DealEventSink::service_full_name());
  if (absl::Status started = runner.Start(); !started.ok()) {
    return crm::common::FailStartup(started, "cannot start server");
  }
  const std::string signal = crm::common::WaitForShutdownSignal();
  CRM_LOG(kInfo, "shutting down", {{"signal", signal}});
  runner.Shutdown();
  return 0;
}
