//! Where a session lives in Redis: its keys (every one carrying the session's hash tag, so a
//! cluster keeps them on one shard), the keys and sets shared by every session and node, and the
//! Lua scripts that change them atomically.

use std::time::Duration;

/// Numbers an operation, logs it and, unless ARGV[4] is empty, publishes it with the command
/// ARGV[4] names (`PUBLISH`, or `SPUBLISH` in a cluster). KEYS: snap, ver, log, channel. ARGV:
/// node, operation number on that node, the operation, the publishing command. Returns its
/// version, or -1 if there is no such session. (With replicas, operations are published by
/// [`RELEASE`] once the replicas have them.)
pub(super) const SUBMIT: &str = r#"
local epoch = redis.call("HGET", KEYS[1], "epoch")
if not epoch then return -1 end
local v = redis.call("INCR", KEYS[2])
local m = v .. "\n" .. epoch .. "\n" .. ARGV[1] .. "\n" .. ARGV[2] .. "\n" .. ARGV[3]
redis.call("XADD", KEYS[3], v .. "-1", "m", m)
if ARGV[4] ~= "" then redis.call(ARGV[4], KEYS[4], m) end
return v
"#;

/// Publishes, in order, the operations numbered but not yet published (the snapshot's `pub` is
/// the last published version), once the replicas acknowledged them (`WAIT`, just before).
/// KEYS: snap, ver, log, channel. ARGV: the publishing command. Returns the last version.
pub(super) const RELEASE: &str = r#"
local v = tonumber(redis.call("GET", KEYS[2]) or "0")
local p = tonumber(redis.call("HGET", KEYS[1], "pub") or "0")
if v > p then
  for _, e in ipairs(redis.call("XRANGE", KEYS[3], (p + 1) .. "-1", v .. "-1")) do
    redis.call(ARGV[1], KEYS[4], e[2][2])
  end
  redis.call("HSET", KEYS[1], "pub", v)
end
return v
"#;

/// Creates a session unless it exists. KEYS: snap, ver. ARGV: epoch, room, "1" if operations
/// are published by [`RELEASE`]. (The caller adds its id to `sr:sessions` first, outside the
/// script: in a cluster that key is on another shard.)
pub(super) const CREATE: &str = r#"
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "epoch", ARGV[1], "ver", 0, "room", ARGV[2], "pver", 0, "proom", ARGV[2])
if ARGV[3] == "1" then redis.call("HSET", KEYS[1], "pub", 0) end
redis.call("SET", KEYS[2], 0)
return 1
"#;

/// What a replica starts from: `{epoch, version, room, operations after it...}` (the previous
/// snapshot, so that the log after it reaches back a whole snapshot interval), or nil. With
/// replicas, only published operations are read (the ones numbered after them may yet be lost
/// to a failover). KEYS: snap, log.
pub(super) const LOAD: &str = r#"
local s = redis.call("HMGET", KEYS[1], "epoch", "pver", "proom", "pub")
if not s[1] then return false end
local out = {s[1], s[2], s[3]}
local last = "+"
if s[4] then last = s[4] .. "-1" end
for _, e in ipairs(redis.call("XRANGE", KEYS[2], (tonumber(s[2]) + 1) .. "-1", last)) do
  out[#out + 1] = e[2][2]
end
return out
"#;

/// The log's (published) operations from version ARGV[1] on. KEYS: snap, log.
pub(super) const READ: &str = r#"
local last = redis.call("HGET", KEYS[1], "pub")
if last then last = last .. "-1" else last = "+" end
local out = {}
for _, e in ipairs(redis.call("XRANGE", KEYS[2], ARGV[1] .. "-1", last)) do
  out[#out + 1] = e[2][2]
end
return out
"#;

/// Stores a snapshot if it is newer, keeps the one before it, and trims the log to what follows
/// that one. KEYS: snap, log. ARGV: epoch, version, room.
pub(super) const SNAPSHOT: &str = r#"
if redis.call("HGET", KEYS[1], "epoch") ~= ARGV[1] then return 0 end
local cur = tonumber(redis.call("HGET", KEYS[1], "ver"))
if tonumber(ARGV[2]) <= cur then return 0 end
redis.call("HSET", KEYS[1], "pver", cur, "proom", redis.call("HGET", KEYS[1], "room"), "ver", ARGV[2], "room", ARGV[3])
redis.call("XTRIM", KEYS[2], "MINID", (cur + 1) .. "-1")
return 1
"#;

/// Forgets a closed session (if it is still that one); the caller then takes its id out of
/// `sr:sessions`. KEYS: snap, ver, log. ARGV: epoch.
pub(super) const DROP: &str = r#"
if redis.call("HGET", KEYS[1], "epoch") ~= ARGV[1] then return 0 end
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
return 1
"#;

pub(super) fn key(id: &str, what: &str) -> String {
    format!("sr:{{{id}}}:{what}")
}

/// How far a drained socket was written (its participant's resume on another node replays the
/// rest).
pub(super) fn drained_key(id: &str, who: &str) -> String {
    key(id, &format!("drained:{who}"))
}

/// How long the record of a drained socket is kept: longer than any reconnection grace.
pub(super) const DRAINED_TTL: Duration = Duration::from_secs(300);

pub(super) fn rpc_key(rpc: &str) -> String {
    format!("sr:rpc:{rpc}")
}

pub(super) fn node_key(node: &str) -> String {
    format!("sr:node:{node}")
}

pub(super) fn channel(id: &str) -> String {
    key(id, "fx")
}

/// The session a channel is of.
pub(super) fn session_of(channel: &str) -> Option<&str> {
    channel.strip_prefix("sr:{")?.strip_suffix("}:fx")
}

pub(super) const SESSIONS: &str = "sr:sessions";

/// The set of nodes that ever beat and were not found stopped with nobody held (the reaper's
/// list of nodes to watch).
pub(super) const NODES: &str = "sr:nodes";

/// The set of sessions node `node` holds (or held) participants of: added to before a
/// participant joins or moves there, kept up to date by its heartbeat.
pub(super) fn held_key(node: &str) -> String {
    format!("sr:held:{node}")
}
