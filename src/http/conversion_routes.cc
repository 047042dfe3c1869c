#include "conversion_routes.h"

#include <algorithm>
#include <charconv>
#include <future>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "earnd/common/time.h"
#include "earnd/links/catalog.h"

namespace json = boost::json;
namespace bhttp = boost::beast::http;

namespace earnd::http {
namespace {

constexpr std::size_t kMaxBatch = 1024;

std::string_view bearer(const Request& req) {
  auto it = req.find(bhttp::field::authorization);
  if (it == req.end()) {
    return {};
  }
  return bearer_token(it->value());
}

Reply unauthorized() {
  Reply r = json_error(401, "unauthorized", "send the program key as Authorization: Bearer <key>");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

// GET /postback?key=…&event_id=…: the query parameters become the body's fields.
std::variant<Reply, attribution::ConversionRequest> read_postback(const RedirectEnv& env,
                                                                  const Request& req) {
  auto u = boost::urls::parse_origin_form(req.target());
  if (!u) {
    return json_error(400, "invalid_target", "the postback URL is not valid");
  }
  attribution::ConversionRequest out;
  // A repeated parameter keeps its first value, as redirects and admin queries do.
  std::optional<std::string> key;
  for (auto p : u->params()) {
    if (p.key == "key") {
      key = key ? *key : p.value;
    } else if (!p.key.empty() && p.has_value && !out.body.contains(p.key)) {
      out.body[p.key] = p.value;
    }
  }
  // Parameters are text: the amount becomes a JSON number when it is all digits, so the JSON
  // route and postbacks share one check (which refuses an amount given as a string).
  if (auto it = out.body.find("amount_minor"); it != out.body.end()) {
    std::string_view text = it->value().get_string();
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec == std::errc() && end == text.data() + text.size()) {
      it->value() = n;
    }
  }
  auto program = !key || key->empty() ? std::nullopt : env.services.catalog.program_for_key(*key);
  if (!program) {
    return unauthorized();
  }
  out.program = *program;
  return out;
}

}  // namespace

bool is_conversion_target(std::string_view target) noexcept {
  std::string_view path = target.substr(0, target.find('?'));
  return path == "/v1/conversions" || path == "/postback";
}

std::variant<Reply, attribution::ConversionRequest> read_conversion(
    const RedirectEnv& env, const Request& req, const boost::asio::ip::address& peer) {
  std::string_view target = req.target();
  if (target.starts_with("/postback")) {
    if (req.method() != bhttp::verb::get) {
      return json_error(405, "method_not_allowed", "use GET for postbacks");
    }
    return read_postback(env, req);
  }
  if (req.method() != bhttp::verb::post) {
    return json_error(405, "method_not_allowed", "use POST for conversions");
  }

  ErrorCode ec;
  json::parse_options opt;
  opt.max_depth = 16;
  json::value v = json::parse(req.body(), ec, {}, opt);
  if (ec || !v.is_object()) {
    return json_error(400, "invalid_json", "the body must be a JSON object");
  }
  attribution::ConversionRequest out;
  out.body = std::move(v.as_object());

  // The secret program key (server to server), or the publishable key that earnd.js sends in
  // the body so that the browser's request needs no CORS preflight.
  if (std::string_view key = bearer(req); !key.empty()) {
    auto program = env.services.catalog.program_for_key(key);
    if (!program) {
      return unauthorized();
    }
    out.program = *program;
    return out;
  }
  auto it = out.body.find("publishable_key");
  if (it == out.body.end() || !it->value().is_string()) {
    return unauthorized();
  }
  auto program = env.services.catalog.program_for_publishable_key(it->value().get_string());
  if (!program) {
    return unauthorized();
  }
  out.program = *program;
  out.publishable = true;
  out.visitor_hash = visitor_hash(env, req, peer);
  out.body.erase("publishable_key");
  return out;
}

namespace {

// The per-client limit's key: an IPv4 address, or the /64 an IPv6 address is in (one subscriber
// line or host usually holds a whole /64, so its addresses are one client).
std::string client_key(const boost::asio::ip::address& a) {
  if (!a.is_v6() || a.to_v6().is_v4_mapped()) {
    return a.is_v6()
               ? boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).to_string()
               : a.to_string();
  }
  auto bytes = a.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

Reply rate_limited(const RateLimiter& limiter, std::string_view who) {
  Reply r = json_error(429, "rate_limited",
                       "too many conversions from this " + std::string(who) + "; retry later");
  r.headers.emplace_back("Retry-After", std::to_string(limiter.retry_after_s()));
  return r;
}

}  // namespace

std::variant<Reply, attribution::ConversionRequest> read_limited_conversion(
    const RedirectEnv& env,
    const Request& req,
    const boost::asio::ip::address& peer,
    ConversionLimits& limits) {
  if (!limits.per_client.allow(client_key(client_address(req, peer, env.proxies)))) {
    return rate_limited(limits.per_client, "client");
  }
  auto read = read_conversion(env, req, peer);
  auto* request = std::get_if<attribution::ConversionRequest>(&read);
  // Per program and key: what browsers send with the publishable key cannot use up the limit
  // of the merchant's own server (secret key), nor the other way round.
  if (request != nullptr &&
      !limits.per_program.allow(request->program + (request->publishable ? "\npk" : "\nsk"))) {
    return rate_limited(limits.per_program, "program");
  }
  return read;
}

ConversionQueue::ConversionQueue(attribution::ConversionService& service)
    : service_(service), guard_(boost::asio::make_work_guard(ioc_)) {
  schedule_approvals();
  thread_ = std::thread([this] { ioc_.run(); });
}

// The hold-period timer: once a second, approves ledger entries whose hold ended. The due
// entries are found in the store, so approvals missed while earnd was down happen at start.
void ConversionQueue::schedule_approvals() {
  approvals_.expires_after(std::chrono::seconds(1));
  approvals_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    (void)service_.approve_due(now_ms());
    schedule_approvals();
  });
}

std::pair<unsigned, std::string> ConversionQueue::run(
    std::function<std::pair<unsigned, std::string>()> task) {
  std::promise<std::pair<unsigned, std::string>> done;
  auto result = done.get_future();
  boost::asio::post(ioc_, [&task, &done] { done.set_value(task()); });
  return result.get();
}

ConversionQueue::~ConversionQueue() {
  stop();
}

void ConversionQueue::submit(attribution::ConversionRequest request, Done done) {
  boost::asio::post(ioc_, [this, r = std::move(request), d = std::move(done)]() mutable {
    pending_.push_back({std::move(r), std::move(d)});
    if (!scheduled_) {
      scheduled_ = true;
      // Runs after every handler already queued, so it takes all that arrived together.
      boost::asio::post(ioc_, [this] { flush(); });
    }
  });
}

void ConversionQueue::flush() {
  scheduled_ = false;
  while (!pending_.empty()) {
    std::size_t n = std::min(pending_.size(), kMaxBatch);
    std::vector<attribution::ConversionRequest> batch;
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(pending_[i].request));
    }
    auto replies = service_.process(batch);
    for (std::size_t i = 0; i < n; ++i) {
      pending_[i].done(std::move(replies[i]));
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
  }
}

void ConversionQueue::stop() {
  boost::asio::post(ioc_, [this] { approvals_.cancel(); });
  guard_.reset();
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace earnd::http
