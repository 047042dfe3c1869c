// Scale-out mode against the 3-node NATS JetStream fixture of ../shared/cluster (started by the
// ctest fixture `nats`, see CMakeLists.txt): two real earnd processes with --cluster on loopback,
// links shared between them, a conversion on one edge for a click made on the other, and NATS
// servers killed by pid under load (the stream's leader, a follower, and the server an edge is
// connected to) with every click answered 302 checked to be in exactly one worker's index.
// The stream and buckets persist across the tests of one run, so each test uses its own
// program and checks only its own clicks. Run through ctest (which starts the fixture):
// ctest -L cluster.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <nats/nats.h>

#include "../integration/earnd_process.h"
#include "../integration/http_client.h"
#include "earnd/cluster/node.h"
#include "earnd/common/click_id.h"
#include "earnd/store/store.h"

namespace earnd::integration {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::string_view kAdminKey = "cluster-test-admin-key-0123456789";
constexpr std::string_view kUa = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36";

// The click stream read and changed directly through the NATS client library, as a test needs
// to: its last sequence, a message deleted, the click ids stored since a time.
class Stream {
 public:
  explicit Stream(const std::string& urls) {
    natsOptions* no = nullptr;
    natsOptions_Create(&no);
    auto list = earnd::cluster::split_urls(urls);
    std::vector<const char*> servers;
    for (const auto& u : list) {
      servers.push_back(u.c_str());
    }
    natsOptions_SetServers(no, servers.data(), static_cast<int>(servers.size()));
    natsOptions_SetTimeout(no, 2000);
    // Every server was just started: retry for a while rather than fail at once.
    natsStatus s = NATS_ERR;
    for (int attempt = 0; attempt < 50 && s != NATS_OK; ++attempt) {
      s = natsConnection_Connect(&nc_, no);
      if (s != NATS_OK) {
        std::this_thread::sleep_for(200ms);
      }
    }
    natsOptions_Destroy(no);
    if (s == NATS_OK) {
      jsOptions jo;
      jsOptions_Init(&jo);
      jo.Wait = 5000;
      s = natsConnection_JetStream(&js_, nc_, &jo);
    }
    if (s != NATS_OK) {
      error = natsStatus_GetText(s);
    }
  }

  ~Stream() { close(); }

  bool ok() const { return js_ != nullptr && error.empty(); }

