//! The connection under [`super::redis::RedisStore`]: one Redis server or a Redis Cluster behind one
//! [`ConnectionLike`] type, so the store sends the same commands to either.
//!
//! - `redis://[user:pass@]host:port[/db]`, `rediss://…` (TLS): one server, through a
//!   [`ConnectionManager`] (multiplexed, reconnects by itself).
//! - `redis+cluster://[user:pass@]host1:port1,host2:port2,…`, `rediss+cluster://…` (TLS): a Redis
//!   Cluster, through a [`ClusterConnection`]. The hosts are seed nodes (any reachable one is
//!   enough; the client learns the rest of the cluster from it); the credentials on the first
//!   host apply to every node. Commands go to the node owning their key's slot; the client follows
//!   `MOVED`/`ASK` redirections, refreshes its slot map (after a failover or resharding) and
//!   reconnects by itself.
//!
//! Both connect lazily: nothing is sent until the first command, so raybot starts (and `/healthz`
//! reports the store as unavailable) while Redis is still down. Every request gives up after
//! [`RESPONSE_TIMEOUT`] (a cluster request including its retries and redirections), so callers
//! learn about an outage within the store's 1.5 s operation timeout.
//!
//! A cluster connection sends a pipeline to one node only: a pipeline whose commands live in
//! different slots fails there, so the store sends cross-slot work as separate requests when
//! [`RedisConn::is_cluster`].

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// How long connecting to one server (one cluster node) may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_millis(700);
/// How long a request may wait for its answer (on a cluster: including retries and redirections).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);

/// A connection to one Redis server or to a Redis Cluster. Cheap to clone: clones share the
/// underlying multiplexed connection(s). Blocking commands (`XREADGROUP … BLOCK`, `BLPOP`) must
/// not run on it (they would stall every other request behind them): use [`RedisConn::dedicated`].
#[derive(Clone)]
pub enum RedisConn {
    /// One server.
    Single {
        /// The shared, self-reconnecting connection.
        conn: ConnectionManager,
        /// Where it connects (for [`RedisConn::dedicated`]; boxed in an `Arc`: it is large).
        client: Arc<redis::Client>,
    },
    /// A Redis Cluster.
    Cluster {
        /// The shared cluster connection (one multiplexed connection per node).
        conn: ClusterConnection,
        /// The seed node URLs, credentials included (never shown: there is no `Debug`).
        nodes: Arc<[String]>,
    },
}

/// Whether `spec` names a Redis Cluster (`redis+cluster://…` or `rediss+cluster://…`).
pub fn is_cluster_spec(spec: &str) -> bool {
    spec.starts_with("redis+cluster://") || spec.starts_with("rediss+cluster://")
}

fn invalid(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what))
}

/// `redis+cluster://user:pass@h1:1,h2:2/?x` → `["redis://user:pass@h1:1/?x", "redis://user:pass@h2:2/?x"]`:
/// one URL per seed node, each with the credentials (Redis Cluster nodes share them) and whatever
/// follows the host list (TLS options such as `#insecure`, `?protocol=3`). Errors never contain
/// the spec (it may hold a password).
pub fn cluster_node_urls(spec: &str) -> RedisResult<Vec<String>> {
    let (scheme, rest) = if let Some(rest) = spec.strip_prefix("redis+cluster://") {
        ("redis", rest)
    } else if let Some(rest) = spec.strip_prefix("rediss+cluster://") {
        ("rediss", rest)
    } else {
        return Err(invalid("a Redis Cluster spec starts with redis+cluster:// or rediss+cluster://"));
    };
    // Credentials end at the last `@` (so a password may contain `,`, `:`, even `@`): only the first
    // host can carry them.
    let (userinfo, hosts_and_tail) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let end = hosts_and_tail.find(['/', '?', '#']).unwrap_or(hosts_and_tail.len());
    let (hosts, tail) = hosts_and_tail.split_at(end);
    let path = tail.strip_prefix('/').map(|p| p.split(['?', '#']).next().unwrap_or_default());
    if path.is_some_and(|db| !db.is_empty() && db != "0") {
        return Err(invalid("Redis Cluster has only database 0: drop the /DB from RAYBOT_STORE"));
    }
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(invalid("the host list of a redis+cluster:// spec has an empty entry (host:port,host:port,…)"));
    }
    Ok(hosts.into_iter().map(|h| format!("{scheme}://{userinfo}{h}{tail}")).collect())
}

/// The per-connection settings. `ClusterClient::get_*_with_config` replaces the client's response
/// timeout with the config's (even when unset), so both carry it.
fn cluster_config(response_timeout: Duration) -> ClusterConfig {
    ClusterConfig::new().set_connection_timeout(CONNECTION_TIMEOUT).set_response_timeout(response_timeout)
}

fn cluster_client(nodes: &[String], response_timeout: Duration) -> RedisResult<ClusterClient> {
    ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(CONNECTION_TIMEOUT)
        // Per attempt and, by default, for the whole request including retries and redirections.
        .response_timeout(response_timeout)
        // Enough to follow a MOVED/ASK after a failover or resharding and to reconnect once; few
        // enough that a write is not re-sent over and over (each write script also refuses to run
        // past its deadline).
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .build()
}

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
}

