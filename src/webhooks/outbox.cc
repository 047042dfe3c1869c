#include "earnd/webhooks/outbox.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include "client.h"
#include "delivery.h"
#include "earnd/common/secrets.h"
#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/log/log.h"

namespace earnd::webhooks {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr std::size_t kIdChars = 24;  // about 124 random bits after "msg_"
constexpr std::size_t kMaxPerPage = 100;

std::string reply_error(unsigned status, std::string_view code, std::string_view message) {
  return json::serialize(links::error_reply(status, code, message).body);
}

}  // namespace

struct Outbox::Impl {
  Impl(store::Store& s, const links::Catalog& c, OutboxOptions o)
      : store(s),
        catalog(c),
        options(o),
        tls(asio::ssl::context::tls_client),
        log(log::get("webhooks")),
        rng(std::random_device{}()) {}

  // What list() and stats() need of every delivery; guarded by index_mutex.
  struct Summary {
    std::string program;
    State state = State::kPending;
    std::uint64_t created_ms = 0;
    std::uint64_t next_attempt_ms = 0;
  };

  // The delivery thread's io_context and what lives on it; rebuilt by each start().
  struct Runtime {
    asio::io_context ioc{1};
    asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
    asio::steady_timer wake{ioc};
    std::thread thread;
  };

  using Due = std::pair<std::uint64_t, std::string>;  // (next_attempt_ms, id)

  void load_index();
  void index_put(const Delivery& d);
  void run_thread(Runtime& rt);
  void post_drain_locked();
  void drain();
  void apply_redeliver(const std::string& id);
  std::optional<Delivery> reset_for_redelivery(const std::string& id);
  void index_stored(const std::string& id);
  void schedule(const std::string& id, std::uint64_t at_ms);
  void pump();
  void launch(const std::string& id);
  asio::awaitable<void> attempt(std::string id);
  asio::awaitable<Outcome> deliver(const Delivery& d);
  void finish(Delivery d, const Outcome& outcome, AttemptLog entry);
  void give_up(Delivery& d, const std::string& reason);
  void abandon(const std::string& id);
  std::uint64_t backoff_ms(std::uint32_t tries);
  void persist(const Delivery& d);

  store::Store& store;
  const links::Catalog& catalog;
  const OutboxOptions options;
  asio::ssl::context tls;
  std::shared_ptr<spdlog::logger> log;
  log::RateLimitedWarn attempt_warn{std::chrono::seconds(10)};

  // The index of every delivery, for list() and stats().
  mutable std::mutex index_mutex;
  std::unordered_map<std::string, Summary> by_id;
  std::set<std::pair<std::uint64_t, std::string>> by_created;
  std::uint64_t count_by_state[3] = {0, 0, 0};

  // Hand-over from other threads to the delivery thread.
  std::mutex mutex;
  std::unique_ptr<Runtime> runtime;  // null while stopped
  std::vector<std::string> incoming;
  std::vector<std::string> redeliveries;
  bool drain_posted = false;

  // Delivery-thread state. loop is set by start() before the thread runs and cleared by stop()
  // after it ended. Due times of pending deliveries that are not in flight. The heap may
  // hold stale entries; `scheduled` has the current time of each id.
  std::priority_queue<Due, std::vector<Due>, std::greater<>> heap;
  std::unordered_map<std::string, std::uint64_t> scheduled;
  std::unordered_set<std::string> in_flight;
  std::unordered_set<std::string> redeliver_after;  // redelivered while an attempt was running
  Runtime* loop = nullptr;
  std::mt19937_64 rng;

  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> attempts{0};
  std::atomic<std::uint64_t> failed_attempts{0};
  std::atomic<std::uint64_t> given_up{0};
};

void Outbox::Impl::load_index() {
  std::uint64_t corrupt = 0;
  store.scan_docs(kKeyPrefix, [&](std::string_view, std::string_view value) {
    if (auto d = decode(value)) {
      index_put(*d);
    } else {
      ++corrupt;
    }
    return true;
  });
  if (corrupt != 0) {
    log->warn("event=corrupt_deliveries_skipped count={}", corrupt);
  }
}

