#include "common/http/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

#include "common/log/log.h"
// Debian ships cpp-httplib split into this header and libcpp-httplib.so; the
// library is built with CPPHTTPLIB_OPENSSL_SUPPORT (and zlib/brotli), so the
// same macros must be defined here for the class layouts to match. They come
// from pkg-config (see CMakeLists.txt). Only plain HTTP is served.
#include "httplib.h"

namespace crm::common {
namespace {

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4";
constexpr size_t kWorkerThreads = 4;
// Short, so Stop() does not wait long for an idle keep-alive connection.
constexpr time_t kKeepAliveTimeoutSeconds = 1;

// httplib's default socket options add SO_REUSEPORT, which would let a second
// process (or server) bind a port that is already in use.
void SetSocketOptions(socket_t sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
}

const char* ErrorText(int status) {
  switch (status) {
    case 400:
      return "bad request";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 413:
      return "payload too large";
    case 414:
      return "uri too long";
    case 500:
      return "internal error";
    default:
      return "error";
  }
}

}  // namespace

class HttpServer::Impl {
 public:
  explicit Impl(MetricsRegistry& registry) : registry_(registry) {}
  ~Impl() { Stop(); }

  void HandlePost(std::string path_pattern, Handler handler) {
    Route route;
    route.prefix = !path_pattern.empty() && path_pattern.back() == '*';
    if (route.prefix) path_pattern.pop_back();
    route.path = std::move(path_pattern);
    route.handler = std::make_shared<const Handler>(std::move(handler));
    absl::MutexLock lock(&routes_mu_);
    for (Route& existing : routes_) {
      if (existing.prefix == route.prefix && existing.path == route.path) {
        existing.handler = std::move(route.handler);
        return;
      }
    }
    routes_.push_back(std::move(route));
  }

  absl::StatusOr<int> Start(const std::string& host, int port) {
    if (port < 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid HTTP port ", port));
    }
    absl::MutexLock lock(&lifecycle_mu_);
    if (server_ != nullptr)
      return absl::FailedPreconditionError("HTTP server already started");

    auto server = std::make_unique<httplib::Server>();
    Configure(*server);
    int bound_port = port;
    if (port == 0) {
      bound_port = server->bind_to_any_port(host);
    } else if (!server->bind_to_port(host, port)) {
      bound_port = -1;
    }
    if (bound_port <= 0) {
      return absl::UnavailableError(absl::StrCat("cannot bind HTTP address ",
                                                 host, ":", port,
                                                 " (in use or not permitted)"));
    }

    auto finished = std::make_shared<std::atomic<bool>>(false);
    httplib::Server* raw = server.get();
    thread_ = std::thread([raw, finished] {
      if (!raw->listen_after_bind())
        CRM_LOG(kError, "HTTP server stopped accepting");
      finished->store(true);
    });
    // httplib::Server::stop() is a no-op until the accept loop runs, so a
    // Stop() right after Start() would otherwise leave the thread blocked.
    while (!raw->is_running() && !finished->load()) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    server_ = std::move(server);
    CRM_LOG(kInfo, "HTTP listening",
            {{"host", host}, {"port", std::to_string(bound_port)}});
    return bound_port;
  }

  void SetHealthy(bool healthy) {
    healthy_.store(healthy, std::memory_order_relaxed);
  }

