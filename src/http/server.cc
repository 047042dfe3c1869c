#include "earnd/http/server.h"

#include <cctype>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "conversion_routes.h"
#include "earnd/common/click_id.h"
#include "earnd/common/hash.h"
#include "earnd/ingest/bot_classifier.h"
#include "earnd/ingest/pipeline.h"
#include "earnd/links/catalog.h"
#include "earnd/log/log.h"
#include "earnd/metrics/metrics.h"
#include "handlers.h"
#include "redirect.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace earnd::http {
namespace {

enum class Kind { kPublic, kAdmin };

class Session;

// One I/O thread: its io_context, its acceptor, its view of the link catalog and its lane into
// the ingest pipeline. Everything here is touched only from the thread itself.
struct Worker {
  asio::io_context ioc{1};
  // Keeps run() going while sessions wait for a commit with no socket operation pending; the
  // writer's completion wake-ups arrive later. shutdown() ends the loop with stop().
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  std::optional<links::SnapshotReader> reader;
  std::unordered_set<Session*> sessions;
  RedirectScratch scratch;
  int lane = -1;  // -1 for the admin thread
  Kind kind = Kind::kPublic;
  std::thread thread;
};

// State shared by every session of the server; read-only after start, apart from the atomics.
struct Shared {
  Services services;
  KeyedHasher hasher;
  TrustedProxies proxies;
  std::atomic<bool> draining{false};
  std::atomic<std::uint32_t> open{0};         // every listener's, for the drain on shutdown
  std::atomic<std::uint32_t> public_open{0};  // the public listener's, for max_connections
  std::shared_ptr<spdlog::logger> log = log::get("http");
  log::RateLimitedWarn queue_full_warn{std::chrono::seconds(10)};
  ConversionQueue* conversions = nullptr;
  ConversionLimits* conversion_limits = nullptr;
};

// Framing a request must not leave ambiguous (RFC 9112, sections 3.2 and 6): Transfer-Encoding
// other than exactly "chunked" (a last coding that is not chunked leaves the body length
// unknown, so what follows could be a smuggled request; other codings are not implemented),
// and an HTTP/1.1 request without exactly one Host. Beast's parser accepts both. Content-Length
// with Transfer-Encoding, and malformed lengths, are refused by the parser itself.
std::optional<Reply> framing_error(const Request& req) {
  std::string codings;
  for (const auto& f : req.base()) {
    if (f.name() == bhttp::field::transfer_encoding) {
      if (!codings.empty()) {
        codings += ',';
      }
      codings.append(f.value().data(), f.value().size());
    }
  }
  if (!codings.empty()) {
    std::vector<std::string> list;
    std::string token;
    auto flush = [&] {
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) {
        token.pop_back();
      }
      list.push_back(token);
      token.clear();
    };
    for (char ch : codings) {
      if (ch == ',') {
        flush();
      } else if (!(token.empty() && (ch == ' ' || ch == '\t'))) {
        token += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      }
    }
    flush();
    if (req.version() < 11 || list.back() != "chunked") {
      return json_error(400, "bad_transfer_encoding",
                        "Transfer-Encoding must end with chunked (HTTP/1.1 only)");
    }
    if (list.size() != 1) {
      return json_error(501, "unsupported_transfer_coding",
                        "only the chunked transfer coding is supported");
    }
  }
  std::size_t hosts = req.count(bhttp::field::host);
  if (hosts > 1 || (hosts == 0 && req.version() >= 11)) {
    return json_error(400, "bad_host", "an HTTP/1.1 request needs exactly one Host header");
  }
  return std::nullopt;
}