  std::uint64_t last_seq() {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js_, "EARND_CLICKS", nullptr, &jerr) != NATS_OK) {
      return 0;
    }
    std::uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return last;
  }

  // The stream's duplicate window (Nats-Msg-Id), in seconds; false when it could not be set.
  bool set_duplicate_window(int seconds) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&si, js_, "EARND_CLICKS", nullptr, &jerr);
    if (s == NATS_OK) {
      si->Config->Duplicates = std::int64_t{seconds} * 1'000'000'000;
      jsStreamInfo* updated = nullptr;
      s = js_UpdateStream(&updated, js_, si->Config, nullptr, &jerr);
      if (updated != nullptr) {
        jsStreamInfo_Destroy(updated);
      }
      jsStreamInfo_Destroy(si);
    }
    if (s != NATS_OK) {
      error = natsStatus_GetText(s);
    }
    return s == NATS_OK;
  }

  // The stream deleted (whoever starts next creates it again); true when gone.
  bool drop() {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_DeleteStream(js_, "EARND_CLICKS", nullptr, &jerr);
    return s == NATS_OK || s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr;
  }

  // Every message removed; sequences go on from the last one.
  bool purge() {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    return js_PurgeStream(js_, "EARND_CLICKS", nullptr, &jerr) == NATS_OK;
  }

  bool remove(std::uint64_t seq) {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_DeleteMsg(js_, "EARND_CLICKS", seq, nullptr, &jerr);
    if (s != NATS_OK) {
      error = natsStatus_GetText(s);
    }
    return s == NATS_OK;
  }

  // Click id (text) -> times stored, over every message stored since `since`, up to the
  // stream's last sequence as of the call. The stream may just have been restarted: asked again
  // for up to 30 s.
  std::map<std::string, int> click_ids_since(std::chrono::system_clock::time_point since) {
    std::map<std::string, int> out;
    std::uint64_t last = 0;
    for (int attempt = 0; attempt < 150 && last == 0; ++attempt) {
      if ((last = last_seq()) == 0) {
        std::this_thread::sleep_for(200ms);
      }
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "EARND_CLICKS";
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartTime;
    so.Config.OptStartTime =
        std::chrono::duration_cast<std::chrono::nanoseconds>(since.time_since_epoch()).count();
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_SubscribeSync(&sub, js_, "earnd.clicks.>", nullptr, &so, &jerr);
    if (s != NATS_OK) {
      error = std::string("subscribe: ") + natsStatus_GetText(s);
      return out;
    }
    std::uint64_t seq = 0;
    while (seq < last) {
      natsMsg* m = nullptr;
      if ((s = natsSubscription_NextMsg(&m, sub, 5000)) != NATS_OK) {
        // Deleted messages at the end are never delivered: a pause after some were read is the
        // end; nothing at all is an error.
        if (s != NATS_TIMEOUT || out.empty()) {
          error = "read up to sequence " + std::to_string(seq) + " of " + std::to_string(last) +
                  ": " + natsStatus_GetText(s);
        }
        break;
      }
      jsMsgMetaData* md = nullptr;
      if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
        seq = md->Sequence.Stream;
        jsMsgMetaData_Destroy(md);
      }
      std::string_view data(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
      if (auto id = earnd::ClickId::from_key(data.substr(0, earnd::kClickIdBytes))) {
        char text[earnd::kClickIdTextLength];
        id->to_text(text);
        ++out[std::string(text, earnd::kClickIdTextLength)];
      }
      natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    return out;
  }

  void close() {
    if (js_ != nullptr) {
      jsCtx_Destroy(js_);
      js_ = nullptr;
    }
    if (nc_ != nullptr) {
      natsConnection_Destroy(nc_);
      nc_ = nullptr;
    }
  }

  std::string error;

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

// A JSON number as an integer; a non-fatal failure (and -1) for anything else.
std::int64_t num(const json::value& v) {
  if (v.is_int64())
    return v.get_int64();
  if (v.is_uint64())
    return static_cast<std::int64_t>(v.get_uint64());
  if (v.is_double())
    return static_cast<std::int64_t>(v.get_double());
  ADD_FAILURE() << "not a number: " << json::serialize(v);
  return -1;
}

const json::array& arr(const json::value& v) {
  static const json::array empty;
  if (!v.is_array()) {
    ADD_FAILURE() << "not an array: " << json::serialize(v);
    return empty;
  }
  return v.get_array();
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// One earnd node in scale-out mode, on its own data directory.
struct Node {
  // extra: more earnd flags, e.g. {"--role", "edge"}.
  Node(const std::string& name,
       const TempDir& dir,
       const std::string& urls,
       std::vector<std::string> extra = {})
      : data(dir.path() / name) {
    std::filesystem::create_directories(data);
    extra.insert(extra.begin(), {"--cluster", urls});
    process = std::make_unique<EarndProcess>(EarndOptions{
        .binary = std::filesystem::path(EARND_BIN_DIR) / "earnd",
        .data_dir = data / "db",
        .log_file = data / "earnd.log",
        .admin_key = std::string(kAdminKey),
        .extra_args = std::move(extra),
    });
  }

  HttpResponse admin(std::string_view method, std::string_view target, std::string_view body = {}) {
    HttpConnection c(process->admin_endpoint());
    Headers h{{"Authorization", "Bearer " + std::string(kAdminKey)}};
    if (!body.empty()) {
      h.emplace_back("Content-Type", "application/json");
    }
    return c.request(method, target, h, body);
  }

  json::object status() {
    auto r = admin("GET", "/v1/cluster/status");
    EXPECT_EQ(r.status, 200) << r.body;
    json::error_code ec;
    auto v = json::parse(r.body, ec);
    return !ec && v.is_object() ? v.as_object() : json::object();
  }

  // `earnctl export clicks --data-dir` (read-only, the server stopped): the click ids of the
  // shards this node's worker held.
  std::vector<std::string> exported_ids(const TempDir& scratch) {
    auto r = run_command({(std::filesystem::path(EARND_BIN_DIR) / "earnctl").string(), "export",
                          "clicks", "--data-dir", (data / "db").string()},
                         scratch.path(), 60s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> ids;
    std::istringstream in(r.out);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      ids.push_back(line.substr(0, line.find(',')));
    }
    return ids;
  }

  std::filesystem::path data;
  std::unique_ptr<EarndProcess> process;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    urls_ = EARND_TEST_NATS_URLS;
    nats_sh_ = EARND_TEST_NATS_SH;
    nats_base_ = EARND_TEST_NATS_BASE;
    ::setenv("NATS_PORT_OFFSET", EARND_TEST_NATS_OFFSET, 1);  // for nats-cluster.sh kill/start-node
    program_ = "c" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& c : program_) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    program_.erase(std::remove_if(program_.begin(), program_.end(),
                                  [](char c) {
                                    return !std::isalnum(static_cast<unsigned char>(c)) && c != '-';
                                  }),
                   program_.end());
    program_ = program_.substr(0, 40);
    code_ = "k" + std::to_string(::getpid() % 100000) + std::to_string(++counter_);
  }

  void TearDown() override {
    if (HasFailure()) {
      print_node_logs();
    }
    // Every NATS node up again for the next test, whatever this one did: all three at once when
    // all are down (one alone never becomes healthy), else each missing one (the script refuses
    // a node that runs, at once).
    if (nats("start").exit_code != 0) {
      for (const char* n : {"n1", "n2", "n3"}) {
        (void)nats("start-node", n);
      }
    }
    (void)click_stream_leader();  // and the stream led again (waits up to 20 s)
  }

  // What an operator would read after a failure: each node's warnings, errors and cluster
  // state changes (the scratch directory is gone after the test).
  void print_node_logs() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(scratch_.path(), ec)) {
      std::ifstream in(entry.path() / "earnd.log");
      std::string line;
      int printed = 0;
      while (std::getline(in, line) && printed < 200) {
        if (line.find("level=info") == std::string::npos ||
            line.find("event=cluster_stopped") != std::string::npos ||
            line.find("event=click_") != std::string::npos ||
            line.find("event=nats_") != std::string::npos) {
          std::printf("[ log %s ] %s\n", entry.path().filename().c_str(), line.c_str());
          ++printed;
        }
      }
    }
  }

  CommandResult nats(const std::string& verb, const std::string& node = {}) {
    std::vector<std::string> argv{"/bin/bash", nats_sh_, verb, nats_base_};
    if (!node.empty()) {
      argv.push_back(node);
    }
    return run_command(argv, scratch_.path(), 60s);
  }

  // The NATS server name ("n1".."n3") leading the click stream, from the monitor endpoints.
  std::string click_stream_leader() {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (int port : monitor_ports()) {
        auto r = run_command(
            {"/usr/bin/curl", "-fsS", "--max-time", "2",
             "http://127.0.0.1:" + std::to_string(port) + "/jsz?accounts=true&streams=true"},
            scratch_.path(), 5s);
        if (r.exit_code != 0) {
          continue;
        }
        json::error_code ec;
        auto v = json::parse(r.out, ec);
        if (ec || !v.is_object()) {
          continue;
        }
        const auto* accounts = v.as_object().if_contains("account_details");
        if (accounts == nullptr || !accounts->is_array()) {
          continue;
        }
        for (const auto& a : accounts->as_array()) {
          const auto* streams = a.as_object().if_contains("stream_detail");
          if (streams == nullptr || !streams->is_array()) {
            continue;
          }
          for (const auto& s : streams->as_array()) {
            const auto& so = s.as_object();
            if (so.at("name").as_string() != "EARND_CLICKS") {
              continue;
            }
            const auto* cl = so.if_contains("cluster");
            if (cl && cl->is_object() && cl->as_object().if_contains("leader")) {
              std::string leader(cl->as_object().at("leader").as_string());
              if (!leader.empty()) {
                return leader;
              }
            }
          }
        }
      }
      std::this_thread::sleep_for(200ms);
    }
    return {};
  }

  std::vector<int> monitor_ports() const {
    int offset = std::atoi(env("NATS_PORT_OFFSET").c_str());
    return {8222 + offset, 8223 + offset, 8224 + offset};
  }

  // The fixture's node name for a nats://127.0.0.1:PORT URL.
  std::string node_of_url(const std::string& url) const {
    int offset = std::atoi(env("NATS_PORT_OFFSET").c_str());
    auto port = std::atoi(url.substr(url.rfind(':') + 1).c_str()) - offset;
    return port >= 4222 && port <= 4224 ? "n" + std::to_string(port - 4221) : "";
  }

  // Starts both nodes, makes the test's program and link on a, and waits until b redirects it.
  void start_pair(Node& a, Node& b) {
    ASSERT_EQ(a.process->start(), "");
    ASSERT_EQ(b.process->start(), "");
    ASSERT_NO_FATAL_FAILURE(make_program(a));
    ASSERT_TRUE(await_link(b, 302, 5s)) << "a link made on node a did not redirect on node b";
  }

  void make_program(Node& on, std::string_view rewards = "[]") {
    auto r = on.admin("POST", "/v1/programs",
                      R"({"id":")" + program_ + R"(","name":"Cluster","currency":"USD",
                          "destination":"https://shop.example.com/","allowed_hosts":["shop.example.com"],
                          "attribution":{"model":"last_click","window_days":30,"cookie_days":30,"dedupe_minutes":60},
                          "rewards":)" +
                          std::string(rewards) + R"(,"hold_days":0})");
    ASSERT_EQ(r.status, 201) << r.body;
    program_key_ = std::string(json::parse(r.body).as_object().at("program_key").as_string());
    r = on.admin("POST", "/v1/programs/" + program_ + "/referrers",
                 R"({"external_id":"u_1","name":"Ana","code":")" + code_ + R"("})");
    ASSERT_EQ(r.status, 201) << r.body;
    referrer_id_ = std::string(json::parse(r.body).as_object().at("id").as_string());
  }

  // Waits until a link answers `status` on node; the time it took, or nullopt after the deadline.
  std::optional<std::chrono::milliseconds> await_link(Node& on,
                                                      int status,
                                                      std::chrono::milliseconds deadline) {
    auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < deadline) {
      HttpConnection c(on.process->public_endpoint());
      if (c.request("GET", "/r/" + code_, {{"User-Agent", std::string(kUa)}}).status == status) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
      }
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }

  // Clicks from `threads` connections over both nodes, `per_thread` each, calling at(n) when the
  // n-th acknowledged click (1-based) arrives; returns the ids answered 302.
  std::vector<std::string> load(
      Node& a, Node& b, int threads, int per_thread, const std::function<void(std::size_t)>& at) {
    std::mutex mu;
    std::vector<std::string> acked;
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        Node& n = t % 2 ? b : a;
        auto conn = std::make_unique<HttpConnection>(n.process->public_endpoint(), 5s);
        for (int i = 0; i < per_thread; ++i) {
          auto r = conn->request("GET", "/r/" + code_,
                                 {{"User-Agent", std::string(kUa) + " t" + std::to_string(t) + "-" +
                                                     std::to_string(i)}});
          if (r.status == 0) {
            conn = std::make_unique<HttpConnection>(n.process->public_endpoint(), 5s);
            continue;
          }
          auto loc = r.header("Location").value_or("");
          auto p = loc.find("earnd_cid=");
          if (r.status != 302 || p == std::string::npos) {
            continue;
          }
          std::string id = loc.substr(p + 10, 26);
          std::size_t nth;
          {
            std::lock_guard lock(mu);
            acked.push_back(id);
            nth = acked.size();
          }
          at(nth);
        }
      });
    }
    for (auto& t : ts) {
      t.join();
    }
    return acked;
  }

  // Stops both nodes (SIGTERM: spool and index drained), then checks that every acknowledged
  // click is in exactly one worker's export, and no click id appears twice anywhere.
  // Waits (at most 60 s) until no node has clicks in its spool and every worker among them has
  // applied the stream up to its last sequence: what a stop, then an export, may rely on.
  // With workers, also until their held shards cover all 64 once each: a worker of an earlier
  // test stays in the live set until its heartbeat is older than the lease TTL (10 s), and the
  // shards it would own are held by no one meanwhile, so their clicks would be in no export;
  // and after an outage of the lease bucket two workers can both count a shard as theirs until
  // the next lease round tells one it lost it, so both exports would list its clicks (a CI run
  // saw 8,668 such clicks right after the NATS servers came back).
  void wait_settled(std::initializer_list<Node*> nodes, bool workers = true) {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      bool settled = true;
      std::set<std::int64_t> held;
      std::size_t held_total = 0;  // with repeats: equal to held.size() when no two overlap
      bool any_worker = false;
      for (Node* n : nodes) {
        auto st = n->status();
        auto last = num(st["stream_last_seq"]);
        bool worker = st["role"].as_string() != "edge";
        any_worker = any_worker || worker;
        for (const auto& s : arr(st["held_shards"])) {
          held.insert(num(s));
          ++held_total;
        }
        settled = settled && num(st["spool_depth"]) == 0 &&
                  (!workers || !worker || (last > 0 && num(st["applied_seq"]) >= last));
      }
      settled = settled && (!workers || !any_worker || (held.size() == 64 && held_total == 64));
      if (settled) {
        return;
      }
      std::this_thread::sleep_for(200ms);
    }
    std::string states;
    for (Node* n : nodes) {
      states += " " + n->data.filename().string() + "=" + json::serialize(n->status());
    }
    ADD_FAILURE() << "the nodes did not settle within 60 s:" << states;
  }

  // For a failure's report: where each missing click is (in which node's index at all, and
  // whose held shards name its shard), so a loss in transit tells itself apart from a shard no
  // worker claimed.
  void explain_missing(Node& a,
                       Node& b,
                       const std::vector<std::string>& acked,
                       const std::map<std::string, int>& seen) {
    int shown = 0;
    for (const auto& text : acked) {
      if (seen.contains(text) || ++shown > 10) {
        continue;
      }
      auto id = ClickId::parse(text);
      if (!id) {
        ADD_FAILURE() << "unreadable click id " << text;
        continue;
      }
      std::string where;
      for (Node* n : {&a, &b}) {
        auto st = store::Store::open({.data_dir = (n->data / "db").string(),
                                      .mode = store::OpenMode::kReadOnly,
                                      .block_cache_mb = 8});
        auto have = st->get_click(*id);
        auto held = cluster::held_shards(*st);
        bool holds = held && id->shard() < held->size() && (*held)[id->shard()];
        where += " " + n->data.filename().string() + ":" +
                 (have && *have ? "indexed" : "not-indexed") + (holds ? ",holds-shard" : "");
      }
      std::printf("[ cluster ] missing %s shard %u:%s\n", text.c_str(), unsigned{id->shard()},
                  where.c_str());
    }
  }

  void expect_each_acked_click_once(Node& a, Node& b, const std::vector<std::string>& acked) {
    wait_settled({&a, &b});
    // Both at once: stopped one after the other, the second could outlive the first's lease
    // TTL and take its shards while the first's export still lists them.
    int rc_a = -1;
    std::thread stop_a([&] { rc_a = a.process->stop(30s); });
    EXPECT_EQ(b.process->stop(30s), 0);
    stop_a.join();
    EXPECT_EQ(rc_a, 0);
    std::map<std::string, int> seen;
    for (Node* n : {&a, &b}) {
      for (const auto& id : n->exported_ids(scratch_)) {
        ++seen[id];
      }
    }
    std::size_t missing = 0;
    std::size_t twice = 0;
    for (const auto& id : acked) {
      auto it = seen.find(id);
      if (it == seen.end()) {
        ++missing;
      }
    }
    for (const auto& [id, n] : seen) {
      twice += n > 1 ? 1 : 0;
    }
    if (missing > 0) {
      explain_missing(a, b, acked, seen);
    }
    EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged clicks";
    EXPECT_EQ(twice, 0u);
    std::printf(
        "[ cluster ] acknowledged %zu, in the workers' exports %zu (all tests' clicks), "
        "missing %zu, twice %zu\n",
        acked.size(), seen.size(), missing, twice);
  }

  // Two rounds under one load: the victim (picked again each round, as the cluster changes) is
  // killed after 500 and 1,700 acknowledged clicks and started again after 1,100 and at the end.
  void sales_through_two_edges(bool kill_b);

  void kill_under_load(const std::function<std::string(Node&, Node&)>& pick_victim) {
    Node a("a", scratch_, urls_);
    Node b("b", scratch_, urls_);
    ASSERT_NO_FATAL_FAILURE(start_pair(a, b));
    std::mutex mu;
    std::vector<std::string> victims;
    auto acked = load(a, b, 4, 600, [&](std::size_t n) {
      if (n != 500 && n != 1100 && n != 1700) {
        return;
      }
      std::lock_guard lock(mu);
      if (n == 1100) {
        auto r = nats("start-node", victims.back());
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return;
      }
      std::string victim = pick_victim(a, b);
      EXPECT_FALSE(victim.empty());
      auto r = nats("kill", victim);
      EXPECT_EQ(r.exit_code, 0) << r.err;
      victims.push_back(victim);
    });
    ASSERT_EQ(victims.size(), 2u);
    EXPECT_GT(acked.size(), 2000u);  // redirects kept answering through the kills
    ASSERT_EQ(nats("start-node", victims.back()).exit_code, 0);
    std::printf("[ cluster ] killed NATS servers %s then %s under load\n", victims[0].c_str(),
                victims[1].c_str());
    expect_each_acked_click_once(a, b, acked);
  }

  static inline int counter_ = 0;
  TempDir scratch_;
  std::string urls_, nats_sh_, nats_base_, program_, program_key_, code_, referrer_id_;
};