void Outbox::Impl::index_put(const Delivery& d) {
  std::lock_guard lock(index_mutex);
  auto [it, inserted] = by_id.try_emplace(d.id);
  if (inserted) {
    by_created.emplace(d.created_ms, d.id);
  } else {
    --count_by_state[static_cast<int>(it->second.state)];
  }
  it->second = Summary{d.program, d.state, d.created_ms, d.next_attempt_ms};
  ++count_by_state[static_cast<int>(d.state)];
}

void Outbox::Impl::run_thread(Runtime& rt) {
  // Handlers return errors rather than throw; this loop only keeps the thread alive should an
  // allocation fail inside one.
  for (;;) {
    try {
      rt.ioc.run();
      return;
    } catch (const std::exception& e) {
      log->error("event=delivery_thread_error error=\"{}\"", e.what());
    }
  }
}

void Outbox::Impl::post_drain_locked() {
  if (runtime && !drain_posted) {
    drain_posted = true;
    asio::post(runtime->ioc, [this] { drain(); });
  }
}

void Outbox::Impl::drain() {
  std::vector<std::string> ids;
  std::vector<std::string> redos;
  {
    std::lock_guard lock(mutex);
    ids.swap(incoming);
    redos.swap(redeliveries);
    drain_posted = false;
  }

  // Committed deliveries: the store is the truth, so each is read back once.
  for (const std::string& id : ids) {
    index_stored(id);
  }
  for (const std::string& id : redos) {
    apply_redeliver(id);
  }
  pump();
}

void Outbox::Impl::apply_redeliver(const std::string& id) {
  if (in_flight.contains(id)) {
    redeliver_after.insert(id);
    return;
  }
  if (auto d = reset_for_redelivery(id)) {
    schedule(id, d->next_attempt_ms);
  }
}

std::optional<Delivery> Outbox::Impl::reset_for_redelivery(const std::string& id) {
  auto stored = store.get_doc(delivery_key(id));
  if (!stored || !*stored) {
    return std::nullopt;
  }
  auto d = decode(**stored);
  if (!d) {
    return std::nullopt;
  }
  std::uint64_t now = now_ms();
  d->state = State::kPending;
  d->next_attempt_ms = now;
  d->retry_from_ms = now;
  d->tries = 0;
  d->failure.clear();
  persist(*d);
  index_put(*d);
  return d;
}

void Outbox::Impl::index_stored(const std::string& id) {
  {
    std::lock_guard lock(index_mutex);
    if (by_id.contains(id)) {
      return;
    }
  }
  auto stored = store.get_doc(delivery_key(id));
  if (!stored || !*stored) {
    log->warn("event=committed_delivery_missing id={}", id);
    return;
  }
  if (auto d = decode(**stored)) {
    index_put(*d);
    if (d->state == State::kPending && loop != nullptr) {
      schedule(d->id, d->next_attempt_ms);
    }
  }
}

void Outbox::Impl::schedule(const std::string& id, std::uint64_t at_ms) {
  scheduled[id] = at_ms;
  heap.emplace(at_ms, id);
}

void Outbox::Impl::pump() {
  if (loop == nullptr) {
    return;
  }
  std::uint64_t now = now_ms();
  while (in_flight.size() < options.max_in_flight && !heap.empty()) {
    const Due& top = heap.top();
    auto it = scheduled.find(top.second);
    if (it == scheduled.end() || it->second != top.first) {
      heap.pop();  // stale: rescheduled, redelivered or already sent
      continue;
    }
    if (top.first > now) {
      break;
    }
    std::string id = top.second;
    heap.pop();
    scheduled.erase(it);
    launch(id);
  }

  // Sleep until the next due delivery. With every slot busy, finish() calls pump() instead.
  if (heap.empty() || in_flight.size() >= options.max_in_flight) {
    loop->wake.cancel();
    return;
  }
  std::uint64_t due = heap.top().first;
  loop->wake.expires_after(std::chrono::milliseconds(due > now ? due - now : 0));
  loop->wake.async_wait([this](ErrorCode ec) {
    if (ec) {
      return;  // re-armed or stopped
    }
    pump();
  });
}

void Outbox::Impl::launch(const std::string& id) {
  in_flight.insert(id);
  asio::co_spawn(loop->ioc, attempt(id), [this, id](std::exception_ptr e) {
    if (!e) {
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log->error("event=attempt_crashed id={} error=\"{}\"", id, ex.what());
    } catch (...) {
      log->error("event=attempt_crashed id={}", id);
    }
    abandon(id);
  });
}

