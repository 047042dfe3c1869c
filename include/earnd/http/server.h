#pragma once

// earnd's HTTP front: the public listener (redirects, health, conversions) served by one
// io_context per I/O thread, each with its own SO_REUSEPORT acceptor so that a connection stays
// on one thread from accept to close; and the admin listener (admin API, /metrics) on a thread
// of its own, so that slow admin writes never delay a redirect.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "earnd/config/config.h"

namespace earnd::attribution {
class ConversionService;
}

namespace earnd::rewards {
class Ledger;
}

namespace earnd::webhooks {
class Outbox;
}

namespace earnd::ingest {
class BotClassifier;
class Pipeline;
class ClickSink;
}  // namespace earnd::ingest

namespace earnd::links {
class Catalog;
}

namespace earnd::metrics {
class Metrics;
}

namespace earnd::store {
class Store;
}

namespace earnd::http {

// Everything the request handlers use. All members must outlive the Server.
struct Services {
  const config::Config& config;
  links::Catalog& catalog;
  store::Store& store;
  ingest::Pipeline& pipeline;
  const ingest::BotClassifier& bots;
  metrics::Metrics& metrics;
  attribution::ConversionService& conversions;
  rewards::Ledger& ledger;
  webhooks::Outbox* outbox;  // null when webhooks are off
  std::string visitor_secret;
  // Where POST /v1/import/clicks writes (the pipeline's sink, shared under a lock); null: the
  // route answers 404.
  ingest::ClickSink* import_sink = nullptr;
  // Scale-out mode only: this node's cluster status as a JSON object (GET /v1/cluster/status).
  // Empty in single-node mode, where that route answers 404 cluster_off.
  std::function<std::string()> cluster_status = {};
  // Scale-out mode only: POST /v1/cluster/drain, moving stream leaders off a NATS server
  // (cluster::Node::step_down); nullopt when the cluster cannot be reached.
  std::function<std::optional<std::string>(std::string_view)> cluster_step_down = {};
  // Scale-out mode only: POST /v1/cluster/replay (cluster::Node::replay_since).
  std::function<void(std::uint64_t)> cluster_replay = {};
  // Scale-out mode only: the shards this worker holds (index = shard), and the last stream
  // sequence in its index, for POST /v1/cluster/attribute.
  std::function<std::vector<bool>()> cluster_held = {};
  std::function<std::uint64_t()> cluster_applied_seq = {};
};

class Server {
 public:
  // Binds both listeners (throws StartupError when a port is taken) and starts the I/O threads
  // and the admin thread. The pipeline must have lanes for config.server.io_threads threads and
  // be started by the caller.
  explicit Server(Services services);
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound addresses, "host:port" (the real port when 0 was asked for).
  std::string public_address() const;
  std::string admin_address() const;

  // Stops accepting, lets requests in flight finish (up to shutdown_grace_ms), closes idle
  // connections and joins the threads. Blocks; call once, from a thread that is not an I/O
  // thread. After it returns no thread submits clicks, so the pipeline can be stopped.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace earnd::http
