//! The event bus on Redis Streams: one stream per domain partition, consumer groups,
//! `XREADGROUP` for new entries, `XPENDING` + `XCLAIM` for entries a dead consumer left.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::Mutex;

use super::{Backlog, BusError, Delivery, Event, EventBus};

/// Entries kept per stream (approximately): older ones are trimmed as new ones arrive. Far
/// more than any consumer group should lag; the outbox-lag alert fires long before.
pub const MAX_STREAM_LEN: u64 = 1_000_000;

pub struct RedisBus {
    client: redis::Client,
    /// For short commands.
    commands: Mutex<Option<MultiplexedConnection>>,
    /// Idle connections for blocking reads, one per reader at a time: Redis serves a
    /// connection's commands in order, so a blocked `XREADGROUP` would hold up every command
    /// queued behind it, including another worker's read (seen as one-second stalls between
    /// the workers of one process).
    /// Each with the response timeout it was opened with.
    idle_reads: std::sync::Mutex<Vec<(MultiplexedConnection, Duration)>>,
    timeout: Duration,
}

/// Idle read connections kept (one per concurrent reader; more are closed when returned).
const MAX_IDLE_READS: usize = 16;

fn backend(e: impl std::fmt::Display) -> BusError {
    BusError::Backend(e.to_string())
}

impl RedisBus {
    /// A bus on `url` (`redis://host:6379/0`); connects on first use and again after errors.
    pub fn new(url: &str) -> Result<Self, BusError> {
        Ok(Self {
            client: redis::Client::open(url).map_err(backend)?,
            commands: Mutex::new(None),
            idle_reads: std::sync::Mutex::new(Vec::new()),
            timeout: Duration::from_secs(5),
        })
    }

    /// The connection in `slot`, connecting first when there is none.
    async fn connection(
        &self,
        slot: &Mutex<Option<MultiplexedConnection>>,
        timeout: Duration,
    ) -> Result<MultiplexedConnection, BusError> {
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.open(timeout).await?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn open(&self, timeout: Duration) -> Result<MultiplexedConnection, BusError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(self.timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(backend)
    }

    /// A blocking read on a connection of its own; the connection is kept for the next read
    /// unless the read failed.
    async fn blocking(&self, block: Duration, cmd: &redis::Cmd) -> Result<Value, BusError> {
        let needed = block + self.timeout;
        let idle = {
            let mut idle = self.idle_reads.lock().unwrap_or_else(|p| p.into_inner());
            let found = idle.iter().position(|(_, timeout)| *timeout >= needed);
            found.map(|i| idle.swap_remove(i))
        };
        let (mut conn, timeout) = match idle {
            Some(idle) => idle,
            None => (self.open(needed).await?, needed),
        };
        let value = cmd.query_async::<Value>(&mut conn).await.map_err(backend)?;
        let mut idle = self.idle_reads.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READS {
            idle.push((conn, timeout));
        }
        Ok(value)
    }

    /// A failed command: a broken connection is dropped, so the next call reconnects.
    async fn failed(
        &self,
        slot: &Mutex<Option<MultiplexedConnection>>,
        e: redis::RedisError,
    ) -> BusError {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            *slot.lock().await = None;
        }
        backend(e)
    }

    async fn run(
        &self,
        slot: &Mutex<Option<MultiplexedConnection>>,
        timeout: Duration,
        cmd: &redis::Cmd,
    ) -> Result<Value, BusError> {
        let mut conn = self.connection(slot, timeout).await?;
        match cmd.query_async::<Value>(&mut conn).await {
            Ok(value) => Ok(value),
            Err(e) => Err(self.failed(slot, e).await),
        }
    }

