// earnd: wiring only. Reads the configuration, opens storage, builds the modules, serves until
// SIGTERM or SIGINT, then drains and stores every accepted click before exiting 0.

#include <atomic>
#include <csignal>
#include <iostream>
#include <unordered_set>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "earnd/attribution/conversions.h"
#include "earnd/cluster/node.h"
#include "earnd/common/time.h"
#include "earnd/config/config.h"
#include "earnd/http/server.h"
#include "earnd/ingest/bot_classifier.h"
#include "earnd/ingest/pipeline.h"
#include "earnd/ingest/sink.h"
#include "earnd/links/catalog.h"
#include "earnd/log/log.h"
#include "earnd/metrics/metrics.h"
#include "earnd/rewards/ledger.h"
#include "earnd/rewards/rules.h"
#include "earnd/store/store.h"
#include "earnd/webhooks/outbox.h"

namespace {

struct Flags {
  std::string config_file;
  std::string data_dir;
  std::string public_listen;
  std::string admin_listen;
  std::string durability;
  std::string cluster;  // NATS URLs: scale-out mode (docs/scale-out.md)
  std::string role;
};

earnd::config::Config load_config(const Flags& f) {
  using namespace earnd::config;
  Config c = f.config_file.empty() ? Config{} : load_file(f.config_file);
  apply_environment(c);
  if (!f.data_dir.empty()) {
    c.storage.data_dir = f.data_dir;
  }
  if (!f.public_listen.empty()) {
    c.server.public_listen = f.public_listen;
  }
  if (!f.admin_listen.empty()) {
    c.server.admin_listen = f.admin_listen;
  }
  if (!f.durability.empty()) {
    c.storage.durability = f.durability == "async" ? Durability::kAsync : Durability::kGroup;
  }
  validate(c);
  return c;
}

// The visitor-hash key: from the config, or made at the first start and kept in the store so
// that hashes stay comparable across restarts.
// Scale-out mode: the nodes hash visitors with one secret (the first node's, kept in the
// cluster), or a visitor's clicks on two edges would land in two shards. Asked once, at a node's
// first start in cluster mode (which therefore needs the cluster); kept locally afterwards, so
// later starts do not wait for NATS. A secret set in the config is the operator's choice and is
// used as it is (it must then be the same on every node).
void agree_visitor_secret(const earnd::config::Config& c,
                          earnd::store::Store& store,
                          earnd::cluster::Node& node) {
  constexpr std::string_view kAgreed = "cl/visitor_secret_agreed";
  if (!c.clicks.visitor_secret.empty()) {
    return;
  }
  if (auto done = store.get_doc(kAgreed); done && *done) {
    return;
  }
  std::string own = store.load_or_create_secret("visitor_secret");
  auto agreed = node.agree_secret("visitor_secret", own, c.cluster.join_timeout_ms);
  if (!agreed) {
    throw earnd::StartupError(
        "cluster: could not agree on the visitor secret with the cluster within " +
        std::to_string(c.cluster.join_timeout_ms) +
        " ms (is NATS reachable?); a node's first start in cluster mode needs the cluster, or "
        "set clicks.visitor_secret to one value on every node");
  }
  if (*agreed != own) {
    if (auto ec = store.put_meta("s/visitor_secret", *agreed)) {
      throw earnd::StartupError("cannot store the cluster's visitor secret: " + ec.message());
    }
  }
  if (auto ec = store.write_docs({{std::string(kAgreed), "1"}}, true)) {
    throw earnd::StartupError("cannot store the cluster's visitor secret: " + ec.message());
  }
}

std::string visitor_secret(const earnd::config::Config& c, earnd::store::Store& store) {
  return c.clicks.visitor_secret.empty() ? store.load_or_create_secret("visitor_secret")
                                         : c.clicks.visitor_secret;
}

std::string base_url(const earnd::config::Config& c, const std::string& bound_public) {
  if (!c.server.public_base_url.empty()) {
    return c.server.public_base_url;
  }
  std::string host =
      bound_public.starts_with("0.0.0.0:") ? "127.0.0.1" + bound_public.substr(7) : bound_public;
  return "http://" + host;
}

int serve(const earnd::config::Config& cfg, const Flags& flags) {
  using namespace earnd;
  auto log = log::get("server");
  log->info("event=starting version=0.1.0 data_dir=\"{}\" durability={} io_threads={}",
            cfg.storage.data_dir,
            cfg.storage.durability == config::Durability::kGroup ? "group" : "async",
            cfg.server.io_threads);

  auto store = store::Store::open({.data_dir = cfg.storage.data_dir,
                                   .block_cache_mb = cfg.storage.block_cache_mb,
                                   .min_free_bytes = std::uint64_t{cfg.storage.min_free_mb} << 20});
  auto bots = ingest::BotClassifier::from_embedded();
  metrics::Metrics metrics;
  std::vector<std::string> reasons;
  for (int i = 0; i < kReasonCount; ++i) {
    auto n = reason_name(static_cast<ClickReason>(i));
    reasons.emplace_back(n.empty() ? "human" : n);
  }
  metrics.set_reason_names(std::move(reasons));

  // The public base URL names the bound port, which is known only after binding; the catalog
  // reads it when it forms referrer URLs, so it is built with the configured value or the
  // listen address and the port is fixed up below when 0 was asked for.
  auto [pub_host, pub_port] = config::split_host_port(cfg.server.public_listen);
  ingest::StoreSink sink(*store);
  // Scale-out mode: clicks go to the cluster node's spool (and the local index) instead.
  std::unique_ptr<cluster::Node> node;
  const std::string& cluster_urls = flags.cluster.empty() ? cfg.cluster.urls : flags.cluster;
  if (!cluster_urls.empty()) {
    const auto& k = cfg.cluster;
    cluster::ClusterOptions co{.urls = cluster::split_urls(cluster_urls),
                               .shard_count = cfg.clicks.shard_count};
    auto role = cluster::parse_role(flags.role.empty() ? k.role : flags.role);
    if (!role) {
      throw StartupError("--role must be edge, worker or both, not \"" + flags.role + "\"");
    }
    co.role = *role;
    co.replicas = k.replicas;
    co.stream_max_age_s = std::uint64_t{k.stream_max_age_days} * 86'400;
    co.stream_max_bytes = k.stream_max_bytes;
    co.forward_batch = k.forward_batch;
    co.ack_wait_ms = k.ack_wait_ms;
    co.lease_ttl_s = k.lease_ttl_s;
    co.drain_timeout_ms = k.drain_timeout_ms;
    co.click_wait_ms = k.click_wait_ms;
    co.consumer_pending_bytes = std::uint64_t{k.consumer_pending_mb} << 20;
    co.spool_keep_s = k.spool_keep_s;
    co.duplicate_window_s = k.duplicate_window_s;
    node = std::make_unique<cluster::Node>(std::move(co), *store, metrics);
    agree_visitor_secret(cfg, *store, *node);
  }
  // The pipeline's writer and admin imports (POST /v1/import/clicks) share the sink.
  ingest::SerializedSink click_sink(node ? node->sink() : static_cast<ingest::ClickSink&>(sink));
  // click.first: a referrer's first stored human click, announced once. The set of referrers
  // already announced is kept in the docs family and loaded here; only the writer thread
  // touches it afterwards.
  std::atomic<webhooks::Outbox*> outbox_for_clicks{nullptr};
  auto announced = std::make_shared<std::unordered_set<std::string>>();
  store->scan_docs("fc/", [&](std::string_view key, std::string_view) {
    announced->emplace(key.substr(3));
    return true;
  });
  auto on_stored = [&outbox_for_clicks, announced, st = store.get(), log](const ClickRecord& c) {
    // Pairs with the release store once the outbox has started.
    webhooks::Outbox* outbox = outbox_for_clicks.load(std::memory_order_acquire);
    if (c.reason != ClickReason::kHuman || outbox == nullptr ||
        !announced->insert(c.referrer_id).second) {
      return;
    }
    store::Store::DocBatch batch;
    batch.puts.emplace_back("fc/" + c.referrer_id, std::to_string(c.ts_ms));
    auto ids = outbox->stage(batch, {{c.program,
                                      "click.first",
                                      {{"referrer_id", c.referrer_id},
                                       {"link_code", c.code},
                                       {"click_id", c.id.to_string()},
                                       {"ts", format_rfc3339(c.ts_ms)}}}});
    if (st->write(batch, false)) {
      log->error("event=first_click_write_failed");
      return;
    }
    outbox->committed(ids);
  };
  ingest::Pipeline pipeline(
      {.sync_each_batch = cfg.storage.durability == config::Durability::kGroup,
       .max_batch = cfg.storage.max_batch,
       .queue_capacity = cfg.storage.queue_capacity,
       .flush_interval_ms = cfg.storage.async_flush_interval_ms,
       .velocity_limit = cfg.clicks.velocity_limit,
       .velocity_window_ms = cfg.clicks.velocity_window_s * 1000,
       .dedupe_capacity = cfg.clicks.dedupe_capacity,
       .warn_interval_ms = cfg.log.warn_interval_ms,
       .on_stored = on_stored},
      click_sink, metrics, cfg.server.io_threads);
  metrics.add_gauge("earnd_ingest_queue_depth", "Clicks waiting for the writer.",
                    [&] { return static_cast<double>(pipeline.queue_depth()); });
  metrics.add_gauge("earnd_rocksdb_live_sst_bytes", "Bytes in live SST files.",
                    [&] { return static_cast<double>(store->live_sst_bytes()); });
  metrics.add_gauge("earnd_rocksdb_memtable_bytes", "Bytes in memtables.", [&] {
    return static_cast<double>(store->int_property("rocksdb.cur-size-all-mem-tables"));
  });
  metrics.add_gauge("earnd_rocksdb_estimated_keys", "Estimated keys over all families.", [&] {
    return static_cast<double>(store->int_property("rocksdb.estimate-num-keys"));
  });
  pipeline.start();

  std::string secret = visitor_secret(cfg, *store);
  std::unique_ptr<links::Catalog> catalog;
  std::unique_ptr<rewards::Ledger> ledger;
  std::unique_ptr<webhooks::Outbox> outbox;
  std::unique_ptr<attribution::ConversionService> conversions;
  std::unique_ptr<http::Server> server;
  {
    // Bind first with a placeholder catalog base, then build the catalog with the real URL.
    std::string configured_base = cfg.server.public_base_url;
    std::string base =
        configured_base.empty() ? base_url(cfg, cfg.server.public_listen) : configured_base;
    catalog = std::make_unique<links::Catalog>(*store, base);
    catalog->set_rules_validator(
        [](const boost::json::value& rules) { return rewards::validate_rules(rules); });
    ledger = std::make_unique<rewards::Ledger>(*store, *catalog);
    const auto& w = cfg.webhooks;
    outbox = std::make_unique<webhooks::Outbox>(
        *store, *catalog,
        webhooks::OutboxOptions{.allow_private = w.allow_private,
                                .first_retry_ms = w.first_retry_ms,
                                .max_retry_ms = w.max_retry_ms,
                                .give_up_after_ms = std::uint64_t{w.give_up_after_h} * 3'600'000,
                                .timeout_ms = w.timeout_ms,
                                .max_in_flight = w.max_in_flight});
    catalog->set_event_hook([o = outbox.get(), log](const std::string& program,
                                                    const std::string& type,
                                                    boost::json::object data) {
      if (auto ec = o->emit({{program, type, std::move(data)}})) {
        log->error("event=webhook_stage_failed type={} error=\"{}\"", type, ec.message());
      }
    });
    outbox->start();
    outbox_for_clicks.store(outbox.get(), std::memory_order_release);
    attribution::ConversionOptions conversion_options{.sync = cfg.storage.durability ==
                                                              config::Durability::kGroup};
    if (node) {
      catalog->set_meta_hook(
          [n = node.get()](const auto& records) { n->on_meta_written(records); });
      conversion_options.await_click = [n = node.get()](const ClickId& id) {
        return n->await_click(id);
      };
      conversion_options.claim = [n = node.get()](
                                     std::string_view program, std::string_view event_id,
                                     std::string_view answer, std::string_view request) {
        return n->claim(program, event_id, answer, request);
      };
      node->start(*catalog);
    }
    conversions = std::make_unique<attribution::ConversionService>(
        *store, *catalog, *ledger, outbox.get(), std::move(conversion_options));
    if (node) {
      // Outcomes this node claimed in its last run but did not write (it died in between):
      // processed again before any new request, they are written now (the claim is ours).
      std::uint64_t since = now_ms() > 600'000 ? now_ms() - 600'000 : 0;
      if (auto v = store->get_doc(attribution::kLastCommitKey); v && *v) {
        std::uint64_t last = std::strtoull((*v)->c_str(), nullptr, 10);
        since = last > 60'000 ? last - 60'000 : 0;
      }
      std::vector<attribution::ConversionRequest> redo;
      for (const auto& text : node->own_claims_since(since)) {
        if (auto r = attribution::request_from_json(text)) {
          redo.push_back(std::move(*r));
        }
      }
      std::size_t finished = 0;
      if (!redo.empty()) {
        for (const auto& r : conversions->process(redo)) {
          finished += r.status == 201 ? 1 : 0;
        }
      }
      log->info("event=claim_recovery checked={} finished={}", redo.size(), finished);
    }
    server = std::make_unique<http::Server>(http::Services{
        .config = cfg,
        .catalog = *catalog,
        .store = *store,
        .pipeline = pipeline,
        .bots = *bots,
        .metrics = metrics,
        .conversions = *conversions,
        .ledger = *ledger,
        .outbox = outbox.get(),
        .visitor_secret = secret,
        .import_sink = &click_sink,
        .cluster_status = node ? std::function<std::string()>([n = node.get()] {
          return cluster::status_json(n->status(), n->role(), n->shard_count());
        })
                               : std::function<std::string()>(),
        .cluster_step_down =
            node ? std::function<std::optional<std::string>(std::string_view)>(
                       [n = node.get()](std::string_view server) { return n->step_down(server); })
                 : std::function<std::optional<std::string>(std::string_view)>(),
        .cluster_replay = node ? std::function<void(std::uint64_t)>(
                                     [n = node.get()](std::uint64_t ms) { n->replay_since(ms); })
                               : std::function<void(std::uint64_t)>(),
        .cluster_held =
            node ? std::function<std::vector<bool>()>([n = node.get()] { return n->held(); })
                 : std::function<std::vector<bool>()>(),
        .cluster_applied_seq =
            node ? std::function<std::uint64_t()>([n = node.get()] { return n->applied_seq(); })
                 : std::function<std::uint64_t()>(),
    });
    if (configured_base.empty() && pub_port == 0) {
      catalog->set_public_base_url(base_url(cfg, server->public_address()));
    }
  }
  log->info("event=listening public={} admin={} bot_patterns={} fallback_patterns={}",
            server->public_address(), server->admin_address(), bots->pattern_count(),
            bots->fallback_count());

  boost::asio::io_context signals_ctx;
  boost::asio::signal_set signals(signals_ctx, SIGTERM, SIGINT);
  int signal_number = 0;
  signals.async_wait([&](const boost::system::error_code&, int n) { signal_number = n; });
  signals_ctx.run();

  log->info("event=stopping signal={}", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  server->shutdown();
  pipeline.stop();
  if (node) {
    // Leases are kept: the held shards saved here are what an offline export of this data
    // directory lists, so releasing them would leave a stopped cluster's exports empty. The
    // other workers take this one's shards after the lease TTL.
    node->stop();
  }
  log->info("event=stopped clicks_stored={} clicks_dropped={}", metrics.clicks_stored.load(),
            metrics.clicks_dropped_queue_full.load() + metrics.clicks_dropped_storage.load());
  server.reset();
  outbox->stop();
  conversions.reset();
  catalog.reset();
  node.reset();
  store.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"earnd: referral click and attribution engine"};
  Flags flags;
  app.add_option("--config", flags.config_file, "TOML configuration file");
  app.add_option("--data-dir", flags.data_dir, "RocksDB data directory");
  app.add_option("--public-listen", flags.public_listen, "public listener HOST:PORT");
  app.add_option("--admin-listen", flags.admin_listen, "admin listener HOST:PORT");
  app.add_option("--durability", flags.durability, "group or async")
      ->check(CLI::IsMember({"group", "async"}));
  app.add_option("--cluster", flags.cluster,
                 "scale-out mode: NATS JetStream URLs, nats://HOST:PORT[,...]");
  app.add_option("--role", flags.role, "scale-out role: edge, worker or both (default)")
      ->check(CLI::IsMember({"edge", "worker", "both"}));
  CLI11_PARSE(app, argc, argv);

  try {
    earnd::log::init("info");
    auto cfg = load_config(flags);
    earnd::log::init(cfg.log.level);
    return serve(cfg, flags);
  } catch (const earnd::StartupError& e) {
    earnd::log::get("server")->error("event=startup_failed error=\"{}\"", e.what());
    return 1;
  } catch (const std::exception& e) {
    earnd::log::get("server")->error("event=fatal error=\"{}\"", e.what());
    return 1;
  }
}