TEST_F(ClusterTest, LinksReachEveryEdgeAndAConversionFindsAClickMadeOnTheOtherEdge) {
  Node a("a", scratch_, urls_);
  Node b("b", scratch_, urls_);
  ASSERT_NO_FATAL_FAILURE(start_pair(a, b));

  // A visitor of its own (await_link clicked with kUa), so that no other click of the same
  // visitor can share its millisecond and win the last-click tie-break.
  HttpConnection c(b.process->public_endpoint());
  auto click = c.request("GET", "/r/" + code_, {{"User-Agent", std::string(kUa) + " buyer"}});
  ASSERT_EQ(click.status, 302);
  auto loc = click.header("Location").value_or("");
  std::string cid = loc.substr(loc.find("earnd_cid=") + 10, 26);
  HttpConnection ca(a.process->public_endpoint());
  char now[32];
  std::time_t t = std::time(nullptr);
  std::strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  std::string body = R"({"event_id":"ord_1","type":"sale","click_id":")" + cid +
                     R"(","amount_minor":1000,"currency":"USD","occurred_at":")" + now + R"("})";
  auto conv = ca.request(
      "POST", "/v1/conversions",
      {{"Authorization", "Bearer " + program_key_}, {"Content-Type", "application/json"}}, body);
  ASSERT_EQ(conv.status, 201) << conv.body;
  EXPECT_NE(conv.body.find(cid), std::string::npos) << "click " << cid << ": " << conv.body;
  // The same event posted to the other edge is the same outcome, answered as a duplicate.
  HttpConnection cb(b.process->public_endpoint());
  auto again = cb.request(
      "POST", "/v1/conversions",
      {{"Authorization", "Bearer " + program_key_}, {"Content-Type", "application/json"}}, body);
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_NE(again.body.find(cid), std::string::npos) << again.body;

  // Disabled on a, refused on b within a second.
  auto r = a.admin("PATCH", "/v1/links/" + code_, R"({"disabled":true})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto gone = await_link(b, 404, 1s);
  EXPECT_TRUE(gone) << "node b still redirects a link disabled on node a after 1 s";
  if (gone) {
    std::printf("[ cluster ] disabled link refused on the other edge after %lld ms\n",
                static_cast<long long>(gone->count()));
  }

  auto st = a.status();
  std::printf("[ cluster ] status of node a: %s\n", json::serialize(st).c_str());
  EXPECT_TRUE(st["connected"].as_bool());
  EXPECT_TRUE(st["ready"].as_bool());
  EXPECT_EQ(st["role"].as_string(), "both");
  EXPECT_EQ(num(st["shard_count"]), 64);
  // Two live workers share the 64 shards without overlap.
  auto deadline = std::chrono::steady_clock::now() + 20s;
  std::set<std::int64_t> held_a, held_b;
  while (std::chrono::steady_clock::now() < deadline) {
    held_a.clear();
    held_b.clear();
    auto sa = a.status();
    auto sb = b.status();
    for (const auto& s : arr(sa["held_shards"]))
      held_a.insert(num(s));
    for (const auto& s : arr(sb["held_shards"]))
      held_b.insert(num(s));
    if (held_a.size() + held_b.size() == 64 && !held_a.empty() && !held_b.empty()) {
      break;
    }
    std::this_thread::sleep_for(250ms);
  }
  std::set<std::int64_t> all(held_a);
  all.insert(held_b.begin(), held_b.end());
  EXPECT_EQ(all.size(), 64u);
  EXPECT_EQ(held_a.size() + held_b.size(), 64u) << "a shard held by both workers";
  EXPECT_EQ(a.process->stop(30s), 0);
  EXPECT_EQ(b.process->stop(30s), 0);

  // One visitor secret on both nodes (agreed through the cluster at each one's first start), so
  // a visitor's clicks on either edge get one visitor hash and land in one shard.
  auto secret_of = [](Node& n) {
    auto st = store::Store::open({.data_dir = (n.data / "db").string(),
                                  .mode = store::OpenMode::kReadOnly,
                                  .block_cache_mb = 8});
    auto v = st->get_meta("s/visitor_secret");
    return v && *v ? **v : std::string();
  };
  std::string secret_a = secret_of(a);
  EXPECT_FALSE(secret_a.empty());
  EXPECT_EQ(secret_a, secret_of(b)) << "the two nodes hash visitors with different secrets";
}

