// The operator HTTP port of a service (cpp-httplib behind a pimpl):
//
//   GET /metrics   the registry in Prometheus text format 0.0.4
//   GET /healthz   200 "ok" while healthy, 503 "not serving" after
//   SetHealthy(false) POST routes    added by the service with HandlePost (e.g.
//   inbound webhooks)
//
// Request bodies are limited to kMaxBodyBytes (larger ones get 413), reads and
// writes time out after kIoTimeoutSeconds.
//
//   crm::common::HttpServer http(metrics);
//   CRM_ASSIGN_OR_RETURN(int port, http.Start("0.0.0.0", 9090));
//   ...
//   http.SetHealthy(false);  // at shutdown, before draining
//   http.Stop();
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

#include "common/metrics/metrics.h"

namespace crm::common {

class HttpServer {
 public:
  struct Request {
    std::string method;
    std::string path;
    // Header names are lower-cased.
    std::multimap<std::string, std::string> headers;
    std::string body;
    // Decoded query parameters; the first value wins for repeated keys.
    std::map<std::string, std::string> query;
  };

  struct Response {
    int status = 200;
    std::string body;
    std::string content_type = "text/plain";
  };

  using Handler = std::function<Response(const Request&)>;

  static constexpr size_t kMaxBodyBytes = 1 << 20;
  static constexpr int kIoTimeoutSeconds = 5;

  // `registry` must outlive the server.
  explicit HttpServer(MetricsRegistry& registry);
  ~HttpServer();  // Stops.
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes POST requests to `handler`. `path_pattern` is either an exact path
  // ("/webhooks/stripe") or a prefix ending in '*' ("/webhooks/*" matches
  // "/webhooks/" and everything below it). An exact match wins over prefixes,
  // and the longest prefix wins among those. Registering the same pattern
  // again replaces its handler. May be called at any time, including while
  // serving. Handlers run on the server's worker threads; an exception thrown
  // by a handler becomes a 500.
  void HandlePost(std::string path_pattern, Handler handler);

  // Binds host:port (port 0 picks a free port) and serves on background
  // threads. Returns the bound port; UNAVAILABLE if the address cannot be
  // bound (e.g. the port is taken), INVALID_ARGUMENT for a port outside
  // 0..65535, FAILED_PRECONDITION if already started. A stopped server may be
  // started again.
  [[nodiscard]] absl::StatusOr<int> Start(const std::string& host, int port);

  // Healthy by default.
  void SetHealthy(bool healthy);

  // Stops listening and waits for in-flight requests. Idempotent.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crm::common
