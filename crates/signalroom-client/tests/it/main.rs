//! Integration tests: a mock endpoint that checks the client's frames against openvidu-browser's
//! (`wire`), the real signalroom server started in-process (`server`), and zero-loss resume
//! through a proxy that breaks the network (`resume`).

mod mock;
mod proxy;
mod support;

mod requests;
mod resume;
mod server;
mod streams;
mod wire;