// Every NATS server down for a minute while both edges take paced traffic (about 200 clicks/s):
// every redirect is still answered 302 with a click id, the spools grow, and once the servers
// are back every acknowledged click reaches exactly one worker's export.
TEST_F(ClusterTest, AllNatsServersDownForAMinuteUnderLoadLosesNothing) {
  Node a("a", scratch_, urls_);
  Node b("b", scratch_, urls_);
  ASSERT_NO_FATAL_FAILURE(start_pair(a, b));

  const auto start = std::chrono::steady_clock::now();
  const auto down_at = start + 10s;
  const auto up_at = down_at + 60s;
  const auto end = up_at + 10s;
  std::mutex mu;
  std::vector<std::string> acked;
  std::atomic<int> refused{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      Node& n = t % 2 ? b : a;
      auto conn = std::make_unique<HttpConnection>(n.process->public_endpoint(), 5s);
      for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
        auto r = conn->request("GET", "/r/" + code_,
                               {{"User-Agent", std::string(kUa) + " o" + std::to_string(t) + "-" +
                                                   std::to_string(i)}});
        if (r.status == 0) {
          conn = std::make_unique<HttpConnection>(n.process->public_endpoint(), 5s);
          ++refused;
          continue;
        }
        auto loc = r.header("Location").value_or("");
        auto p = loc.find("earnd_cid=");
        if (r.status != 302 || p == std::string::npos) {
          ++refused;
        } else {
          std::lock_guard lock(mu);
          acked.push_back(loc.substr(p + 10, 26));
        }
        std::this_thread::sleep_for(20ms);
      }
    });
  }
  std::this_thread::sleep_until(down_at);
  for (const char* n : {"n1", "n2", "n3"}) {
    EXPECT_EQ(nats("kill", n).exit_code, 0);
  }
  std::this_thread::sleep_until(down_at + 50s);
  auto during = a.status();
  EXPECT_FALSE(during["connected"].as_bool());
  std::int64_t spooled = num(during["spool_depth"]);
  EXPECT_GT(spooled, 1000) << "node a's spool did not grow while NATS was down";
  std::this_thread::sleep_until(up_at);
  auto restarted = nats("start");
  EXPECT_EQ(restarted.exit_code, 0) << restarted.err;
  for (auto& t : ts) {
    t.join();
  }
  EXPECT_EQ(refused.load(), 0) << "requests not answered 302 with a click id";
  EXPECT_GT(acked.size(), 8000u);
  std::printf("[ cluster ] node a spooled %lld clicks 50 s into the outage\n",
              static_cast<long long>(spooled));
  expect_each_acked_click_once(a, b, acked);
}