    async fn command(&self, cmd: &redis::Cmd) -> Result<Value, BusError> {
        self.run(&self.commands, self.timeout, cmd).await
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// `[id, [field, value, ...]]` entries as (id, the `e` field's bytes).
fn entries(value: &Value) -> Vec<(String, Option<Vec<u8>>)> {
    items(value)
        .iter()
        .filter_map(|entry| {
            let parts = items(entry);
            let id = text(parts.first()?)?;
            let fields = parts.get(1).map(items).unwrap_or_default();
            let body = fields.chunks(2).find_map(|pair| match pair {
                [name, Value::BulkString(bytes)] if text(name).as_deref() == Some("e") => {
                    Some(bytes.clone())
                }
                _ => None,
            });
            Some((id, body))
        })
        .collect()
}

fn delivery(stream: &str, entry: String, body: Option<Vec<u8>>, deliveries: u64) -> Delivery {
    let event = match body {
        Some(bytes) => Event::decode(&bytes).map_err(|e| e.to_string()),
        None => Err("the entry has no `e` field".into()),
    };
    Delivery {
        stream: stream.to_owned(),
        entry,
        event,
        deliveries,
    }
}

#[async_trait::async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, stream: &str, entries: &[String]) -> Result<(), BusError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for entry in entries {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(MAX_STREAM_LEN)
                .arg("*")
                .arg("e")
                .arg(entry)
                .ignore();
        }
        let mut conn = self.connection(&self.commands, self.timeout).await?;
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(&self.commands, e).await),
        }
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM");
        match self.command(&cmd).await {
            Ok(_) => Ok(()),
            Err(BusError::Backend(e)) if e.contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn read_new(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(streams);
        for _ in streams {
            cmd.arg(">");
        }
        let reply = self.blocking(block, &cmd).await?;
        let mut out = Vec::new();
        for stream_reply in items(&reply) {
            let parts = items(stream_reply);
            let (Some(name), Some(list)) = (parts.first().and_then(text), parts.get(1)) else {
                continue;
            };
            for (id, body) in entries(list) {
                out.push(delivery(&name, id, body, 1));
            }
        }
        Ok(out)
    }

    async fn claim_idle(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let idle_ms = min_idle.as_millis() as u64;
        let mut pending = redis::cmd("XPENDING");
        pending
            .arg(stream)
            .arg(group)
            .arg("IDLE")
            .arg(idle_ms)
            .arg("-")
            .arg("+")
            .arg(count.max(1));
        let reply = self.command(&pending).await?;
        let mut counts = std::collections::HashMap::new();
        for row in items(&reply) {
            let parts = items(row);
            if let (Some(id), Some(Value::Int(n))) = (parts.first().and_then(text), parts.get(3)) {
                counts.insert(id, *n as u64);
            }
        }
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        let mut claim = redis::cmd("XCLAIM");
        claim.arg(stream).arg(group).arg(consumer).arg(idle_ms);
        for id in counts.keys() {
            claim.arg(id);
        }
        let reply = self.command(&claim).await?;
        let mut out: Vec<Delivery> = entries(&reply)
            .into_iter()
            .map(|(id, body)| {
                let deliveries = counts.get(&id).copied().unwrap_or(0) + 1;
                delivery(stream, id, body, deliveries)
            })
            .collect();
        out.sort_by(|a, b| a.entry.cmp(&b.entry));
        Ok(out)
    }

    async fn ack(&self, stream: &str, group: &str, entries: &[String]) -> Result<(), BusError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(stream).arg(group).arg(entries);
        self.command(&cmd).await.map(|_| ())
    }

    async fn len(&self, stream: &str) -> Result<u64, BusError> {
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(stream);
        match self.command(&cmd).await? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(BusError::Backend(format!("XLEN answered {other:?}"))),
        }
    }

    async fn range(&self, stream: &str, max: usize) -> Result<Vec<(String, String)>, BusError> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1));
        let reply = self.command(&cmd).await?;
        Ok(entries(&reply)
            .into_iter()
            .map(|(id, body)| {
                (
                    id,
                    String::from_utf8_lossy(&body.unwrap_or_default()).into_owned(),
                )
            })
            .collect())
    }

    async fn backlog(&self, stream: &str, group: &str) -> Result<Backlog, BusError> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(stream);
        let reply = self.command(&cmd).await?;
        for info in items(&reply) {
            let fields: Vec<(String, &Value)> = match info {
                Value::Map(pairs) => pairs
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, v)))
                    .collect(),
                other => items(other)
                    .chunks(2)
                    .filter_map(|pair| Some((text(pair.first()?)?, pair.get(1)?)))
                    .collect(),
            };
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            if field("name").and_then(text).as_deref() != Some(group) {
                continue;
            }
            let number = |name: &str| match field(name) {
                Some(Value::Int(n)) => Some((*n).max(0) as u64),
                _ => None,
            };
            return Ok(Backlog {
                lag: number("lag"),
                pending: number("pending").unwrap_or(0),
            });
        }
        Err(BusError::Backend(format!(
            "no consumer group {group} on {stream}"
        )))
    }
}
