//! Integration tests: a mock endpoint that checks the client's frames against openvidu-browser's
//! (`wire`), and the real signalroom server started in-process (`server`).

mod mock;
mod support;

mod server;
mod wire;
