#include "tests/e2e/event_sink_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include "tests/e2e/process.h"

namespace crm::testing {

SinkFiles::SinkFiles(const std::string& directory)
    : dir(directory),
      out_file(directory + "/events.tsv"),
      dup_file(directory + "/dups.tsv"),
      reject_file(directory + "/rejects.tsv"),
      log_file(directory + "/sink.log") {}

absl::StatusOr<std::unique_ptr<ServiceProcess>> StartEventSink(
    const std::string& binary, const SinkFiles& files,
    const SinkOptions& options) {
  ServiceOptions service;
  service.binary = binary;
  service.work_dir = files.dir;
  service.grpc_port = options.port;
  service.output_file = files.log_file;
  service.start_timeout = absl::Seconds(30);
  // --http_port=-1 overrides the --http_port=0 ServiceProcess passes: the
  // sink needs no operator port.
  service.args = {"--http_port=-1", "--out_file=" + files.out_file,
                  "--dup_file=" + files.dup_file,
                  "--reject_file=" + files.reject_file,
                  "--jwt_secret=" + options.jwt_secret};
  service.args.insert(service.args.end(), options.extra_args.begin(),
                      options.extra_args.end());
  return ServiceProcess::Start(service);
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines =
      absl::StrSplit(ReadFileOrEmpty(path), '\n', absl::SkipEmpty());
  return lines;
}

absl::StatusOr<std::vector<SinkEvent>> ReadSinkEvents(
    const std::string& out_file) {
  std::vector<SinkEvent> events;
  for (const std::string& line : ReadLines(out_file)) {
    const std::vector<std::string> fields = absl::StrSplit(line, '\t');
    SinkEvent event;
    if (fields.size() != 5 || !absl::SimpleAtoi(fields[1], &event.sequence) ||
        !absl::SimpleAtoi(fields[3], &event.deal_id)) {
      return absl::DataLossError(
          absl::StrCat("bad sink line in ", out_file, ": \"", line, "\""));
    }
    event.event_id = fields[0];
    event.type = fields[2];
    event.to_stage_id = fields[4];
    events.push_back(std::move(event));
  }
  return events;
}

std::vector<std::string> ReadSinkDuplicates(const std::string& dup_file) {
  std::vector<std::string> ids;
  for (const std::string& line : ReadLines(dup_file)) {
    const std::vector<std::string> fields = absl::StrSplit(line, '\t');
    if (fields.size() == 2 && fields[0] == "dup") ids.push_back(fields[1]);
  }
  return ids;
}

absl::StatusOr<int> PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) !=
          0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("bind: ", strerror(error)));
  }
  close(fd);
  return static_cast<int>(ntohs(address.sin_port));
}

}  // namespace crm::testing