// earnctl cluster drain SERVER: every stream earnd uses is led by another server afterwards,
// and stopping the drained server under load then costs no acknowledged click.
TEST_F(ClusterTest, DrainMovesEveryLeaderOffAServerBeforeItStops) {
  Node a("a", scratch_, urls_);
  Node b("b", scratch_, urls_);
  ASSERT_NO_FATAL_FAILURE(start_pair(a, b));
  std::string leader = click_stream_leader();
  ASSERT_FALSE(leader.empty());

  auto r = run_command({(std::filesystem::path(EARND_BIN_DIR) / "earnctl").string(), "--url",
                        "http://" + a.process->admin_endpoint().to_string(), "--admin-key",
                        std::string(kAdminKey), "cluster", "drain", leader},
                       scratch_.path(), 60s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto v = json::parse(r.out).as_object();
  EXPECT_TRUE(v["done"].as_bool()) << r.out;
  ASSERT_EQ(arr(v["streams"]).size(), 4u);
  for (const auto& st : arr(v["streams"])) {
    EXPECT_NE(st.as_object().at("leader_after").as_string(), leader) << r.out;
    EXPECT_FALSE(st.as_object().at("leader_after").as_string().empty()) << r.out;
  }
  EXPECT_NE(click_stream_leader(), leader);
  std::printf("[ cluster ] drained %s: %s\n", leader.c_str(), r.out.c_str());

  // Refusals: no server named, and single-node mode has no cluster to drain.
  auto bad = a.admin("POST", "/v1/cluster/drain", "{}");
  EXPECT_EQ(bad.status, 400) << bad.body;

  bool stopped = false;
  auto acked = load(a, b, 4, 400, [&](std::size_t n) {
    if (n == 400 && !stopped) {
      stopped = true;
      EXPECT_EQ(nats("kill", leader).exit_code, 0);
    }
  });
  EXPECT_EQ(nats("start-node", leader).exit_code, 0);
  expect_each_acked_click_once(a, b, acked);
}

// earnctl cluster replay --since: a worker whose index lost clicks (its data directory put back
// from an older copy, with the newer cursor) gets them back from the stream, each once.
TEST_F(ClusterTest, ReplaySinceRestoresClicksAWorkersIndexLost) {
  Node a("a", scratch_, urls_, {"--role", "edge"});
  Node c("c", scratch_, urls_, {"--role", "worker"});
  ASSERT_EQ(a.process->start(), "");
  ASSERT_EQ(c.process->start(), "");
  ASSERT_NO_FATAL_FAILURE(make_program(a));
  auto clicks = [&](int n, const std::string& tag) {
    std::vector<std::string> ids;
    HttpConnection conn(a.process->public_endpoint());
    for (int i = 0; i < n; ++i) {
      auto r = conn.request("GET", "/r/" + code_,
                            {{"User-Agent", std::string(kUa) + " " + tag + std::to_string(i)}});
      auto loc = r.header("Location").value_or("");
      if (r.status == 302 && loc.find("earnd_cid=") != std::string::npos) {
        ids.push_back(loc.substr(loc.find("earnd_cid=") + 10, 26));
      }
    }
    return ids;
  };
  // Waits until node c has indexed everything the stream holds (node a's spool empty and c's
  // applied sequence steady).
  auto settle = [&] { wait_settled({&a, &c}); };
  auto first = clicks(200, "first");
  ASSERT_EQ(first.size(), 200u);
  settle();
  std::this_thread::sleep_for(1100ms);  // the second batch's clicks come a second later
  std::uint64_t between_ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count()) -
      500;
  ASSERT_EQ(c.process->stop(30s), 0);
  std::filesystem::copy(c.data / "db", c.data / "db-old", std::filesystem::copy_options::recursive);
  ASSERT_EQ(c.process->start(), "");
  auto second = clicks(200, "second");
  ASSERT_EQ(second.size(), 200u);
  settle();
  ASSERT_EQ(c.process->stop(30s), 0);
  std::string cursor;
  {
    auto st = store::Store::open({.data_dir = (c.data / "db").string(),
                                  .mode = store::OpenMode::kReadOnly,
                                  .block_cache_mb = 8});
    auto v = st->get_doc("cl/applied_seq");
    ASSERT_TRUE(v && *v);
    cursor = **v;
  }
  // The older copy, told it has applied everything: the second batch is missing behind it.
  std::filesystem::remove_all(c.data / "db");
  std::filesystem::rename(c.data / "db-old", c.data / "db");
  {
    auto st = store::Store::open({.data_dir = (c.data / "db").string(), .block_cache_mb = 8});
    ASSERT_FALSE(st->write_docs({{"cl/applied_seq", cursor}}, true));
  }
  auto exported = [&] {
    std::set<std::string> ids;
    for (const auto& id : c.exported_ids(scratch_)) {
      ids.insert(id);
    }
    return ids;
  };
  auto before = exported();
  std::size_t second_before = 0;
  for (const auto& id : second) {
    second_before += before.count(id);
  }
  EXPECT_EQ(second_before, 0u) << "the damaged index should lack the second batch";

  ASSERT_EQ(c.process->start(), "");
  char since[32];
  std::time_t t = static_cast<std::time_t>(between_ms / 1000);
  std::strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  auto r = run_command({(std::filesystem::path(EARND_BIN_DIR) / "earnctl").string(), "--url",
                        "http://" + c.process->admin_endpoint().to_string(), "--admin-key",
                        std::string(kAdminKey), "cluster", "replay", "--since", since},
                       scratch_.path(), 30s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("replay_from"), std::string::npos) << r.out;
  json::object st;
  for (int i = 0; i < 150; ++i) {
    std::this_thread::sleep_for(200ms);
    st = c.status();
    if (!st["replaying"].as_bool() && num(st["replayed"]) >= 200) {
      break;
    }
  }
  EXPECT_FALSE(st["replaying"].as_bool());
  EXPECT_EQ(num(st["replayed"]), 200) << json::serialize(st);
  ASSERT_EQ(c.process->stop(30s), 0);
  std::map<std::string, int> seen;
  for (const auto& id : c.exported_ids(scratch_)) {
    ++seen[id];
  }
  for (const auto* batch : {&first, &second}) {
    for (const auto& id : *batch) {
      EXPECT_EQ(seen[id], 1) << id;
    }
  }
  std::printf("[ cluster ] replay since %s added %lld clicks back\n", since,
              static_cast<long long>(num(st["replayed"])));
  EXPECT_EQ(a.process->stop(30s), 0);
}

