//! Integration tests: a real server on 127.0.0.1:0, driven over real sockets.

mod redis_support;
mod support;

mod attack;
mod bad_input;
mod cluster;
mod failover;
mod history;
mod hook;
mod lifecycle;
mod operations;
mod rest;
mod resume;
mod rpc;
mod start;
mod tls;