asio::awaitable<Outcome> Outbox::Impl::deliver(const Delivery& d) {
  // The secret is read at each attempt, so a rotated secret signs the retries.
  std::string secret;
  {
    auto snapshot = catalog.snapshot();
    const links::ProgramView* program = snapshot->program(d.program);
    if (program == nullptr) {
      co_return Outcome{.error = "unknown program", .permanent = true};
    }
    secret = program->webhook_secret;
  }
  auto target = parse_target(d.url);
  if (!target) {
    co_return Outcome{.error = "invalid url", .permanent = true};
  }

  std::uint64_t timestamp_s = now_ms() / 1000;
  std::string signature = sign(secret, d.id, timestamp_s, d.body);
  OutgoingRequest request{
      .id = d.id, .timestamp_s = timestamp_s, .signature = signature, .body = d.body};
  co_return co_await send_once(tls, *target, request, std::chrono::milliseconds(options.timeout_ms),
                               options.allow_private);
}

asio::awaitable<void> Outbox::Impl::attempt(std::string id) {
  auto stored = store.get_doc(delivery_key(id));
  std::optional<Delivery> d;
  if (stored && *stored) {
    d = decode(**stored);
  }
  if (!d) {
    // Without its document there is nothing to send; the delivery leaves the schedule.
    log->error("event=delivery_unreadable id={}", id);
    in_flight.erase(id);
    pump();
    co_return;
  }

  AttemptLog entry;
  entry.at_ms = now_ms();
  auto started = std::chrono::steady_clock::now();
  Outcome outcome = co_await deliver(*d);
  entry.duration_ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - started)
                                     .count());
  entry.status = outcome.status;
  entry.error = outcome.error;
  finish(std::move(*d), outcome, std::move(entry));
}

void Outbox::Impl::finish(Delivery d, const Outcome& outcome, AttemptLog entry) {
  attempts.fetch_add(1, std::memory_order_relaxed);
  d.attempts.push_back(std::move(entry));
  if (d.attempts.size() > kMaxAttemptsKept) {
    d.attempts.erase(
        d.attempts.begin(),
        d.attempts.begin() + static_cast<std::ptrdiff_t>(d.attempts.size() - kMaxAttemptsKept));
  }
  ++d.attempt_count;
  ++d.tries;

  // The next state: delivered, failed for good, or pending with a later attempt.
  std::uint64_t now = now_ms();
  if (outcome.status >= 200 && outcome.status < 300) {
    d.state = State::kDelivered;
    d.next_attempt_ms = 0;
    delivered.fetch_add(1, std::memory_order_relaxed);
    log->debug("event=delivered id={} program={} type={} attempts={}", d.id, d.program, d.type,
               d.attempt_count);
  } else {
    failed_attempts.fetch_add(1, std::memory_order_relaxed);
    std::string why =
        outcome.error.empty() ? "status " + std::to_string(outcome.status) : outcome.error;
    if (outcome.permanent) {
      give_up(d, why);
    } else if (now - std::min(now, d.retry_from_ms) >= options.give_up_after_ms) {
      give_up(d, "given up");
    } else {
      d.next_attempt_ms = now + backoff_ms(d.tries);
      if (std::uint64_t n = attempt_warn.hit(); n != 0) {
        log->warn("event=attempt_failed id={} program={} tries={} error=\"{}\" count={}", d.id,
                  d.program, d.tries, why, n);
      }
    }
  }

  // A redeliver that arrived during the attempt wins over its outcome.
  if (redeliver_after.erase(d.id) != 0) {
    d.state = State::kPending;
    d.next_attempt_ms = now;
    d.retry_from_ms = now;
    d.tries = 0;
    d.failure.clear();
  }

  persist(d);
  index_put(d);
  in_flight.erase(d.id);
  if (d.state == State::kPending) {
    schedule(d.id, d.next_attempt_ms);
  }
  pump();
}

void Outbox::Impl::give_up(Delivery& d, const std::string& reason) {
  d.state = State::kFailed;
  d.next_attempt_ms = 0;
  d.failure = reason;
  given_up.fetch_add(1, std::memory_order_relaxed);
  log->error("event=delivery_failed id={} program={} type={} attempts={} reason=\"{}\"", d.id,
             d.program, d.type, d.attempt_count, reason);
}