  void Stop() {
    absl::MutexLock lock(&lifecycle_mu_);
    if (server_ == nullptr) return;
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

 private:
  struct Route {
    std::string path;  // without the trailing '*' for prefixes
    bool prefix = false;
    std::shared_ptr<const Handler> handler;
  };

  void Configure(httplib::Server& server) {
    server.set_socket_options(SetSocketOptions);
    server.new_task_queue = [] {
      return new httplib::ThreadPool(kWorkerThreads);
    };
    server.set_payload_max_length(kMaxBodyBytes);
    server.set_read_timeout(kIoTimeoutSeconds, 0);
    server.set_write_timeout(kIoTimeoutSeconds, 0);
    server.set_keep_alive_timeout(kKeepAliveTimeoutSeconds);

    server.Get(
        "/metrics", [this](const httplib::Request&, httplib::Response& res) {
          res.set_content(registry_.RenderPrometheus(), kMetricsContentType);
        });
    server.Get("/healthz",
               [this](const httplib::Request&, httplib::Response& res) {
                 if (healthy_.load(std::memory_order_relaxed)) {
                   res.set_content("ok", "text/plain");
                 } else {
                   res.status = 503;
                   res.set_content("not serving", "text/plain");
                 }
               });
    server.Post(".*",
                [this](const httplib::Request& req, httplib::Response& res) {
                  DispatchPost(req, res);
                });
    server.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request&, httplib::Response& res) {
          if (!res.body.empty())
            return httplib::Server::HandlerResponse::Unhandled;
          res.set_content(ErrorText(res.status), "text/plain");
          return httplib::Server::HandlerResponse::Handled;
        }));
    // Replaces httplib's default, which echoes the exception text in a header.
    server.set_exception_handler([](const httplib::Request& req,
                                    httplib::Response& res,
                                    std::exception_ptr) {
      CRM_LOG(kError, "HTTP handler failed",
              {{"method", req.method}, {"path", req.path}});
      res.status = 500;
      res.set_content(ErrorText(500), "text/plain");
    });
  }

  std::shared_ptr<const Handler> FindRoute(const std::string& path) const {
    absl::ReaderMutexLock lock(&routes_mu_);
    const Route* best = nullptr;
    for (const Route& route : routes_) {
      if (!route.prefix) {
        if (route.path == path) return route.handler;
        continue;
      }
      if (path.compare(0, route.path.size(), route.path) == 0 &&
          (best == nullptr || route.path.size() > best->path.size())) {
        best = &route;
      }
    }
    return best == nullptr ? nullptr : best->handler;
  }

  void DispatchPost(const httplib::Request& req, httplib::Response& res) const {
    const std::shared_ptr<const Handler> handler = FindRoute(req.path);
    if (handler == nullptr) {
      res.status = 404;
      res.set_content(ErrorText(404), "text/plain");
      return;
    }
    Request request;
    request.method = req.method;
    request.path = req.path;
    for (const auto& [name, value] : req.headers) {
      request.headers.emplace(absl::AsciiStrToLower(name), value);
    }
    request.body = req.body;
    for (const auto& [key, value] : req.params)
      request.query.emplace(key, value);

    Response response;
    try {
      response = (*handler)(request);
    } catch (const std::exception& e) {
      CRM_LOG(kError, "HTTP handler failed",
              {{"path", req.path}, {"error", std::string_view(e.what())}});
      response = Response{500, ErrorText(500), "text/plain"};
    } catch (...) {
      CRM_LOG(kError, "HTTP handler failed", {{"path", req.path}});
      response = Response{500, ErrorText(500), "text/plain"};
    }
    res.status = response.status;
    res.set_content(response.body, response.content_type);
  }

  MetricsRegistry& registry_;
  std::atomic<bool> healthy_{true};

  mutable absl::Mutex routes_mu_;
  std::vector<Route> routes_ ABSL_GUARDED_BY(routes_mu_);

  absl::Mutex lifecycle_mu_;
  std::unique_ptr<httplib::Server> server_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::thread thread_ ABSL_GUARDED_BY(lifecycle_mu_);
};

HttpServer::HttpServer(MetricsRegistry& registry)
    : impl_(std::make_unique<Impl>(registry)) {}

HttpServer::~HttpServer() = default;

void HttpServer::HandlePost(std::string path_pattern, Handler handler) {
  impl_->HandlePost(std::move(path_pattern), std::move(handler));
}

absl::StatusOr<int> HttpServer::Start(const std::string& host, int port) {
  return impl_->Start(host, port);
}

void HttpServer::SetHealthy(bool healthy) { impl_->SetHealthy(healthy); }

void HttpServer::Stop() { impl_->Stop(); }

}  // namespace crm::common