class Session : public std::enable_shared_from_this<Session>, public ingest::CommitWaiter {
 public:
  Session(tcp::socket socket, Worker& worker, Shared& shared)
      : stream_(std::move(socket)),
        buffer_(std::size_t{shared.services.config.server.max_header_bytes} + kReadSlackBytes),
        worker_(worker),
        shared_(shared) {
    worker_.sessions.insert(this);
    shared_.services.metrics.connections_open.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      peer_ = ep.address();
    }
  }

  ~Session() {
    worker_.sessions.erase(this);
    shared_.open.fetch_sub(1, std::memory_order_relaxed);
    if (worker_.kind == Kind::kPublic) {
      shared_.public_open.fetch_sub(1, std::memory_order_relaxed);
    }
    shared_.services.metrics.connections_open.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() { read_request(); }

  // Closes the connection if it is waiting for a next request (shutdown).
  void close_if_idle() {
    if (reading_ && buffer_.size() == 0) {
      beast::error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      stream_.socket().close(ec);
    }
  }

  void on_committed(bool stored) noexcept override {
    auto self = std::move(self_);
    if (stored) {
      finish_redirect();
    } else {
      write_reply(json_error(503, "storage_unavailable", "the click could not be stored"));
    }
  }

 private:
  const config::ServerConfig& cfg() const { return shared_.services.config.server; }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(cfg().max_header_bytes);
    parser_->body_limit(cfg().max_body_bytes);
    bool idle = buffer_.size() == 0 && requests_ > 0;
    stream_.expires_after(
        std::chrono::milliseconds(idle ? cfg().idle_timeout_ms : cfg().read_timeout_ms));
    reading_ = true;
    header_bytes_ = 0;
    read_header_part(idle);
  }

  // Reads the header in parts and counts its bytes. Beast's header limit bounds only the part
  // not yet parsed, so a header of many small fields arriving in several segments would pass
  // it; the total is checked here instead.
  void read_header_part(bool idle) {
    bhttp::async_read_some(stream_, buffer_, *parser_,
                           [self = shared_from_this(), idle](beast::error_code ec, std::size_t n) {
                             self->on_header_part(ec, n, idle);
                           });
  }

  void on_header_part(beast::error_code ec, std::size_t n, bool idle) {
    if (ec) {
      return on_read(ec);
    }
    if (idle && header_bytes_ == 0 && n > 0) {
      // A request has begun on a kept-alive connection: from now on it has the read timeout.
      stream_.expires_after(std::chrono::milliseconds(cfg().read_timeout_ms));
    }
    header_bytes_ += n;
    if (header_bytes_ > cfg().max_header_bytes) {
      return on_read(bhttp::error::header_limit);
    }
    if (!parser_->is_header_done()) {
      return read_header_part(idle && header_bytes_ == 0);
    }
    if (auto refusal = framing_error(parser_->get())) {
      // Answered before any body byte is read, then the connection is closed: whatever
      // follows on it cannot be told apart from a smuggled request.
      reading_ = false;
      shared_.services.metrics.requests_rejected_parse.fetch_add(1, std::memory_order_relaxed);
      keep_alive_ = false;
      head_only_ = false;
      count(metrics::Route::kOther, refusal->status);
      return write_reply(*refusal);
    }
    read_body_part();
  }

  // Reads the body in parts and counts every byte of the request. Beast's body limit counts
  // only the body's payload: chunk extensions and trailer fields would otherwise be read and
  // kept without bound (a trailer of 150 MB was). The request as a whole may take the header
  // limit (once more, for trailers) plus twice the body limit (for chunk framing); past that it
  // is refused as too large.
  void read_body_part() {
    if (parser_->is_done()) {
      return on_read({});
    }
    bhttp::async_read_some(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t n) {
          if (ec) {
            return self->on_read(ec);
          }
          self->header_bytes_ += n;
          const auto& c = self->cfg();
          if (self->header_bytes_ > 2 * std::size_t{c.max_header_bytes} + 2 * c.max_body_bytes) {
            return self->on_read(bhttp::error::body_limit);
          }
          self->read_body_part();
        });
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    if (ec) {
      return on_read_error(ec);
    }
    ++requests_;
    read_done_ = std::chrono::steady_clock::now();
    const Request& req = parser_->get();
    keep_alive_ = req.keep_alive() && !shared_.draining.load(std::memory_order_relaxed);
    http10_ = req.version() == 10;
    if (worker_.kind == Kind::kPublic && is_redirect_target(req.target()) &&
        (req.method() == bhttp::verb::get || req.method() == bhttp::verb::head)) {
      return start_redirect(req);
    }
    if (worker_.kind == Kind::kPublic && is_conversion_target(req.target())) {
      return start_conversion(req);
    }
    auto route = worker_.kind == Kind::kAdmin ? metrics::Route::kAdmin : metrics::Route::kOther;
    Reply r = worker_.kind == Kind::kAdmin
                  ? handle_admin(shared_.services, *shared_.conversions, req)
                  : handle_public(shared_.services, req);
    head_only_ = req.method() == bhttp::verb::head;
    count(route, r.status);
    write_reply(r);
  }

  void on_read_error(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
        ec == beast::error::timeout || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset) {
      return close();
    }
    // A malformed or oversized request: answer once with the reason, then close.
    shared_.services.metrics.requests_rejected_parse.fetch_add(1, std::memory_order_relaxed);
    unsigned status = 400;
    std::string code = "bad_request";
    bool in_body = parser_ && parser_->is_header_done();
    if (ec == bhttp::error::header_limit || (ec == bhttp::error::buffer_overflow && !in_body)) {
      status = 431;
      code = "header_too_large";
    } else if (ec == bhttp::error::body_limit || ec == bhttp::error::buffer_overflow) {
      status = 413;
      code = "body_too_large";
    }
    keep_alive_ = false;
    head_only_ = false;
    count(metrics::Route::kOther, status);
    write_reply(json_error(status, code, "the request could not be read: " + ec.message()));
  }

  void start_redirect(const Request& req) {
    const links::Snapshot& snap = worker_.reader->get();
    RedirectInput in{
        .request = req,
        .peer = peer_,
        .now_ms =
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count()),
    };
    head_only_ = req.method() == bhttp::verb::head;
    RedirectEnv env{shared_.services, shared_.hasher, shared_.proxies};
    RedirectPlan plan = plan_redirect(env, snap, in, worker_.scratch);
    if (plan.kind != RedirectPlan::Kind::kClick) {
      count(metrics::Route::kRedirect, plan.reply.status);
      return write_reply(plan.reply);
    }

    bool group = shared_.services.config.storage.durability == config::Durability::kGroup;
    plan.click.waiter = group ? this : nullptr;
    if (!shared_.services.pipeline.try_submit(worker_.lane, plan.click)) {
      // The writer is behind: redirect without a click id, so nothing unstored is acknowledged.
      shared_.services.metrics.clicks_dropped_queue_full.fetch_add(1, std::memory_order_relaxed);
      if (auto n = shared_.queue_full_warn.hit()) {
        shared_.log->warn("event=click_queue_full dropped={}", n);
      }
      (void)plan_redirect(env, snap, in, worker_.scratch, /*with_click=*/false);
      out_.swap(worker_.scratch.response);
      return finish_redirect();
    }
    out_.swap(worker_.scratch.response);
    if (group) {
      self_ = shared_from_this();  // kept alive until on_committed
      return;
    }
    finish_redirect();
  }

  // Hands the conversion to the conversion thread; its reply comes back on this thread.
  void start_conversion(const Request& req) {
    head_only_ = false;
    RedirectEnv env{shared_.services, shared_.hasher, shared_.proxies};
    auto read = read_limited_conversion(env, req, peer_, *shared_.conversion_limits);
    if (auto* reply = std::get_if<Reply>(&read)) {
      count(metrics::Route::kConversion, reply->status);
      return write_reply(*reply);
    }
    bool cors = std::get<attribution::ConversionRequest>(read).publishable;
    shared_.conversions->submit(
        std::move(std::get<attribution::ConversionRequest>(read)),
        [self = shared_from_this(), cors](attribution::ConversionReply r) {
          auto& ioc = self->worker_.ioc;
          asio::post(ioc, [self, r = std::move(r), cors] {
            Reply reply{r.status, "application/json", std::move(r.body), {}};
            if (cors) {
              reply.headers.emplace_back("Access-Control-Allow-Origin", "*");
            }
            self->count(metrics::Route::kConversion, reply.status);
            self->write_reply(reply);
          });
        });
  }

  void finish_redirect() {
    count(metrics::Route::kRedirect, 302);
    shared_.services.metrics.redirect_seconds.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - read_done_).count());
    if (!keep_alive_) {
      append_close_header(out_);
    } else if (http10_) {
      append_keep_alive_header(out_);
    }
    out_ += "\r\n";
    write_out();
  }

  void write_reply(const Reply& r) {
    out_.clear();
    format_reply(r, head_only_, keep_alive_, http10_, out_);
    write_out();
  }

  void write_out() {
    stream_.expires_after(std::chrono::milliseconds(cfg().write_timeout_ms));
    asio::async_write(
        stream_, asio::buffer(out_),
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    if (ec || !keep_alive_) {
      return close();
    }
    read_request();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  void count(metrics::Route route, unsigned status) {
    auto l = worker_.kind == Kind::kAdmin ? metrics::Listener::kAdmin : metrics::Listener::kPublic;
    shared_.services.metrics.count_request(l, route, status);
  }

  beast::tcp_stream stream_;
  // Bytes read and not yet parsed. Beast parses a header or a chunked body's trailer only once
  // all of it is here, so without a cap a trailer sent in pieces grew it without bound (1.4 GB
  // in a hostile review); past the cap the read fails with buffer_overflow. Body bytes leave it
  // as they are parsed. max_header_bytes stays below 64 KiB (config validation), so no field
  // reaches Beast's own limit, which throws.
  static constexpr std::size_t kReadSlackBytes = 4096;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string out_;
  Worker& worker_;
  Shared& shared_;
  asio::ip::address peer_;
  std::shared_ptr<Session> self_;
  std::chrono::steady_clock::time_point read_done_;
  std::uint64_t requests_ = 0;
  std::size_t header_bytes_ = 0;  // of the request being read (its body's too, once read)
  bool reading_ = false;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool head_only_ = false;
};

void accept_loop(Worker& w, Shared& shared) {
  w.acceptor->async_accept(w.ioc, [&w, &shared](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        shared.log->warn("event=accept_failed error=\"{}\"", ec.message());
        accept_loop(w, shared);
      }
      return;
    }
    bool is_public = w.kind == Kind::kPublic;
    shared.open.fetch_add(1, std::memory_order_relaxed);
    // The cap guards against floods of public clients and counts only them; the admin listener
    // stays reachable through them, so an operator can still read /metrics and act, and its
    // connections never take a public client's place.
    // LIMIT: admin connections have no cap of their own; the listener is on loopback by default.
    bool over_cap = is_public && shared.public_open.fetch_add(1, std::memory_order_relaxed) + 1 >
                                     shared.services.config.server.max_connections;
    if (over_cap || shared.draining.load(std::memory_order_relaxed)) {
      shared.open.fetch_sub(1, std::memory_order_relaxed);
      if (is_public) {
        shared.public_open.fetch_sub(1, std::memory_order_relaxed);
      }
      shared.services.metrics.connections_rejected.fetch_add(1, std::memory_order_relaxed);
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), w, shared)->start();
    }
    accept_loop(w, shared);
  });
}