// A stream that comes back from every server's death without its newest clicks (nats-server
// 2.9 acknowledges a message before it is on disk) gets them again from the edge's spool. Made
// exact here: the stream's last 100 messages are deleted and, once their ids have left the
// duplicate window (a deleted message's id is remembered for the window, which a real loss
// would not; node a creates the stream afresh with a 2 s window for this), the server node a
// is connected to is killed and started again. Node a, told by its lost connection, finds its
// newest rounds gone and sends them again.
TEST_F(ClusterTest, AStreamThatLostItsNewestClicksGetsThemAgainFromTheEdgesSpool) {
  {
    Stream old(urls_);
    ASSERT_TRUE(old.ok()) << old.error;
    ASSERT_TRUE(old.drop());
  }
  std::filesystem::path config = scratch_.path() / "short-window.toml";
  std::ofstream(config) << "[cluster]\nduplicate_window_s = 2\n";
  Node a("a", scratch_, urls_, {"--config", config.string()});
  ASSERT_EQ(a.process->start(), "");
  ASSERT_NO_FATAL_FAILURE(make_program(a));
  Stream stream(urls_);
  ASSERT_TRUE(stream.ok()) << stream.error;

  // At the end, also after a failure: the default window back, and the stream emptied, so that
  // later tests' nodes (which start from its first message) meet no deleted message in it.
  struct Restore {
    Stream& s;

    ~Restore() {
      (void)s.set_duplicate_window(120);
      (void)s.purge();
    }
  } restore{stream};

  const auto began = std::chrono::system_clock::now() - 5s;
  std::vector<std::string> acked;
  {
    HttpConnection conn(a.process->public_endpoint());
    for (int i = 0; i < 300; ++i) {
      auto r = conn.request("GET", "/r/" + code_,
                            {{"User-Agent", std::string(kUa) + " lost" + std::to_string(i)}});
      auto loc = r.header("Location").value_or("");
      if (r.status == 302 && loc.find("earnd_cid=") != std::string::npos) {
        acked.push_back(loc.substr(loc.find("earnd_cid=") + 10, 26));
      }
    }
  }
  ASSERT_EQ(acked.size(), 300u);
  wait_settled({&a});
  EXPECT_EQ(num(a.status()["spool_kept"]), 300) << "acknowledged clicks were not kept";

  // The stream's newest 100 messages (node a's clicks: nothing else publishes now) deleted.
  std::uint64_t last = stream.last_seq();
  ASSERT_EQ(last, 300u);
  for (std::uint64_t q = last - 99; q <= last; ++q) {
    ASSERT_TRUE(stream.remove(q)) << "sequence " << q << ": " << stream.error;
  }
  std::this_thread::sleep_for(6s);  // their ids leave the 2 s window
  std::string server = node_of_url(std::string(a.status()["connected_url"].as_string()));
  ASSERT_FALSE(server.empty());
  EXPECT_EQ(nats("kill", server).exit_code, 0);
  EXPECT_EQ(nats("start-node", server).exit_code, 0);

  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (num(a.status()["resent_clicks"]) < 100 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);
  }
  auto st = a.status();
  std::int64_t resent = num(st["resent_clicks"]);
  EXPECT_GE(resent, 100) << json::serialize(st);
  wait_settled({&a});
  EXPECT_NE(a.process->log_text().find("event=stream_lost_clicks"), std::string::npos);

  // Every acknowledged click is in the stream. Resent rounds reach back to the newest round the
  // stream still held whole; within the duplicate window the clicks it still had are dropped as
  // duplicates, past it (as here) stored again, and indexes skip them by id.
  Stream after(urls_);
  ASSERT_TRUE(after.ok()) << after.error;
  auto seen = after.click_ids_since(began);
  ASSERT_TRUE(after.error.empty()) << after.error;
  int missing = 0;
  int twice = 0;
  for (const auto& id : acked) {
    missing += seen[id] == 0 ? 1 : 0;
    twice += seen[id] > 1 ? 1 : 0;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_LE(twice, resent - 100);
  std::printf("[ cluster ] deleted the stream's last 100 clicks; node a resent %lld, %d twice\n",
              static_cast<long long>(resent), twice);
  EXPECT_EQ(a.process->stop(30s), 0);
}