void Outbox::Impl::abandon(const std::string& id) {
  in_flight.erase(id);
  redeliver_after.erase(id);
  schedule(id, now_ms() + options.first_retry_ms);
  pump();
}

std::uint64_t Outbox::Impl::backoff_ms(std::uint32_t tries) {
  std::uint64_t step = std::max<std::uint64_t>(options.first_retry_ms, 1);
  for (std::uint32_t i = 1; i < tries && step < options.max_retry_ms; ++i) {
    step *= 2;
  }
  step = std::min(step, options.max_retry_ms);
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  return std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(static_cast<double>(step) * jitter(rng)));
}

void Outbox::Impl::persist(const Delivery& d) {
  // Not synced: a crash can lose the last attempt's record, and then at worst repeats a
  // delivery, which at-least-once allows.
  store::Store::DocBatch batch;
  batch.puts.emplace_back(delivery_key(d.id), encode(d));
  if (auto ec = store.write(batch, false)) {
    log->error("event=delivery_write_failed id={} error=\"{}\"", d.id, ec.message());
  }
}

Outbox::Outbox(store::Store& store, const links::Catalog& catalog, OutboxOptions options)
    : impl_(std::make_unique<Impl>(store, catalog, options)) {
  ErrorCode ec;
  impl_->tls.set_default_verify_paths(ec);
  if (ec) {
    impl_->log->warn("event=no_default_ca_paths error=\"{}\"", ec.message());
  }
  impl_->tls.set_verify_mode(asio::ssl::verify_peer, ec);
  impl_->load_index();
}

Outbox::~Outbox() {
  stop();
}

std::vector<std::string> Outbox::stage(store::Store::DocBatch& batch,
                                       const std::vector<Event>& events) {
  std::vector<std::string> ids;
  auto snapshot = impl_->catalog.snapshot();
  std::uint64_t now = now_ms();
  for (const Event& e : events) {
    const links::ProgramView* program = snapshot->program(e.program);
    if (program == nullptr || program->webhook_url.empty()) {
      continue;
    }
    json::object body;
    body["type"] = e.type;
    body["timestamp"] = format_rfc3339(now);
    body["data"] = e.data;

    Delivery d;
    d.id = random_token("msg_", kIdChars);
    d.program = e.program;
    d.type = e.type;
    d.url = program->webhook_url;
    d.body = json::serialize(body);
    d.created_ms = now;
    d.next_attempt_ms = now;
    d.retry_from_ms = now;
    batch.puts.emplace_back(delivery_key(d.id), encode(d));
    ids.push_back(std::move(d.id));
  }
  return ids;
}

void Outbox::committed(const std::vector<std::string>& ids) {
  if (ids.empty()) {
    return;
  }
  std::lock_guard lock(impl_->mutex);
  if (!impl_->runtime) {
    // Stopped: index them now so list() shows them; start() schedules what the index holds.
    for (const std::string& id : ids) {
      impl_->index_stored(id);
    }
    return;
  }
  impl_->incoming.insert(impl_->incoming.end(), ids.begin(), ids.end());
  impl_->post_drain_locked();
}

ErrorCode Outbox::emit(const std::vector<Event>& events) {
  store::Store::DocBatch batch;
  std::vector<std::string> ids = stage(batch, events);
  if (ids.empty()) {
    return {};
  }
  if (auto ec = impl_->store.write(batch, true)) {
    return ec;
  }
  committed(ids);
  return {};
}

void Outbox::start() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  if (m.runtime) {
    return;
  }
  m.runtime = std::make_unique<Impl::Runtime>();
  m.loop = m.runtime.get();

  // The delivery thread is not running, so its state can be rebuilt here.
  m.heap = {};
  m.scheduled.clear();
  m.in_flight.clear();
  m.redeliver_after.clear();
  std::size_t pending = 0;
  {
    std::lock_guard index_lock(m.index_mutex);
    for (const auto& [id, summary] : m.by_id) {
      if (summary.state == State::kPending) {
        m.schedule(id, summary.next_attempt_ms);
        ++pending;
      }
    }
  }
  m.drain_posted = false;
  m.post_drain_locked();
  m.runtime->thread = std::thread([&m, rt = m.runtime.get()] { m.run_thread(*rt); });
  m.log->info("event=started pending={} allow_private={} max_in_flight={} timeout_ms={}", pending,
              m.options.allow_private, m.options.max_in_flight, m.options.timeout_ms);
}