tcp::acceptor bind_acceptor(asio::io_context& ioc, const tcp::endpoint& ep, bool reuse_port) {
  tcp::acceptor a(ioc);
  beast::error_code ec;
  a.open(ep.protocol(), ec);
  if (!ec) {
    a.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec && reuse_port) {
    int one = 1;
    if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      ec = beast::error_code(errno, boost::system::system_category());
    }
  }
  if (!ec) {
    a.bind(ep, ec);
  }
  if (!ec) {
    a.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    throw StartupError("http: cannot listen on " + ep.address().to_string() + ":" +
                       std::to_string(ep.port()) + ": " + ec.message());
  }
  return a;
}

tcp::endpoint resolve(const std::string& listen) {
  auto [host, port] = config::split_host_port(listen);
  beast::error_code ec;
  auto addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    throw ConfigError("config: listen address \"" + listen + "\" must be an IP address and port");
  }
  return {addr, port};
}

std::string format_endpoint(const tcp::endpoint& ep) {
  auto a = ep.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

}  // namespace

struct Server::Impl {
  explicit Impl(Services s)
      : shared{s, KeyedHasher(s.visitor_secret), TrustedProxies(s.config.server.trusted_proxies)} {}

  Shared shared;
  std::unique_ptr<ConversionQueue> conversions;
  std::unique_ptr<ConversionLimits> conversion_limits;
  std::vector<std::unique_ptr<Worker>> workers;  // the I/O threads, then the admin thread last
  tcp::endpoint public_ep;
  tcp::endpoint admin_ep;
};