// The server behind node b's link watcher (its connection) dies; a link disabled on node a right
// after must still answer 404 on node b within 10 s, once b's consumer has resumed elsewhere.
TEST_F(ClusterTest, DisabledLinkReachesAnEdgeWhoseWatcherServerWasKilled) {
  Node a("a", scratch_, urls_);
  Node b("b", scratch_, urls_);
  ASSERT_NO_FATAL_FAILURE(start_pair(a, b));
  std::string victim = node_of_url(std::string(b.status()["connected_url"].as_string()));
  ASSERT_FALSE(victim.empty());
  ASSERT_EQ(nats("kill", victim).exit_code, 0);
  auto r = a.admin("PATCH", "/v1/links/" + code_, R"({"disabled":true})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto gone = await_link(b, 404, 10s);
  EXPECT_TRUE(gone) << "node b still redirects 10 s after the link was disabled";
  if (gone) {
    std::printf(
        "[ cluster ] killed %s (node b's server); the disabled link was refused on b "
        "after %lld ms\n",
        victim.c_str(), static_cast<long long>(gone->count()));
  }
  EXPECT_EQ(a.process->stop(30s), 0);
  EXPECT_EQ(b.process->stop(30s), 0);
}

// 10,000 sales, each posted three times through the two edges by concurrent clients: exactly
// one outcome per event id, every repeat a duplicate with the first answer's body, and the
// referrer's ledgers (one per node: each node keeps the rewards of the outcomes it recorded)
// add up to the reward rule applied once per sale.
TEST_F(ClusterTest, TenThousandSalesPostedThreeTimesThroughTwoEdgesGiveOneOutcomeEach) {
  sales_through_two_edges(false);
}

// The same with node b SIGKILLed after 5,000 answers and started again 3 s later; clients whose
// edge is down post to the other one.
TEST_F(ClusterTest, TenThousandSalesWithAWorkerKilledMidwayGiveOneOutcomeEach) {
  sales_through_two_edges(true);
}

void ClusterTest::sales_through_two_edges(bool kill_b) {
  std::filesystem::path cfg = scratch_.path() / "nolimit.toml";
  std::ofstream(cfg)
      << "[server]\nconversion_rate_per_client = 0\nconversion_rate_per_program = 0\n";
  Node a("a", scratch_, urls_, {"--config", cfg.string()});
  Node b("b", scratch_, urls_, {"--config", cfg.string()});
  ASSERT_EQ(a.process->start(), "");
  ASSERT_EQ(b.process->start(), "");
  ASSERT_NO_FATAL_FAILURE(make_program(a, R"([{"event":"sale","referrer":{"percent":10}}])"));
  ASSERT_TRUE(await_link(b, 302, 5s));
  HttpConnection cc(a.process->public_endpoint());
  auto click = cc.request("GET", "/r/" + code_, {{"User-Agent", std::string(kUa)}});
  auto loc = click.header("Location").value_or("");
  ASSERT_NE(loc.find("earnd_cid="), std::string::npos);
  const std::string cid = loc.substr(loc.find("earnd_cid=") + 10, 26);
  // The click must be indexed on b too before b attributes sales to it. Waited for, not slept
  // for: on a loaded machine b's index lagged past the 2 s read barrier (cluster.click_wait_ms),
  // and the first sales on b were answered unknown_click (CI, 2026-12-04).
  ASSERT_NO_FATAL_FAILURE(wait_settled({&a, &b}));

  constexpr int kEvents = 10'000;
  char now[32];
  std::time_t t = std::time(nullptr);
  std::strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  auto body_of = [&](int i) {
    return R"({"event_id":"sale-)" + std::to_string(i) + R"(","type":"sale","click_id":")" + cid +
           R"(","amount_minor":)" + std::to_string(1000 + 10 * i) +
           R"(,"currency":"USD","occurred_at":")" + now + R"("})";
  };

  // Answers per event: the 201 bodies and the duplicate bodies, without the duplicate flag.
  struct Answers {
    std::vector<std::string> created, repeated;
  };

  std::vector<Answers> answers(kEvents);
  std::mutex mu;
  std::atomic<int> failures{0};
  std::atomic<int> answered{0};
  std::atomic<bool> b_down{false};
  auto strip = [](const std::string& text) {
    json::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) {
      return std::string("not json: ") + text;
    }
    v.as_object().erase("duplicate");
    return json::serialize(v);
  };
  // Six clients: on a, on b, and alternating, each pass over half of the events, so that every
  // event is posted three times, the copies racing each other on both edges.
  // Well inside ctest's 240 s: a stalled run ends as a failure that prints the nodes' logs
  // (TearDown) rather than as a timeout that prints nothing.
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  std::atomic<bool> gave_up{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([&, c] {
      std::unique_ptr<HttpConnection> conn[2];
      for (int i = c % 2; i < kEvents; i += 2) {
        if (std::chrono::steady_clock::now() > give_up) {
          gave_up = true;
          break;
        }
        int pass = c / 2;  // 0: a, 1: b, 2: alternate
        int edge = pass == 0 ? 0 : pass == 1 ? 1 : (i / 2) % 2;
        HttpResponse r;
        // Past give_up no new attempt starts: one request's 10 s timeout at most follows it.
        for (int attempt = 0;
             attempt < 6 && r.status == 0 && std::chrono::steady_clock::now() < give_up;
             ++attempt) {
          if (attempt > 0 || (edge == 1 && b_down.load())) {
            edge = attempt % 2 == 1 || b_down.load() ? 0 : edge;  // the other edge, or a
          }
          Node& n = edge == 0 ? a : b;
          if (!conn[edge] || !conn[edge]->connected()) {
            conn[edge] = std::make_unique<HttpConnection>(n.process->public_endpoint(), 10s);
          }
          r = conn[edge]->request(
              "POST", "/v1/conversions",
              {{"Authorization", "Bearer " + program_key_}, {"Content-Type", "application/json"}},
              body_of(i));
          if (r.status == 0) {
            conn[edge].reset();
          } else if (r.status == 503) {
            // The edge could not reach the cluster (just restarted): retry, as a client would.
            r = HttpResponse();
            std::this_thread::sleep_for(200ms);
          }
        }
        ++answered;
        std::lock_guard lock(mu);
        if (r.status == 201) {
          answers[i].created.push_back(strip(r.body));
        } else if (r.status == 200 && r.body.find("\"duplicate\":true") != std::string::npos) {
          answers[i].repeated.push_back(strip(r.body));
        } else if (failures++ < 5) {
          ADD_FAILURE() << "sale-" << i << ": " << r.status << " " << r.body << r.error;
        }
      }
    });
  }
  if (kill_b) {
    // From this thread, which started b (its parent-death signal is tied to the starting thread).
    while (answered.load() < 5000 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(5ms);
    }
    b_down = true;
    b.process->signal(SIGKILL);
    (void)b.process->wait(10s);
    std::this_thread::sleep_for(3s);
    EXPECT_EQ(b.process->start(), "");
    b_down = false;
    std::istringstream log(b.process->log_text());
    for (std::string line; std::getline(log, line);) {
      if (line.find("event=claim_recovery") != std::string::npos) {
        std::printf("[ cluster ] b: %s\n", line.c_str());
      }
    }
  }
  for (auto& th : clients) {
    th.join();
  }
  ASSERT_FALSE(gave_up.load()) << "120 s passed with " << answered.load() << " of " << 3 * kEvents
                               << " posts answered";
  EXPECT_EQ(failures.load(), 0);
  int not_once = 0;
  int differing = 0;
  // A 201 can be lost with the node that sent it (killed before the answer left): the client's
  // retry on the other edge is then a duplicate. So with a kill, at most one 201.
  int no_created = 0;
  for (int i = 0; i < kEvents; ++i) {
    std::size_t created = answers[i].created.size();
    if (created > 1 || (created == 0 && !kill_b)) {
      if (not_once++ < 5) {
        ADD_FAILURE() << "sale-" << i << " created " << created << " times";
      }
      continue;
    }
    no_created += created == 0 ? 1 : 0;
    const std::string& first = created ? answers[i].created[0] : answers[i].repeated.at(0);
    for (const auto& rep : answers[i].repeated) {
      if (rep != first && differing++ < 5) {
        ADD_FAILURE() << "sale-" << i << ": repeat " << rep << " vs " << first;
      }
    }
  }
  EXPECT_EQ(not_once, 0);
  EXPECT_EQ(differing, 0);
  // Rewards: 10% of 1000 + 10 i, summed over i = 100 * 10,000 + (0 + ... + 9,999).
  std::int64_t want = 100LL * kEvents + static_cast<std::int64_t>(kEvents) * (kEvents - 1) / 2;
  std::int64_t got = 0;
  std::size_t entries = 0;
  for (Node* n : {&a, &b}) {
    auto r = n->admin("GET", "/v1/referrers/" + referrer_id_ + "/ledger");
    ASSERT_EQ(r.status, 200) << r.body;
    auto v = json::parse(r.body).as_object();
    got += num(v["balance_minor"]);
    entries += arr(v["entries"]).size();
  }
  EXPECT_EQ(got, want) << "sum of the two nodes' ledger balances";
  EXPECT_EQ(entries, static_cast<std::size_t>(kEvents));
  std::printf(
      "[ cluster ] %d sales x 3 posts%s: ledger total %lld (rule once: %lld), %zu ledger "
      "entries over both nodes, %d events answered only as duplicates\n",
      kEvents, kill_b ? ", node b killed midway" : "", static_cast<long long>(got),
      static_cast<long long>(want), entries, no_created);
  EXPECT_EQ(a.process->stop(30s), 0);
  EXPECT_EQ(b.process->stop(30s), 0);
}

TEST_F(ClusterTest, KillingTheStreamLeaderUnderLoadLosesNoAcknowledgedClick) {
  kill_under_load([&](Node&, Node&) { return click_stream_leader(); });
}

TEST_F(ClusterTest, KillingAStreamFollowerUnderLoadLosesNoAcknowledgedClick) {
  kill_under_load([&](Node&, Node&) {
    std::string leader = click_stream_leader();
    return leader == "n3" ? std::string("n2") : std::string("n3");
  });
}

TEST_F(ClusterTest, KillingTheServerAnEdgeIsConnectedToLosesNoAcknowledgedClick) {
  kill_under_load([&](Node& a, Node&) {
    // After the first kill node a may still be reconnecting: wait until it is on a server.
    for (int i = 0; i < 100; ++i) {
      auto st = a.status();
      if (st["connected"].as_bool()) {
        return node_of_url(std::string(st["connected_url"].as_string()));
      }
      std::this_thread::sleep_for(100ms);
    }
    return std::string();
  });
}

}  // namespace
}  // namespace earnd::integration