void Outbox::stop() {
  Impl& m = *impl_;
  std::unique_ptr<Impl::Runtime> rt;
  {
    std::lock_guard lock(m.mutex);
    if (!m.runtime) {
      return;
    }
    rt = std::move(m.runtime);
    rt->ioc.stop();
    m.drain_posted = false;
  }
  rt->thread.join();
  std::size_t abandoned = 0;
  {
    std::lock_guard lock(m.mutex);
    abandoned = m.in_flight.size();
    m.loop = nullptr;
    m.in_flight.clear();
  }

  // Destroying the io_context ends the attempts in flight; their documents stay pending.
  rt.reset();
  m.log->info("event=stopped in_flight_abandoned={}", abandoned);
}

std::pair<unsigned, std::string> Outbox::list(std::string_view program,
                                              std::string_view status,
                                              std::size_t page,
                                              std::size_t per_page) const {
  std::optional<State> state;
  if (!status.empty()) {
    state = parse_state(status);
    if (!state) {
      return {400,
              reply_error(400, "invalid_field", "status must be pending, delivered or failed")};
    }
  }
  page = std::max<std::size_t>(page, 1);
  per_page = std::clamp<std::size_t>(per_page == 0 ? 20 : per_page, 1, kMaxPerPage);
  std::size_t skip = (page - 1) > SIZE_MAX / per_page ? SIZE_MAX : (page - 1) * per_page;

  // Newest first from the index; documents are read only for the page.
  std::vector<std::string> ids;
  std::size_t total = 0;
  {
    std::lock_guard lock(impl_->index_mutex);
    for (auto it = impl_->by_created.rbegin(); it != impl_->by_created.rend(); ++it) {
      const Impl::Summary& s = impl_->by_id.at(it->second);
      if ((!program.empty() && s.program != program) || (state && s.state != *state)) {
        continue;
      }
      if (total >= skip && ids.size() < per_page) {
        ids.push_back(it->second);
      }
      ++total;
    }
  }

  json::array deliveries;
  for (const std::string& id : ids) {
    auto stored = impl_->store.get_doc(delivery_key(id));
    if (!stored) {
      return {503, reply_error(503, "storage", "deliveries could not be read")};
    }
    if (*stored) {
      if (auto d = decode(**stored)) {
        deliveries.push_back(to_api_json(*d));
      }
    }
  }
  json::object out;
  out["deliveries"] = std::move(deliveries);
  out["page"] = page;
  out["per_page"] = per_page;
  out["total"] = total;
  return {200, json::serialize(out)};
}

std::pair<unsigned, std::string> Outbox::redeliver(std::string_view id) {
  std::string key(id);
  bool known = false;
  {
    std::lock_guard lock(impl_->index_mutex);
    known = impl_->by_id.contains(key);
  }
  if (!known) {
    // Committed moments ago and not yet read back by the delivery thread, or unknown.
    auto stored = impl_->store.get_doc(delivery_key(id));
    if (!stored) {
      return {503, reply_error(503, "storage", "the delivery could not be read")};
    }
    if (!*stored || id.empty()) {
      return {404, reply_error(404, "not_found", "no delivery with this id")};
    }
  }

  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->runtime) {
      impl_->redeliveries.push_back(key);
      impl_->post_drain_locked();
    } else {
      (void)impl_->reset_for_redelivery(key);  // start() schedules it from the index
    }
  }
  json::object out;
  out["id"] = key;
  out["state"] = "pending";
  return {202, json::serialize(out)};
}

OutboxStats Outbox::stats() const {
  OutboxStats s;
  s.delivered = impl_->delivered.load(std::memory_order_relaxed);
  s.attempts = impl_->attempts.load(std::memory_order_relaxed);
  s.failed_attempts = impl_->failed_attempts.load(std::memory_order_relaxed);
  s.given_up = impl_->given_up.load(std::memory_order_relaxed);
  std::lock_guard lock(impl_->index_mutex);
  s.pending = impl_->count_by_state[static_cast<int>(State::kPending)];
  return s;
}

}  // namespace earnd::webhooks