Server::Server(Services services) : impl_(std::make_unique<Impl>(services)) {
  const auto& cfg = services.config.server;
  impl_->conversions = std::make_unique<ConversionQueue>(services.conversions);
  impl_->shared.conversions = impl_->conversions.get();
  impl_->conversion_limits = std::make_unique<ConversionLimits>(
      cfg.conversion_rate_per_client, cfg.conversion_rate_per_program, cfg.conversion_burst_s);
  impl_->shared.conversion_limits = impl_->conversion_limits.get();
  auto public_ep = resolve(cfg.public_listen);
  for (int i = 0; i <= cfg.io_threads; ++i) {
    auto w = std::make_unique<Worker>();
    bool admin = i == cfg.io_threads;
    w->kind = admin ? Kind::kAdmin : Kind::kPublic;
    w->lane = admin ? -1 : i;
    if (admin) {
      w->acceptor.emplace(bind_acceptor(w->ioc, resolve(cfg.admin_listen), false));
      impl_->admin_ep = w->acceptor->local_endpoint();
    } else {
      // The first acceptor picks the port when 0 was asked for; the others join it.
      w->acceptor.emplace(bind_acceptor(w->ioc, public_ep, true));
      public_ep = w->acceptor->local_endpoint();
      impl_->public_ep = public_ep;
      w->reader.emplace(services.catalog);
      services.pipeline.set_waker(i, [wp = w.get(), &pipeline = services.pipeline] {
        asio::post(wp->ioc, [wp, &pipeline] { pipeline.drain_completions(wp->lane); });
      });
    }
    impl_->workers.push_back(std::move(w));
  }
  for (auto& w : impl_->workers) {
    accept_loop(*w, impl_->shared);
    w->work.emplace(w->ioc.get_executor());
    w->thread = std::thread([wp = w.get(), log = impl_->shared.log] {
      // A handler that throws (a bug, or a library refusing input it should have been kept
      // from) must not end the process: log it and go on serving. The session whose handler
      // threw is dropped with its last reference.
      while (true) {
        try {
          wp->ioc.run();
          return;
        } catch (const std::exception& e) {
          log->error("event=handler_exception error=\"{}\"", e.what());
        }
      }
    });
  }
}