impl RedisConn {
    /// Opens a lazy connection to `spec` (see the module docs for the forms). Must be called inside
    /// a Tokio runtime. An unusable spec is an [`ErrorKind::InvalidClientConfig`] error whose text
    /// does not repeat the spec.
    pub fn open(spec: &str) -> RedisResult<RedisConn> {
        if is_cluster_spec(spec) {
            let nodes: Arc<[String]> = cluster_node_urls(spec)?.into();
            let client = cluster_client(&nodes, RESPONSE_TIMEOUT)?;
            let conn = client.get_pending_async_connection_with_config(cluster_config(RESPONSE_TIMEOUT));
            Ok(RedisConn::Cluster { conn, nodes })
        } else {
            let client = redis::Client::open(spec)?;
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config(RESPONSE_TIMEOUT))?;
            Ok(RedisConn::Single { conn, client: Arc::new(client) })
        }
    }

    /// Whether this is a Redis Cluster connection (pipelines must then stay within one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster { .. })
    }

    /// A second, separate connection to the same server or cluster, for blocking commands such as
    /// `XREADGROUP … BLOCK ms`: they would hold up every request queued behind them on the shared
    /// connection. `response_timeout` must exceed the longest block (e.g. `BLOCK 5000` → 6 s).
    /// Lazy like [`RedisConn::open`] (reconnects by itself); call it inside a Tokio runtime.
    pub fn dedicated(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        match self {
            RedisConn::Single { client, .. } => {
                let conn =
                    ConnectionManager::new_lazy_with_config(client.as_ref().clone(), manager_config(response_timeout))?;
                Ok(RedisConn::Single { conn, client: client.clone() })
            }
            RedisConn::Cluster { nodes, .. } => {
                let client = cluster_client(nodes, response_timeout)?;
                let conn = client.get_pending_async_connection_with_config(cluster_config(response_timeout));
                Ok(RedisConn::Cluster { conn, nodes: nodes.clone() })
            }
        }
    }

    /// `GET` of each key, answers in key order (`None` for a missing key), in one request: a
    /// pipeline of `GET`s on one server; on a cluster one `MGET`, which the cluster client splits
    /// by slot, sends to the owning nodes concurrently and reassembles in order.
    pub async fn get_each(&mut self, keys: &[String]) -> RedisResult<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.is_cluster() {
            redis::cmd("MGET").arg(keys).query_async(self).await
        } else {
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.get(k);
            }
            pipe.query_async(self).await
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single { conn, .. } => conn.req_packed_command(cmd),
            RedisConn::Cluster { conn, .. } => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single { conn, .. } => conn.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster { conn, .. } => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single { conn, .. } => conn.get_db(),
            RedisConn::Cluster { conn, .. } => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_spec_becomes_one_url_per_seed_node_with_the_credentials_on_each() {
        assert_eq!(
            cluster_node_urls("redis+cluster://10.0.0.1:7000,10.0.0.2:7001").unwrap(),
            ["redis://10.0.0.1:7000", "redis://10.0.0.2:7001"]
        );
        assert_eq!(
            cluster_node_urls("rediss+cluster://app:s3c,r:et@a.example:6380, b.example:6380/#insecure").unwrap(),
            ["rediss://app:s3c,r:et@a.example:6380/#insecure", "rediss://app:s3c,r:et@b.example:6380/#insecure"]
        );
        assert_eq!(cluster_node_urls("redis+cluster://h:1/0").unwrap(), ["redis://h:1/0"]);
        assert!(is_cluster_spec("redis+cluster://h:1") && is_cluster_spec("rediss+cluster://h:1"));
        assert!(!is_cluster_spec("redis://h:1"));
    }

    #[test]
    fn a_bad_cluster_spec_is_refused_without_repeating_the_password() {
        for spec in ["redis+cluster://u:hunter2@h1:1,,h2:2", "redis+cluster://u:hunter2@h1:1/3", "redis+cluster://"] {
            let err = cluster_node_urls(spec).expect_err(spec);
            assert_eq!(err.kind(), ErrorKind::InvalidClientConfig, "{spec}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn messages_show_the_cluster_hosts_and_never_the_credentials() {
        use crate::store::redis::redact;
        assert_eq!(redact("redis+cluster://h1:7000,h2:7001"), "redis+cluster://h1:7000,h2:7001");
        assert_eq!(
            redact("rediss+cluster://app:hunter2@h1:7000,h2:7001/#insecure"),
            "rediss+cluster://h1:7000,h2:7001/#insecure"
        );
        // Credentials on several hosts, or `@` and `,` unencoded in the password: hosts go missing
        // from the message, no part of the secret shows.
        for (spec, shown) in [
            ("redis+cluster://app:hunter2@h1:7000,app:hunter2@h2:7001", "redis+cluster://h2:7001"),
            ("redis+cluster://app:hun@ter,2@h1:7000,h2:7001", "redis+cluster://h1:7000,h2:7001"),
            ("redis+cluster://h0:1,app:hunter2@h1:7000", "redis+cluster://h1:7000"),
        ] {
            assert_eq!(redact(spec), shown);
        }
    }

    #[tokio::test]
    async fn opening_is_lazy_and_the_kind_follows_the_scheme() {
        // Nothing listens on port 1: opening still succeeds (raybot starts while Redis is down).
        let single = RedisConn::open("redis://127.0.0.1:1").expect("single");
        assert!(!single.is_cluster());
        let cluster = RedisConn::open("redis+cluster://127.0.0.1:1,127.0.0.1:2").expect("cluster");
        assert!(cluster.is_cluster());
        assert!(cluster.dedicated(Duration::from_secs(6)).expect("dedicated").is_cluster());
        assert!(!single.dedicated(Duration::from_secs(6)).expect("dedicated").is_cluster());
        let tls = RedisConn::open("rediss+cluster://app:s3cret@127.0.0.1:1,127.0.0.1:2").expect("TLS cluster");
        assert!(tls.is_cluster());
    }
}