Server::~Server() {
  for (auto& w : impl_->workers) {
    w->ioc.stop();
    if (w->thread.joinable()) {
      w->thread.join();
    }
  }
  impl_->conversions->stop();
}

std::string Server::public_address() const {
  return format_endpoint(impl_->public_ep);
}

std::string Server::admin_address() const {
  return format_endpoint(impl_->admin_ep);
}

void Server::shutdown() {
  auto& shared = impl_->shared;
  shared.draining.store(true, std::memory_order_relaxed);
  for (auto& w : impl_->workers) {
    asio::post(w->ioc, [wp = w.get()] {
      beast::error_code ec;
      wp->acceptor->close(ec);
      for (Session* s : wp->sessions) {
        s->close_if_idle();
      }
    });
  }

  // Requests in flight finish (a redirect waits for its commit); then the threads stop.
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(shared.services.config.server.shutdown_grace_ms);
  while (shared.open.load(std::memory_order_relaxed) > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    for (auto& w : impl_->workers) {
      asio::post(w->ioc, [wp = w.get()] {
        for (Session* s : wp->sessions) {
          s->close_if_idle();
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& w : impl_->workers) {
    w->ioc.stop();
    if (w->thread.joinable()) {
      w->thread.join();
    }
  }
  impl_->conversions->stop();
}

}  // namespace earnd::http
